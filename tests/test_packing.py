"""Sequence packing: exact labels, bin packing invariants, and no cross-contamination."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM

from pipeline.train.packing import (
    Sample,
    pack,
    pack_row,
    padded_tokens,
    plan_rows,
    sample_labels,
    stack_rows,
)
from pipeline.train.sft import row_loss

torch.set_num_threads(1)


def tiny_model(vocab: int = 64) -> Qwen2MoeForCausalLM:
    cfg = Qwen2MoeConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
        shared_expert_intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    return Qwen2MoeForCausalLM(cfg).eval()


def random_sample(g: torch.Generator, n_prompt: int, n_resp: int, vocab: int = 64) -> Sample:
    ids = torch.randint(0, vocab, (n_prompt + n_resp,), generator=g).tolist()
    return Sample(tuple(ids), tuple([False] * n_prompt + [True] * n_resp))


def test_labels_by_hand():
    s = Sample((10, 11, 12, 13, 14), (False, False, True, True, True))
    # token t predicts t+1 only when t+1 is a response token: 11->12, 12->13, 13->14
    assert sample_labels(s) == [-100, 12, 13, 14, -100]
    row = pack_row([s, Sample((20, 21, 22), (False, True, True))])
    assert row.input_ids.tolist() == [[10, 11, 12, 13, 14, 20, 21, 22]]
    assert row.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    # 14 -> 20 crosses the boundary: no label there
    assert row.labels.tolist() == [[-100, 12, 13, 14, -100, 21, 22, -100]]
    assert row.n_loss_tokens == 5 and row.n_samples == 2


def test_plan_rows_invariants_and_determinism():
    lengths = [7, 3, 9, 1, 4, 4, 10, 2, 6, 5]
    plan = plan_rows(lengths, row_tokens=12, seed=3)
    flat = sorted(i for row in plan for i in row)
    assert flat == list(range(len(lengths)))  # every sample exactly once
    assert all(sum(lengths[i] for i in row) <= 12 for row in plan)
    # total 51 tokens need at least ceil(51/12) = 5 rows; FFD on these lengths reaches it
    assert len(plan) == 5
    assert plan == plan_rows(lengths, row_tokens=12, seed=3)
    with pytest.raises(ValueError, match="sample 2 has 9 tokens > row_tokens=8"):
        plan_rows(lengths, row_tokens=8, seed=0)


def test_padded_tokens_by_hand():
    # batches [5, 2] -> 2*5, [7, 1] -> 2*7, [3] -> 3
    assert padded_tokens([5, 2, 7, 1, 3], batch_size=2) == 10 + 14 + 3


def separate_loss_sum(model, s: Sample) -> float:
    """Independent path: the sample alone, standard shifted CE over its response tokens."""
    ids = torch.tensor([s.input_ids])
    logits = model(input_ids=ids).logits[0, :-1]
    target = ids[0, 1:].clone()
    target[~torch.tensor(s.response_mask[1:])] = -100
    return float(F.cross_entropy(logits, target, ignore_index=-100, reduction="sum"))


def test_packed_loss_equals_sum_of_separate_losses():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    samples = [random_sample(g, 5, 9), random_sample(g, 8, 4), random_sample(g, 3, 12)]
    row = pack_row(samples)
    with torch.no_grad():
        _, ce_sum, n = row_loss(model, row)
        expected = sum(separate_loss_sum(model, s) for s in samples)
        assert int(n) == 9 + 4 + 12  # response tokens of the three samples
        assert float(ce_sum) == pytest.approx(expected, rel=1e-5, abs=1e-4)
        # the check can fail: plain positions (no reset) let samples see each other
        contaminated = model(input_ids=row.input_ids).logits[0]
        bad = float(F.cross_entropy(contaminated, row.labels[0], ignore_index=-100,
                                    reduction="sum"))
        assert abs(bad - expected) > 1e-2


def test_pack_covers_all_response_tokens():
    g = torch.Generator().manual_seed(2)
    samples = [random_sample(g, 4, 3 + i % 5) for i in range(20)]
    rows = pack(samples, row_tokens=32, seed=0)
    assert all(r.n_tokens <= 32 for r in rows)
    assert sum(r.n_samples for r in rows) == 20
    # each sample has (response length) labels: every response token but none of the prompt
    assert sum(r.n_loss_tokens for r in rows) == sum(sum(s.response_mask) for s in samples)


def test_stacked_rows_loss_equals_sum_of_separate_losses():
    """Two rows of different length in one (2, T) micro-batch: pad adds nothing, leaks nothing."""
    model = tiny_model()
    g = torch.Generator().manual_seed(4)
    a, b, c = random_sample(g, 4, 10), random_sample(g, 6, 5), random_sample(g, 3, 4)
    batch = stack_rows([pack_row([a, b]), pack_row([c])], pad_id=0)
    assert batch.input_ids.shape == (2, 25) and batch.n_tokens == 25 + 7
    assert batch.position_ids[1].tolist() == list(range(7)) + list(range(18))
    with torch.no_grad():
        _, ce_sum, n = row_loss(model, batch)
        expected = sum(separate_loss_sum(model, s) for s in (a, b, c))
    assert int(n) == 10 + 5 + 4
    assert float(ce_sum) == pytest.approx(expected, rel=1e-5, abs=1e-4)

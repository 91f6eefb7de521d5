"""Engine contract (torch engine), sampling, scoring helpers and the weight-name conversion.

The contract checks (``check_*``) are shared with tests/test_engines_vllm.py, so both engines
pass the same tests. Expected values come from hand derivations (in comments) or from an
independent computation: an unpadded one-row forward pass with an explicit softmax.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import DynamicCache

from pipeline.engines import Completion, make_engine
from pipeline.engines.fast_decode import MoeDecoder, grouped_matmul, supported
from pipeline.engines.fixtures import tiny_trained_moe
from pipeline.engines.scoring import mismatch, token_entropy, token_logprobs
from pipeline.engines.torch_engine import sample_next
from pipeline.engines.vllm_engine import checkpoint_tensors
from pipeline.model.chat import format_prompt

QUESTIONS = (
    "add 3 and 4", "add 1 and 2 please", "add 6 and 2", "what is 5 plus 5",
    "add 7 and 9", "sum 2 4", "add 5 and 3 and 1", "hello",
)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return tiny_trained_moe()


@pytest.fixture(scope="module")
def prompts(tiny):
    return [format_prompt(tiny[1], q) for q in QUESTIONS]


@pytest.fixture(scope="module")
def engine(tiny):
    model, tok = tiny
    return make_engine("torch", model=model, tokenizer=tok)


# ---------------------------------------------------------------- shared contract checks


def check_shapes(result: list[list[Completion]], prompts, n, max_new_tokens, tok) -> None:
    assert len(result) == len(prompts)
    eos = tok.eos_token_id
    for row in result:
        assert len(row) == n
        for c in row:
            assert 1 <= len(c.token_ids) <= max_new_tokens
            assert len(c.logprobs) == len(c.token_ids)
            assert all(lp <= 1e-6 for lp in c.logprobs)
            assert c.finish_reason in ("stop", "length")
            if c.finish_reason == "stop":  # EOS is the last token and only there
                assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
                body = c.token_ids[:-1]
            else:
                assert len(c.token_ids) == max_new_tokens and eos not in c.token_ids
                body = c.token_ids
            assert c.text == tok.decode(body, skip_special_tokens=False)


def check_both_finish_reasons(engine, prompts, tok) -> None:
    result = engine.generate(prompts, n=6, max_new_tokens=12, temperature=1.0, top_p=1.0, seed=3)
    check_shapes(result, prompts, 6, 12, tok)
    reasons = {c.finish_reason for row in result for c in row}
    assert reasons == {"stop", "length"}


def check_seeds(engine, prompts) -> None:
    kw = dict(n=3, max_new_tokens=16, temperature=1.0, top_p=1.0)
    first = engine.generate(prompts, seed=11, **kw)
    again = engine.generate(prompts, seed=11, **kw)
    other = engine.generate(prompts, seed=12, **kw)
    ids = [[c.token_ids for c in row] for row in first]
    assert ids == [[c.token_ids for c in row] for row in again]
    assert ids != [[c.token_ids for c in row] for row in other]
    # the n samples of one prompt are not copies of each other
    assert any(len({tuple(t) for t in row}) > 1 for row in ids)


def check_logprobs_match_scoring(engine, model, tok, prompts, temperature: float) -> float:
    """Engine log-probs vs a teacher-forced forward pass; returns the max |difference|."""
    result = engine.generate(
        prompts, n=2, max_new_tokens=20, temperature=temperature, top_p=1.0, seed=5
    )
    flat = [c for row in result for c in row]
    prompt_ids = [tok.encode(p, add_special_tokens=False) for p in prompts for _ in range(2)]
    with torch.no_grad():
        ref = token_logprobs(model, prompt_ids, [c.token_ids for c in flat],
                             temperature=temperature, batch_size=3)
    worst = max(float((torch.tensor(c.logprobs) - r).abs().max()) for c, r in zip(flat, ref, strict=True))
    assert worst < 1e-4, worst
    return worst


# ---------------------------------------------------------------- torch engine contract


def test_torch_shapes_and_both_finish_reasons(engine, prompts, tiny):
    check_both_finish_reasons(engine, prompts, tiny[1])


def test_torch_max_new_tokens_one(engine, prompts, tiny):
    result = engine.generate(prompts, n=2, max_new_tokens=1, temperature=1.0, top_p=1.0, seed=0)
    check_shapes(result, prompts, 2, 1, tiny[1])


def test_torch_seeds_repeatable(engine, prompts):
    check_seeds(engine, prompts)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_torch_logprobs_match_teacher_forcing(engine, tiny, prompts, temperature):
    check_logprobs_match_scoring(engine, tiny[0], tiny[1], prompts, temperature)


def test_torch_batching_and_row_dropping_do_not_change_greedy(tiny, prompts):
    # batch_size=1 decodes each row alone (no padding, no dropping): an independent reference.
    model, tok = tiny
    kw = dict(n=1, temperature=0.0, top_p=1.0, seed=0)
    alone = make_engine("torch", model=model, tokenizer=tok, batch_size=1)
    lengths = [len(r[0].token_ids) for r in alone.generate(prompts, max_new_tokens=40, **kw)]
    assert len(set(lengths)) > 1, lengths  # rows finish at different steps
    cap = max(lengths) - 1  # the longest row(s) hit the cap, the others stop before it
    alone_out = alone.generate(prompts, max_new_tokens=cap, **kw)
    batched = make_engine("torch", model=model, tokenizer=tok, batch_size=64)
    batched_out = batched.generate(prompts, max_new_tokens=cap, **kw)
    for a, b in zip(alone_out, batched_out, strict=True):
        assert a[0].token_ids == b[0].token_ids and a[0].finish_reason == b[0].finish_reason
        assert max(abs(x - y) for x, y in zip(a[0].logprobs, b[0].logprobs, strict=True)) < 1e-5
    assert {r[0].finish_reason for r in batched_out} == {"stop", "length"}  # rows did drop out


def test_fast_decode_equals_transformers_decode(tiny, prompts):
    # The qwen2_moe fast path (fused weights, static cache, lazy row dropping) against the
    # transformers forward with a DynamicCache: greedy tokens identical, log-probs equal to
    # float32 rounding, over rows that stop at different steps.
    model, tok = tiny
    assert supported(model)
    kw = dict(n=1, max_new_tokens=40, temperature=0.0, top_p=1.0, seed=0)
    fast = make_engine("torch", model=model, tokenizer=tok).generate(prompts, **kw)
    slow = make_engine("torch", model=model, tokenizer=tok, fast_decode=False).generate(
        prompts, **kw)
    assert len({len(r[0].token_ids) for r in fast}) > 1
    for a, b in zip(fast, slow, strict=True):
        assert a[0].token_ids == b[0].token_ids and a[0].finish_reason == b[0].finish_reason
        assert max(abs(x - y) for x, y in zip(a[0].logprobs, b[0].logprobs, strict=True)) < 1e-5


def test_fast_decode_runs_a_bf16_model_as_close_as_transformers_decode(tiny, prompts):
    # A bf16 policy (the GPU path) decodes through the fast path: its float32 padding mask must
    # not reach the value matmul, and its RMS norms normalise in float32 as transformers does
    # (F.rms_norm in bf16 roughly doubled the worst log-prob error: 0.097 against 0.046).
    model, tok = tiny
    half = copy.deepcopy(model).to(torch.bfloat16)
    prompt_ids = [tok.encode(p, add_special_tokens=False) for p in prompts for _ in range(2)]
    worst = {}
    for fast in (True, False):
        out = make_engine("torch", model=half, tokenizer=tok, fast_decode=fast).generate(
            prompts, n=2, max_new_tokens=20, temperature=1.0, top_p=1.0, seed=5)
        flat = [c for row in out for c in row]
        with torch.no_grad():
            ref = token_logprobs(half, prompt_ids, [c.token_ids for c in flat], temperature=1.0,
                                 batch_size=3)
        worst[fast] = max(float((torch.tensor(c.logprobs) - r.float()).abs().max())
                          for c, r in zip(flat, ref, strict=True))
    assert worst[True] < 0.07, worst  # measured 0.046 (transformers' decode: 0.030)
    assert worst[False] < 0.07, worst


def test_fast_decode_step_logits_equal_full_forward(tiny, prompts):
    # Decode steps over a left-padded batch vs one teacher-forced forward of prompt + tokens.
    model, tok = tiny
    rows = [tok.encode(p, add_special_tokens=False) for p in prompts[:4]]
    width = max(len(r) for r in rows)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    attention = (torch.arange(width)[None] >= torch.tensor([width - len(r) for r in rows])[:, None])
    follow = torch.randint(5, len(tok), (4, 6), generator=torch.Generator().manual_seed(0))
    full_ids = torch.cat([ids, follow], 1)
    full_att = torch.cat([attention.long(), torch.ones(4, 6, dtype=torch.long)], 1)
    pos = (full_att.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        want = model(input_ids=full_ids, attention_mask=full_att, position_ids=pos).logits
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, attention_mask=attention.long(), position_ids=pos[:, :width],
              past_key_values=cache, use_cache=True)
    dec = MoeDecoder(model)
    keys, values = dec.new_cache(cache, width + 6)
    mask = torch.zeros(4, width + 6).masked_fill_(
        torch.cat([~attention, torch.zeros(4, 6, dtype=torch.bool)], 1), float("-inf"))
    rope = dec.rope_table(width + 6, torch.device("cpu"))
    for t in range(6):
        got = dec.step(follow[:, t], pos[:, width + t], width + t, keys, values, mask, rope)
        torch.testing.assert_close(got, want[:, width + t], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fused,k", [(True, 4), (False, 4), (None, 4), (None, 3)])
def test_grouped_matmul_multiplies_each_row_by_its_experts_weights(fused, k):
    # Rows 0-1 belong to expert 0, expert 1 has none, rows 2-4 to expert 2: row i of the result
    # is the vector-matrix product of x[i] with its expert's matrix, summed out by hand here.
    # k = 3 floats (12-byte rows) is not aligned for F.grouped_mm: fused=None loops instead.
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(5, k, generator=g), torch.randn(3, k, 4, generator=g)
    ends = torch.tensor([2, 2, 5], dtype=torch.int32)
    expert = [0, 0, 2, 2, 2]
    want = torch.tensor([[sum(float(x[i, j]) * float(w[expert[i], j, n]) for j in range(k))
                          for n in range(4)] for i in range(5)])
    torch.testing.assert_close(grouped_matmul(x, w, ends, fused=fused), want)


def test_fast_decode_falls_back_for_other_models(tiny, prompts):
    # A dense qwen2 model is not handled by MoeDecoder: the engine decodes through transformers
    # and still matches teacher forcing.
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tiny[1]
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    dense = Qwen2ForCausalLM(cfg).eval()
    assert not supported(dense)
    check_logprobs_match_scoring(make_engine("torch", model=dense, tokenizer=tok), dense, tok,
                                 prompts, 1.0)


def test_torch_tiny_top_p_is_greedy(engine, prompts):
    # the nucleus of any top_p below the top token's probability is that token alone
    kw = dict(n=2, max_new_tokens=12, seed=9)
    nucleus = engine.generate(prompts, temperature=1.0, top_p=1e-6, **kw)
    greedy = engine.generate(prompts, temperature=0.0, top_p=1.0, **kw)
    assert [[c.token_ids for c in r] for r in nucleus] == [[c.token_ids for c in r] for r in greedy]


def test_torch_update_weights_copies_new_weights(tiny, prompts):
    model, tok = tiny
    engine = make_engine("torch", model=copy.deepcopy(model), tokenizer=tok)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        for p in changed.parameters():
            p.add_(0.05 * torch.randn_like(p))
    kw = dict(n=1, max_new_tokens=16, temperature=0.0, top_p=1.0, seed=0)
    before = engine.generate(prompts, **kw)
    engine.update_weights(changed)
    after = engine.generate(prompts, **kw)
    direct = make_engine("torch", model=changed, tokenizer=tok).generate(prompts, **kw)
    assert [r[0].logprobs for r in after] == [r[0].logprobs for r in direct]
    assert [r[0].logprobs for r in after] != [r[0].logprobs for r in before]


def test_make_engine_rejects_bad_input(tiny):
    with pytest.raises(ValueError, match="unknown engine kind"):
        make_engine("tensorrt")
    engine = make_engine("torch", model=tiny[0], tokenizer=tiny[1])
    with pytest.raises(ValueError, match="top_p"):
        engine.generate(["x"], n=1, max_new_tokens=4, temperature=1.0, top_p=0.0, seed=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        engine.generate(["x"], n=1, max_new_tokens=0, temperature=1.0, top_p=1.0, seed=0)
    with pytest.raises(TypeError, match=r"prompts\[1\] is list"):
        engine.generate(["x", [1, 2]], n=1, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0)
    assert engine.generate([], n=2, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0) == []


# ---------------------------------------------------------------- sampling


def test_sample_next_top_p_frequencies_and_logprobs():
    # probs (0.5, 0.3, 0.2); top_p = 0.6: mass before token1 is 0.5 < 0.6 -> kept, before
    # token2 is 0.8 >= 0.6 -> dropped. Nucleus {0, 1} renormalised: (5/8, 3/8, 0).
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(20_000, 1)
    gen = torch.Generator().manual_seed(0)
    tokens, logprobs = sample_next(logits, 1.0, 0.6, gen)
    freq = torch.bincount(tokens, minlength=3).float() / tokens.numel()
    assert freq[2] == 0
    assert abs(freq[0] - 5 / 8) < 0.015  # 3 sigma of a binomial(20000, 5/8) ~ 0.010
    # logprob is the untruncated log p(token) at T = 1: log 0.5 or log 0.3
    expected = torch.where(tokens == 0, math.log(0.5), math.log(0.3))
    assert torch.allclose(logprobs, expected, atol=1e-6)


def test_sample_next_temperature_logprob():
    # logits (0, ln 3) at T = 0.5 -> scaled (0, 2 ln 3) -> probs (1/10, 9/10)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    gen = torch.Generator().manual_seed(1)
    tokens, logprobs = sample_next(logits, 0.5, 1.0, gen)
    expected = math.log(0.1) if int(tokens[0]) == 0 else math.log(0.9)
    assert abs(float(logprobs[0]) - expected) < 1e-6
    greedy, greedy_lp = sample_next(logits, 0.0, 1.0, gen)  # T=0: argmax, log_softmax at T=1
    assert int(greedy[0]) == 1 and abs(float(greedy_lp[0]) - math.log(0.75)) < 1e-6


# ---------------------------------------------------------------- scoring


class FixedLogits(torch.nn.Module):
    """A fake LM whose next-token logits are the same table row at every position."""

    def __init__(self, row: list[float]) -> None:
        super().__init__()
        self.row = torch.nn.Parameter(torch.tensor(row))

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0):
        logits = self.row.expand(*input_ids.shape, -1)[:, -logits_to_keep:]
        return type("Out", (), {"logits": logits})()


def test_entropy_and_logprobs_hand_derived():
    # logits (0, 0, -inf, -inf): two equally likely tokens -> entropy ln 2, log p = -ln 2
    model = FixedLogits([0.0, 0.0, -1e9, -1e9])
    ent = token_entropy(model, [[2, 3], [3]], [[0, 1, 1], [1]])
    assert [e.shape[0] for e in ent] == [3, 1]
    assert torch.allclose(torch.cat(ent), torch.full((4,), math.log(2)), atol=1e-6)
    lp = token_logprobs(model, [[2, 3], [3]], [[0, 1, 1], [1]])
    assert torch.allclose(torch.cat(lp), torch.full((4,), -math.log(2)), atol=1e-6)
    # uniform over 4 tokens -> entropy ln 4 at any temperature
    uniform = FixedLogits([1.0, 1.0, 1.0, 1.0])
    ent = token_entropy(uniform, [[1]], [[2, 3]], temperature=0.5)
    assert torch.allclose(ent[0], torch.full((2,), math.log(4)), atol=1e-6)


def test_token_logprobs_equal_unpadded_forward(tiny):
    model, tok = tiny
    prompts = [tok.encode(format_prompt(tok, q), add_special_tokens=False) for q in QUESTIONS[:4]]
    completions = [tok.encode(s, add_special_tokens=False)
                   for s in ("<think>3+4=7</think>", "x", "<think>6+2=8</think> \\boxed{8}", "ab")]
    with torch.no_grad():
        got = token_logprobs(model, prompts, completions, batch_size=3)
        ent = token_entropy(model, prompts, completions, batch_size=4)
        for p, c, lp, h in zip(prompts, completions, got, ent, strict=True):
            ids = torch.tensor([p + c])
            logits = model(input_ids=ids).logits[0, len(p) - 1 : len(p) + len(c) - 1]
            probs = torch.softmax(logits, -1)
            want = torch.log(probs[torch.arange(len(c)), torch.tensor(c)])
            assert torch.allclose(lp, want, atol=1e-5)
            want_h = -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)
            assert torch.allclose(h, want_h, atol=1e-5)


def test_token_logprobs_carry_gradients(tiny):
    model, tok = tiny
    lp = token_logprobs(model, [[5, 6, 7]], [[8, 9]])
    lp[0].sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_mismatch_hand_derived():
    # token 2: trainer is ln 2 higher -> r = 2, k3 = r - 1 - ln r = 1 - ln 2; token 1: r = 1, 0
    stats = mismatch([-1.0, -2.0], [-1.0, -2.0 + math.log(2)])
    assert abs(stats["logprob_abs_diff"] - math.log(2) / 2) < 1e-12
    assert abs(stats["kl_k3"] - (1 - math.log(2)) / 2) < 1e-12
    with pytest.raises(ValueError, match="length mismatch"):
        mismatch([0.0], [0.0, 0.0])


# ---------------------------------------------------------------- weight names for vLLM


def test_checkpoint_tensors_unfuse_experts():
    gate_up = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # E=2, 2I=4, H=3
    down = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)  # E=2, H=3, I=2
    state = {"model.layers.0.mlp.experts.gate_up_proj": gate_up,
             "model.layers.0.mlp.experts.down_proj": down,
             "model.norm.weight": torch.ones(3)}
    out = dict(checkpoint_tensors(state))
    assert set(out) == {
        "model.layers.0.mlp.experts.0.gate_proj.weight", "model.layers.0.mlp.experts.0.up_proj.weight",
        "model.layers.0.mlp.experts.0.down_proj.weight", "model.layers.0.mlp.experts.1.gate_proj.weight",
        "model.layers.0.mlp.experts.1.up_proj.weight", "model.layers.0.mlp.experts.1.down_proj.weight",
        "model.norm.weight",
    }
    assert out["model.layers.0.mlp.experts.1.gate_proj.weight"].tolist() == gate_up[1, :2].tolist()
    assert out["model.layers.0.mlp.experts.1.up_proj.weight"].tolist() == gate_up[1, 2:].tolist()
    assert out["model.layers.0.mlp.experts.0.down_proj.weight"].tolist() == down[0].tolist()


def test_checkpoint_tensors_equal_save_pretrained(tiny, tmp_path):
    # independent reference: transformers' own reverse conversion when it writes a checkpoint
    from safetensors.torch import load_file

    model, _ = tiny
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    ours = dict(checkpoint_tensors(model.state_dict()))
    assert set(ours) == set(saved)
    assert all(torch.equal(ours[k], saved[k]) for k in saved)

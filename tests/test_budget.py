"""Group advantages, walk orders, the token-budget selector, and the MoE router losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func

from pipeline.rl.budget import group_advantages, select_all, select_budget, walk_order
from pipeline.rl.router_losses import balance_loss, z_loss


def test_group_advantages_by_hand():
    adv, zero = group_advantages(np.array([[1, 0, 0], [1, 1, 1], [0, 1, 1]]))
    # mean 1/3, population std sqrt(2)/3: A = (2/3)/(sqrt2/3) = sqrt2, (-1/3)/(sqrt2/3) = -1/sqrt2
    assert adv[0] == pytest.approx([math.sqrt(2), -1 / math.sqrt(2), -1 / math.sqrt(2)], rel=1e-5)
    assert list(zero) == [False, True, False]
    assert list(adv[1]) == [0.0, 0.0, 0.0]


def test_walk_orders():
    assert walk_order(2, 3, "sampled") == [0, 1, 2, 3, 4, 5]
    assert walk_order(2, 3, "interleaved") == [0, 3, 1, 4, 2, 5]
    a = walk_order(2, 3, "shuffled", np.random.default_rng(7))
    b = walk_order(2, 3, "shuffled", np.random.default_rng(7))
    assert a == b and sorted(a) == list(range(6))


def test_selector_exact_budget_and_cut_position():
    s = select_budget([5, 3, 7, 2], budget=10, order=[0, 1, 2, 3])
    # 5 + 3 = 8 < 10, response 2 crosses: cut after 2 tokens; response 3 dropped.
    assert s.minibatches == (((0, 5), (1, 3), (2, 2)),)
    assert (s.tokens_selected, s.tokens_dropped) == (10, 7)
    assert (s.responses_dropped, s.responses_cut) == (1, 1)


def test_selector_respects_order():
    s = select_budget([5, 3, 7, 2], budget=10, order=[3, 2, 1, 0])
    assert s.minibatches == (((3, 2), (2, 7), (1, 1)),)  # 2 + 7 = 9, response 1 cut at 1
    assert s.responses_dropped == 1 and s.tokens_selected == 10


def test_selector_minibatches_and_short_supply():
    s = select_budget([5, 3, 7, 2], budget=6, order=[0, 1, 2, 3], minibatches=2)
    # mb0: 5 + cut(1 of 3) = 6; the walk moves on: mb1: cut(6 of 7) = 6; response 3 left over
    assert s.minibatches == (((0, 5), (1, 1)), ((2, 6),))
    assert s.tokens_selected == 12 and s.tokens_dropped == 5 and s.responses_cut == 2
    short = select_budget([5, 3], budget=20, order=[0, 1])
    assert short.tokens_selected == 8 and short.responses_dropped == 0


def test_selector_skips_indices_not_in_order():
    s = select_budget([5, 3, 7, 2], budget=4, order=[1, 3])  # 0 and 2 e.g. zero-variance
    assert s.minibatches == (((1, 3), (3, 1)),)


def test_select_all_keeps_every_token():
    s = select_all([5, 3, 7, 2], order=[0, 1, 2, 3], minibatches=2)
    assert s.minibatches == (((0, 5), (1, 3)), ((2, 7), (3, 2)))
    assert s.tokens_selected == 17


def test_balance_and_z_loss_by_hand():
    l3 = math.log(3.0)
    balanced = torch.tensor([[l3, 0.0], [0.0, l3]])  # f = (.5,.5), P = (.5,.5) -> 2 * .5 = 1
    skewed = torch.tensor([[l3, 0.0], [l3, 0.0]])  # f = (1, 0), P = (.75,.25) -> 2 * .75 = 1.5
    assert balance_loss([balanced], top_k=1).item() == pytest.approx(1.0)
    assert balance_loss([skewed], top_k=1).item() == pytest.approx(1.5)
    assert balance_loss([balanced, skewed], top_k=1).item() == pytest.approx(1.25)
    # logsumexp(ln3, 0) = ln 4; a masked padding row with huge logits must not count
    padded = torch.tensor([[l3, 0.0], [l3, 0.0], [50.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert z_loss([padded], mask).item() == pytest.approx(math.log(4.0) ** 2, rel=1e-5)


def test_balance_loss_matches_transformers_up_to_top_k():
    # transformers counts top-k slots without dividing by k (balanced = k); ours divides by k.
    g = torch.Generator().manual_seed(0)
    layers = tuple(torch.randn(12, 4, generator=g) for _ in range(2))
    mask = torch.tensor([[1] * 5 + [0], [1] * 6]).float()
    # HF pools the layers' counts before the product; ours averages per-layer products, so
    # compare on one layer at a time.
    per_layer = [
        float(load_balancing_loss_func((z,), num_experts=4, top_k=2, attention_mask=mask)) / 2
        for z in layers
    ]
    assert balance_loss(layers, top_k=2, mask=mask).item() == pytest.approx(
        sum(per_layer) / 2, rel=1e-5)

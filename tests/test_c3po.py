"""C3PO loss on hand-computed examples (every normaliser, a cut response, clip, k3 KL)."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.rl.c3po import Coefs, c3po_loss, normalise, objective

# Two responses of 3 tokens. Response 0 (A=+1) is whole; response 1 (A=-2) was cut after
# 2 tokens by the budget, so its 3rd token (ratio 3.0) must not count.
RATIOS = [[1.5, 0.9, 1.0], [0.5, 1.1, 3.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
ADV = [1.0, -2.0]
# Clipped surrogate by hand (eps 0.2):
#   r0: min(1.5, 1.2)=1.2, min(0.9, 0.9)=0.9, 1.0             -> 3.1 (token 0 clipped)
#   r1: min(-1.0, -1.6)=-1.6, min(-2.2, -2.2)=-2.2              -> -3.8 (token 0 clipped)
# k3 KL only at r0 token 1 where ref - logp = ln 2: 2 - ln 2 - 1 = 1 - ln 2; beta = 0.1.
KL_TOKEN = 1.0 - math.log(2.0)
BETA = 0.1
TOTAL = 3.1 - 3.8 - BETA * KL_TOKEN  # sum over selected tokens of [surrogate - beta KL]


def _inputs():
    old = torch.full((2, 3), -1.0)
    logp = (old + torch.log(torch.tensor(RATIOS))).requires_grad_(True)
    ref = logp.detach().clone()
    ref[0, 1] += math.log(2.0)
    return logp, old, ref, torch.tensor(ADV), torch.tensor(MASK)


@pytest.mark.parametrize(
    ("normaliser", "budget", "expected"),
    [
        ("budget", 10, -TOTAL / 10),
        ("token_mean", None, -TOTAL / 5),
        ("seq_mean", None, -((3.1 - BETA * KL_TOKEN) / 3 + (-3.8) / 2) / 2),
    ],
)
def test_loss_each_normaliser(normaliser, budget, expected):
    logp, old, ref, adv, mask = _inputs()
    loss, stats = c3po_loss(logp, old, ref, adv, mask, normaliser=normaliser, budget=budget,
                            clip_eps=0.2, kl_coef=BETA)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats.tokens == 5
    assert stats.clip_fraction == pytest.approx(2 / 5)
    assert stats.kl == pytest.approx(KL_TOKEN / 5, rel=1e-5)


def test_budget_gradient_is_minus_a_r_over_phi():
    # unclipped token: d/dlogp [r A] = r A, so dL/dlogp = -r A / Phi; clipped tokens give 0.
    logp, old, ref, adv, mask = _inputs()
    loss, _ = c3po_loss(logp, old, logp.detach(), adv, mask, normaliser="budget", budget=10,
                        clip_eps=0.2, kl_coef=0.0)
    loss.backward()
    g = logp.grad
    assert g[0, 1].item() == pytest.approx(-0.9 * 1.0 / 10, rel=1e-5)
    assert g[1, 1].item() == pytest.approx(-1.1 * -2.0 / 10, rel=1e-5)
    assert g[0, 0].item() == 0.0 and g[1, 0].item() == 0.0  # clipped
    assert g[1, 2].item() == 0.0  # cut away by the budget


def test_zero_advantage_gives_zero_policy_gradient():
    logp, old, ref, _, mask = _inputs()
    loss, _ = c3po_loss(logp, old, ref, torch.zeros(2), mask, normaliser="budget", budget=4,
                        kl_coef=0.0)
    loss.backward()
    assert torch.count_nonzero(logp.grad) == 0
    assert loss.item() == 0.0


def test_budget_normaliser_is_constant_while_token_mean_is_not():
    # Doubling the selected tokens doubles a budget-normalised sum; token_mean stays a mean.
    x = torch.ones(1, 4)
    half, full = torch.tensor([[1.0, 1.0, 0.0, 0.0]]), torch.ones(1, 4)
    assert normalise(x, full, "budget", 8).item() == 2 * normalise(x, half, "budget", 8).item()
    assert normalise(x, full, "token_mean", None).item() == 1.0
    assert normalise(x, half, "token_mean", None).item() == 1.0


def test_bad_arguments_raise():
    x, m = torch.ones(1, 2), torch.ones(1, 2)
    with pytest.raises(ValueError, match="budget"):
        normalise(x, m, "budget", None)
    with pytest.raises(ValueError, match="unknown normaliser"):
        normalise(x, m, "sum", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("estimator", "value", "grad"), [
    # x = ref - logp = ln 2 at r0 token 1 (the only token where policy and reference differ)
    ("k3", 1.0 - math.log(2.0), 1.0 - 2.0),          # d/dlogp [e^x - x - 1] = 1 - e^x
    ("k2", 0.5 * math.log(2.0) ** 2, -math.log(2.0)),  # d/dlogp [x^2 / 2] = -x
    ("k1", -math.log(2.0), 1.0),                       # d/dlogp [-x] = 1
])
def test_kl_estimators_value_and_gradient(estimator, value, grad):
    logp, old, ref, adv, mask = _inputs()
    zero_adv = torch.zeros_like(adv)  # only the KL term moves the loss
    loss, stats = c3po_loss(logp, old, ref, zero_adv, mask, normaliser="budget", budget=1,
                            clip_eps=0.2, kl_coef=1.0, kl_estimator=estimator)
    assert loss.item() == pytest.approx(value, rel=1e-5)  # L = +beta * sum KL / Phi
    assert stats.kl == pytest.approx(value / 5, rel=1e-5)
    loss.backward()
    expected = torch.zeros(2, 3)
    if estimator == "k1":  # the log-ratio term has a gradient at every selected token
        expected = mask.clone()
    expected[0, 1] = grad
    torch.testing.assert_close(logp.grad, expected, rtol=1e-5, atol=1e-6)


def test_k3_weighs_a_collapsed_token_far_above_k2():
    # a token at 1/20 of its reference probability: k3's gradient weight is 1 - 20 = -19,
    # k2's is -ln 20 ~ -3.0
    logp = torch.tensor([[math.log(0.01)]], requires_grad=True)
    ref = torch.tensor([[math.log(0.2)]])
    weights = {}
    for est in ("k3", "k2"):
        lp = logp.detach().clone().requires_grad_(True)
        loss, _ = c3po_loss(lp, lp.detach(), ref, torch.zeros(1), torch.ones(1, 1),
                            normaliser="budget", budget=1, kl_coef=1.0, kl_estimator=est)
        loss.backward()
        weights[est] = lp.grad.item()
    assert weights["k3"] == pytest.approx(-19.0, rel=1e-4)
    assert weights["k2"] == pytest.approx(-math.log(20.0), rel=1e-4)


def test_unknown_kl_estimator_is_an_error():
    logp, old, ref, adv, mask = _inputs()
    with pytest.raises(ValueError, match="kl_estimator"):
        c3po_loss(logp, old, ref, adv, mask, budget=1, kl_estimator="k4")


def test_objective_adds_entropy_and_router_terms_by_hand():
    """L = s·[c3po - α·ΣH/Φ] + w·(λ_b·B + λ_z·Z). Uniform router logits over E experts give
    P_i = 1/E, so B = E·Σ f_i/E = 1 whatever the routing, and Z = (log E)² on every token."""
    logp, old, ref, adv, mask = _inputs()
    entropy = torch.tensor([[0.5, 1.0, 2.0], [0.25, 0.75, 9.0]])  # 9.0 sits outside the mask
    coefs = Coefs(clip_eps=0.2, kl_coef=BETA, kl_estimator="k3", entropy_coef=0.5,
                  balance_coef=0.01, z_coef=0.001)
    experts = 4
    router = ([torch.zeros(6, experts), torch.zeros(6, experts)], 2, torch.ones(2, 3))
    loss, stats, extra = objective(logp, old, ref, adv, mask, entropy, router, coefs,
                                   normaliser="budget", budget=10, row_share=0.5,
                                   token_share=0.25)
    h = 0.5 + 1.0 + 2.0 + 0.25 + 0.75
    z = math.log(experts) ** 2
    want = 0.5 * (-TOTAL / 10 - 0.5 * h / 10) + 0.25 * (0.01 * 1.0 + 0.001 * z)
    assert float(loss) == pytest.approx(want, rel=1e-6)
    assert extra == pytest.approx({"entropy": h, "balance_loss": 0.25, "z_loss": 0.25 * z})
    assert stats.tokens == 5
    # a dense model (router None): the router terms vanish and the rest is unchanged
    dense, _, extra = objective(logp, old, ref, adv, mask, entropy, None, coefs,
                                normaliser="budget", budget=10, row_share=0.5, token_share=0.25)
    assert float(dense) == pytest.approx(0.5 * (-TOTAL / 10 - 0.5 * h / 10), rel=1e-6)
    assert extra["balance_loss"] == extra["z_loss"] == 0.0

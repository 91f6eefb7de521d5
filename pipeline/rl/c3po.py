"""The RL objective: the C3PO policy loss (Ring-lite, arXiv 2506.14731, Eq. 2-3) and the
terms added to it, as pure functions.

:func:`objective` is the whole loss of one forward chunk, its equation in its docstring;
:func:`c3po_loss` is its policy term. The normaliser is an explicit argument so the paper's
comparison reruns on the same code: ``budget`` (C3PO: the constant token budget Φ),
``token_mean`` (DAPO: the step's token count), ``seq_mean`` (GRPO: mean over a response's
tokens, then mean over responses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from pipeline.rl.router_losses import balance_loss, z_loss

Normaliser = Literal["budget", "token_mean", "seq_mean"]
NORMALISERS: tuple[str, ...] = ("budget", "token_mean", "seq_mean")
KlEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")


@dataclass(frozen=True)
class LossStats:
    """Diagnostics of one loss evaluation (plain floats, detached)."""

    kl: float  # mean of the penalised KL estimator (k1, k2 or k3) per selected token
    clip_fraction: float  # fraction of selected tokens whose ratio was clipped (and mattered)
    ratio_mean: float
    tokens: int  # number of selected tokens (mask sum)


def normalise(per_token: torch.Tensor, mask: torch.Tensor, normaliser: Normaliser,
              budget: int | None) -> torch.Tensor:
    """Reduce a (B, T) per-token quantity over ``mask`` with the chosen normaliser.

    - ``budget``:     Σ_{b,t} m·x / Φ                       (Φ = ``budget``, a constant)
    - ``token_mean``: Σ_{b,t} m·x / Σ_{b,t} m
    - ``seq_mean``:   mean_b [ Σ_t m·x / Σ_t m ]  over responses b with at least one token
    """
    mask = mask.to(per_token.dtype)
    if normaliser == "budget":
        if budget is None or budget <= 0:
            raise ValueError(f"normaliser 'budget' needs a positive budget, got {budget!r}")
        return (per_token * mask).sum() / budget
    if normaliser == "token_mean":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if normaliser == "seq_mean":
        lengths = mask.sum(dim=1)  # (B,)
        rows = lengths > 0
        per_seq = (per_token * mask).sum(dim=1)[rows] / lengths[rows]
        return per_seq.mean() if per_seq.numel() else per_token.sum() * 0.0
    raise ValueError(f"unknown normaliser {normaliser!r} (choose from {NORMALISERS})")


def c3po_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normaliser: Normaliser = "budget",
    budget: int | None = None,
    clip_eps: float = 0.2,
    kl_coef: float = 1e-3,
    kl_estimator: KlEstimator = "k3",
) -> tuple[torch.Tensor, LossStats]:
    r"""Clipped policy loss with a KL penalty, normalised by the token budget Φ (C3PO).

    With r_t = exp(logp_t - old_logp_t), A_t the response's advantage broadcast over its tokens,
    Ψ the selected tokens (``mask``) and KL_t one of Schulman's estimators of KL(π_θ || π_ref)
    at token t, with x = ref_t - logp_t:

    - ``k3``: exp(x) - x - 1 (>= 0). Its gradient weighs a token by 1 - π_ref/π_θ, which grows
      without bound where the policy has moved far below the reference (a token at 1/20 of its
      reference probability counts 19x);
    - ``k2``: x² / 2 (>= 0). Its gradient is -x ∇logp: the true gradient of KL(π_θ || π_ref)
      for tokens sampled from π_θ, linear in the log-ratio, so no token dominates;
    - ``k1``: -x (the plain log-ratio; unbiased for the KL value, but its gradient is ∇logp,
      which carries no information about the reference).

    ::

        L = -(1/Φ) Σ_{t∈Ψ} [ min(r_t A_t, clip(r_t, 1-ε, 1+ε) A_t) - β KL_t ]

    for ``normaliser="budget"``; ``token_mean`` replaces 1/Φ by 1/|Ψ| and ``seq_mean`` averages
    each response's tokens first, then the responses (see :func:`normalise`).

    Args (all (B, T) except ``advantages``, which is (B,) or (B, T)):
        logp: log π_θ(y_t | ...) of the current policy (carries the gradient).
        old_logp: log-probs under the policy that sampled / before this update (no grad).
        ref_logp: log-probs under the frozen reference model (no grad).
        mask: 1 for tokens in Ψ (a cut response keeps only its first tokens), 0 elsewhere.
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    old_logp, ref_logp, advantages = old_logp.detach(), ref_logp.detach(), advantages.detach()
    ratio = torch.exp(logp - old_logp)
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    surrogate = torch.minimum(ratio * advantages, clipped * advantages)
    log_ref_ratio = ref_logp - logp
    if kl_estimator == "k3":
        kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1.0
    elif kl_estimator == "k2":
        kl = 0.5 * log_ref_ratio**2
    elif kl_estimator == "k1":
        kl = -log_ref_ratio
    else:
        raise ValueError(f"unknown kl_estimator {kl_estimator!r} (choose from {KL_ESTIMATORS})")
    loss = -normalise(surrogate - kl_coef * kl, mask, normaliser, budget)

    with torch.no_grad():
        m = mask.to(logp.dtype)
        n = float(m.sum())
        was_clipped = (clipped * advantages < ratio * advantages).to(logp.dtype)
        stats = LossStats(
            kl=float((kl * m).sum() / max(n, 1.0)),
            clip_fraction=float((was_clipped * m).sum() / max(n, 1.0)),
            ratio_mean=float((ratio * m).sum() / max(n, 1.0)),
            tokens=int(n),
        )
    return loss, stats


@dataclass(frozen=True)
class Coefs:
    """The objective's weights (params.yaml's RL section)."""

    clip_eps: float  # ε
    kl_coef: float  # β
    kl_estimator: KlEstimator
    entropy_coef: float  # α
    balance_coef: float  # λ_b
    z_coef: float  # λ_z


def objective(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    entropy: torch.Tensor,
    router: tuple[Sequence[torch.Tensor], int, torch.Tensor] | None,
    coefs: Coefs,
    *,
    normaliser: Normaliser,
    budget: int | None,
    row_share: float = 1.0,
    token_share: float = 1.0,
) -> tuple[torch.Tensor, LossStats, dict[str, float]]:
    r"""The whole RL loss of one forward chunk of a mini-batch.

    ::

        L = s · [ -(1/Φ) Σ_{t∈Ψ} ( min(r_t A_t, clip(r_t, 1-ε, 1+ε) A_t) - β KL_t )
                  - α (1/Φ) Σ_{t∈Ψ} H_t ]
            + w · ( λ_b B + λ_z Z )

    - the first line is :func:`c3po_loss` (its docstring defines r_t, A_t, Ψ and KL_t), 1/Φ
      the chosen normaliser (:func:`normalise`: Φ = ``budget`` under C3PO);
    - H_t is the policy's full-vocabulary entropy at token t (``entropy``), under the same
      normaliser; α > 0 rewards entropy;
    - B and Z are the MoE load-balance and router z-losses of the chunk's real tokens
      (:mod:`pipeline.rl.router_losses`); ``router`` = (router logits per layer, experts per
      token, mask of real token rows), or None for a dense model or λ_b = λ_z = 0;
    - s (``row_share``) is the chunk's share of the mini-batch's responses under ``seq_mean``
      (else 1) and w (``token_share``) its share of the mini-batch's tokens, so the chunks'
      losses sum to the mini-batch's.

    Returns (L, the policy term's diagnostics, {"entropy": Σ H over Ψ, "balance_loss": w·B,
    "z_loss": w·Z}) with the diagnostics detached.
    """
    pg, stats = c3po_loss(logp, old_logp, ref_logp, advantages, mask, normaliser=normaliser,
                          budget=budget, clip_eps=coefs.clip_eps, kl_coef=coefs.kl_coef,
                          kl_estimator=coefs.kl_estimator)
    ent = normalise(entropy, mask, normaliser, budget)
    loss = row_share * (pg - coefs.entropy_coef * ent)
    extra = {"entropy": float((entropy.detach() * mask).sum()), "balance_loss": 0.0,
             "z_loss": 0.0}
    if router is not None:
        logits, top_k, rows = router
        bal, zl = balance_loss(logits, top_k, rows), z_loss(logits, rows)
        loss = loss + token_share * (coefs.balance_coef * bal + coefs.z_coef * zl)
        extra["balance_loss"] = token_share * float(bal.detach())
        extra["z_loss"] = token_share * float(zl.detach())
    return loss, stats, extra

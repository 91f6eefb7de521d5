"""MoE auxiliary losses from router logits (``output_router_logits=True`` on qwen2_moe).

Both take the per-layer router logits, each (N, E) over the N = B*T token rows of the batch,
and an optional (B, T) mask of real (non-padding) tokens.

- load balance (Switch Transformer / Ring-lite): B = E · Σ_i f_i P_i, f_i = share of the
  top-k routing slots that go to expert i (Σ f_i = 1), P_i = mean router probability of expert
  i; averaged over layers. Perfect balance gives 1.
- router z-loss (ST-MoE): Z = mean over tokens of (logsumexp_i z_i)^2, averaged over layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _rows(mask: torch.Tensor | None, n: int, like: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones(n, dtype=torch.float32, device=like.device)
    flat = mask.reshape(-1).to(torch.float32)
    if flat.numel() != n:
        raise ValueError(f"mask has {flat.numel()} entries, router logits have {n} rows")
    return flat


def balance_loss(router_logits: Sequence[torch.Tensor], top_k: int,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """E · Σ_i f_i P_i averaged over layers (see module docstring)."""
    losses = []
    for z in router_logits:
        w = _rows(mask, z.shape[0], z)
        probs = torch.softmax(z.float(), dim=-1)  # (N, E)
        chosen = torch.topk(probs, top_k, dim=-1).indices  # (N, k)
        slots = torch.zeros_like(probs).scatter_(1, chosen, 1.0)  # (N, E) one per slot
        total = w.sum().clamp(min=1.0)
        f = (slots * w[:, None]).sum(0) / (total * top_k)  # no gradient (discrete)
        p = (probs * w[:, None]).sum(0) / total
        losses.append(z.shape[1] * (f * p).sum())
    return torch.stack(losses).mean()


def z_loss(router_logits: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
    """mean over real tokens of (logsumexp z)^2, averaged over layers."""
    losses = []
    for z in router_logits:
        w = _rows(mask, z.shape[0], z)
        lse2 = torch.logsumexp(z.float(), dim=-1) ** 2
        losses.append((lse2 * w).sum() / w.sum().clamp(min=1.0))
    return torch.stack(losses).mean()

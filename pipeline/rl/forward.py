"""The trainer-side forward pass of the policy on prompt + response tokens.

Same batch layout as :mod:`pipeline.engines.scoring` (prompts left-padded, responses
right-padded, ``logits[:, P-1+t]`` predicts response token t), plus the MoE router logits that
the balance and z-losses need. Only the last C+1 positions' logits are materialised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pipeline.engines.scoring import pack_batch, positions


@dataclass
class Forward:
    """Per-token results of one forward pass; (B, C) tensors are 0 beyond a response."""

    logp: torch.Tensor  # (B, C) log π(y_t | ...)
    entropy: torch.Tensor | None  # (B, C) full-vocabulary entropy, nats
    mask: torch.Tensor  # (B, C) float, 1 on response tokens
    router_logits: tuple[torch.Tensor, ...]  # per MoE layer, (B*(P+C), E); () for dense models
    attention: torch.Tensor  # (B, P+C) real-token mask (rows of the router logits)


def has_router(model: torch.nn.Module) -> bool:
    """True for MoE models whose forward can return router logits (qwen2_moe and kin)."""
    cfg = getattr(model, "config", None)
    return bool(getattr(cfg, "num_experts", 0)) and hasattr(cfg, "output_router_logits")


def policy_forward(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                   completion_ids: Sequence[Sequence[int]], pad_id: int, *,
                   with_entropy: bool = False, with_router: bool = False) -> Forward:
    """Teacher-forced forward; follows the caller's grad mode (``torch.no_grad`` to score).

    ``model`` may be a DeepSpeed engine (forward passes through); ``with_router`` asks for
    router logits, which only MoE models give (check with :func:`has_router` on the module).
    """
    device = next(model.parameters()).device
    ids, attention, comp_mask, width_p = pack_batch(prompt_ids, completion_ids, pad_id, device)
    width_c = comp_mask.shape[1]
    kwargs = {"output_router_logits": True} if with_router else {}
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions(attention),
                logits_to_keep=width_c + 1, **kwargs)
    logits = out.logits[:, :-1].float()  # (B, C, V): position P-1+t predicts token t
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = ids[:, width_p:]
    mask = comp_mask.to(logits.dtype)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    entropy = -(logp_all.exp() * logp_all).sum(-1) * mask if with_entropy else None
    router = tuple(getattr(out, "router_logits", None) or ()) if kwargs else ()
    return Forward(logp, entropy, mask, router, attention)


def length_chunks(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                  rows: int) -> list[list[int]]:
    """Row indices sorted by (prompt, response) length, in chunks of at most ``rows``.

    Prompts are left-padded and responses right-padded to the widest row of a forward pass, so
    one pass over a mixed batch pays for the longest prompt plus the longest response in every
    row; length-sorted chunks pad each to its own neighbours only.
    """
    order = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]),
                                                          len(completion_ids[i])))
    return [order[s:s + rows] for s in range(0, len(order), rows)]


@torch.no_grad()
def score_rows(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
               completion_ids: Sequence[Sequence[int]], pad_id: int, chunk: int
               ) -> list[torch.Tensor]:
    """Per-row 1-D log-prob tensors (input order), computed in length-sorted chunks of at most
    ``chunk`` rows (no grad)."""
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor | None] = [None] * len(prompt_ids)
    try:
        for idx in length_chunks(prompt_ids, completion_ids, chunk):
            comps = [completion_ids[i] for i in idx]
            f = policy_forward(model, [prompt_ids[i] for i in idx], comps, pad_id)
            for j, i in enumerate(idx):
                rows[i] = f.logp[j, : len(comps[j])]
    finally:
        model.train(was_training)
    return rows  # type: ignore[return-value]

"""Teacher-forced scoring: one forward pass of a model over prompt + completion tokens.

Used by RL (the policy's log-probs, entropies and MoE router logits for the loss; the reference
model's and the rollout/trainer mismatch), by select (mean token entropy of the policy on its
own samples) and by the engine tests.

Layout of a batch (prompts left-padded, completions right-padded, so every completion starts
at the same column ``P``)::

    [pad pad p0 p1 p2 | c0 c1 c2 pad]      position_ids = cumsum(mask) - 1
    logits[:, P-1+t] predicts c_t

Only the last C+1 positions' logits are materialised. Log-probs and entropies are those of the
distribution the completions were sampled from: ``log_softmax(logits / temperature)``, as the
generation engines report them; at a rollout temperature other than 1 the policy gradient, the
PPO ratio and the KL term are then all about the sampling policy, not the untempered one.

Everything follows the caller's grad mode: wrap in ``torch.no_grad()`` to score only, call
:func:`policy_forward` with grad enabled to train through the log-probs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache

Ids = Sequence[Sequence[int]]


def pack_batch(
    prompt_ids: Ids, completion_ids: Ids, pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(input_ids (B, P+C), attention_mask (B, P+C), completion_mask (B, C), P)."""
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(
            f"{len(prompt_ids)} prompts but {len(completion_ids)} completions: must match"
        )
    for i, p in enumerate(prompt_ids):
        if len(p) == 0:
            raise ValueError(f"prompt_ids[{i}] is empty: a completion needs a prompt to follow")
    width_p = max(len(p) for p in prompt_ids)
    width_c = max(1, max(len(c) for c in completion_ids))
    rows = len(prompt_ids)
    input_ids = torch.full((rows, width_p + width_c), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, width_p + width_c), dtype=torch.long)
    comp_mask = torch.zeros((rows, width_c), dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        input_ids[i, width_p - len(p) : width_p] = torch.as_tensor(list(p), dtype=torch.long)
        input_ids[i, width_p : width_p + len(c)] = torch.as_tensor(list(c), dtype=torch.long)
        attention[i, width_p - len(p) : width_p + len(c)] = 1
        comp_mask[i, : len(c)] = True
    return input_ids.to(device), attention.to(device), comp_mask.to(device), width_p


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: 0 at each row's first real token."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)




@dataclass
class Forward:
    """Per-token results of one forward pass; (B, C) tensors are 0 beyond a response."""

    logp: torch.Tensor  # (B, C) log π(y_t | ...)
    entropy: torch.Tensor | None  # (B, C) full-vocabulary entropy, nats
    mask: torch.Tensor  # (B, C) float, 1 on response tokens
    router_logits: tuple[torch.Tensor, ...]  # per MoE layer, (B*(P+C), E); () for dense models
    attention: torch.Tensor  # real-token mask of the router logits' rows: (B, P+C), or flat


def has_router(model: torch.nn.Module) -> bool:
    """True for MoE models whose forward can return router logits (qwen2_moe and kin)."""
    cfg = getattr(model, "config", None)
    return bool(getattr(cfg, "num_experts", 0)) and hasattr(cfg, "output_router_logits")


def policy_forward(model: torch.nn.Module, prompt_ids: Ids, completion_ids: Ids,
                   pad_id: int, *,
                   with_entropy: bool = False, with_router: bool = False,
                   share_prompts: bool = True, temperature: float = 1.0) -> Forward:
    """Teacher-forced forward; follows the caller's grad mode (``torch.no_grad`` to score).

    ``model`` may be a DeepSpeed engine (forward passes through); ``with_router`` asks for
    router logits, which only MoE models give (check with :func:`has_router` on the module).
    With ``share_prompts`` and rows that repeat a prompt (the K samples of a group), each
    distinct prompt is run once and its KV cache is repeated for its rows (gradients flow
    back through the repeat): see :func:`_shared_forward`. ``temperature`` (> 0) scales the
    logits before the softmax (the sampling distribution). A bf16 model on a GPU runs under
    bf16 autocast (:func:`autocast_for`); the log-softmax is taken in fp32 either way.
    """
    if temperature <= 0:
        raise ValueError(f"policy_forward: temperature must be > 0, got {temperature}")
    with autocast_for(model):
        return _policy_forward(model, prompt_ids, completion_ids, pad_id, with_entropy,
                               with_router, share_prompts, temperature)


def autocast_for(model: torch.nn.Module) -> Any:
    """bf16 autocast for a bf16 model on CUDA (DeepSpeed's bf16 policy and the reference that
    follows it); nothing elsewhere (CPU runs are fp32 and untouched)."""
    p = next(model.parameters())
    if p.device.type == "cuda" and p.dtype == torch.bfloat16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _policy_forward(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                    completion_ids: Sequence[Sequence[int]], pad_id: int, with_entropy: bool,
                    with_router: bool, share_prompts: bool, temperature: float) -> Forward:
    if share_prompts and len({tuple(p) for p in prompt_ids}) < len(prompt_ids):
        return _shared_forward(model, prompt_ids, completion_ids, pad_id, with_entropy,
                               with_router, temperature)
    device = next(model.parameters()).device
    ids, attention, comp_mask, width_p = pack_batch(prompt_ids, completion_ids, pad_id, device)
    width_c = comp_mask.shape[1]
    kwargs = {"output_router_logits": True} if with_router else {}
    out = model(input_ids=ids, attention_mask=attention, position_ids=positions(attention),
                logits_to_keep=width_c + 1, **kwargs)
    logits = out.logits[:, :-1].float()  # (B, C, V): position P-1+t predicts token t
    router = tuple(getattr(out, "router_logits", None) or ()) if kwargs else ()
    return _finish(logits, ids[:, width_p:], comp_mask, with_entropy, router, attention,
                   temperature)


def _finish(logits: torch.Tensor, targets: torch.Tensor, comp_mask: torch.Tensor,
            with_entropy: bool, router: tuple, attention: torch.Tensor,
            temperature: float) -> Forward:
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    mask = comp_mask.to(logits.dtype)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask
    entropy = -(logp_all.exp() * logp_all).sum(-1) * mask if with_entropy else None
    return Forward(logp, entropy, mask, router, attention)


def _shared_forward(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                    completion_ids: Sequence[Sequence[int]], pad_id: int, with_entropy: bool,
                    with_router: bool, temperature: float) -> Forward:
    """:func:`policy_forward` with each distinct prompt run once.

    1. the U distinct prompts, left-padded, run with a KV cache; the last position's logits
       predict every row's first response token;
    2. the cache is repeated to the B rows (``batch_select_indices``: an indexing op, so the
       gradient of every row reaches the prompt's keys and values);
    3. the responses (all but their last token), right-padded, run on top of the cache at
       positions continuing their prompt's.
    Same log-probs as the unshared forward up to float rounding (tests/test_rl_trainer.py).
    Router logits: the prompts' rows (once per distinct prompt) then the responses' rows;
    ``Forward.attention`` is the matching flat mask of real tokens.
    """
    device = next(model.parameters()).device
    keys: dict[tuple[int, ...], int] = {}
    row_prompt = [keys.setdefault(tuple(p), len(keys)) for p in prompt_ids]
    distinct = list(keys)
    p_ids, p_att, _, width_p = pack_batch(distinct, [[pad_id]] * len(distinct), pad_id, device)
    p_ids, p_att = p_ids[:, :width_p], p_att[:, :width_p]
    kwargs = {"output_router_logits": True} if with_router else {}
    # the decoder stack and the head are called directly: the causal-LM forward would compute
    # its own balance loss from a 2-D mask that, past a cache, no longer matches the tokens
    lm = getattr(model, "module", model)  # a DeepSpeed engine holds the HF model
    cache = DynamicCache(config=lm.config)
    out_p = lm.model(input_ids=p_ids, attention_mask=p_att, position_ids=positions(p_att),
                     past_key_values=cache, use_cache=True, **kwargs)
    index = torch.tensor(row_prompt, device=device)
    first = lm.lm_head(out_p.last_hidden_state[:, -1:]).float()[index]  # (B, 1, V): token 0
    width_c = max(1, max(len(c) for c in completion_ids))
    comps = torch.full((len(completion_ids), width_c), pad_id, dtype=torch.long, device=device)
    comp_mask = torch.zeros_like(comps, dtype=torch.bool)
    for i, c in enumerate(completion_ids):
        comps[i, : len(c)] = torch.as_tensor(list(c), dtype=torch.long)
        comp_mask[i, : len(c)] = True
    router_p = tuple(getattr(out_p, "router_logits", None) or ()) if kwargs else ()
    flat_mask = [p_att.reshape(-1)]
    logits = first
    router = router_p
    if width_c > 1:
        cache.batch_select_indices(index)
        feed_mask = comp_mask[:, :-1].long()
        attention = torch.cat([p_att[index], feed_mask], dim=1)
        start = p_att.sum(-1)[index]  # each row's prompt length = its first response position
        pos = start[:, None] + torch.arange(width_c - 1, device=device)[None]
        out_c = lm.model(input_ids=comps[:, :-1], attention_mask=attention, position_ids=pos,
                         past_key_values=cache, use_cache=True, **kwargs)
        logits = torch.cat([first, lm.lm_head(out_c.last_hidden_state).float()], dim=1)
        if kwargs:
            router_c = tuple(getattr(out_c, "router_logits", None) or ())
            router = tuple(torch.cat([a, b]) for a, b in zip(router_p, router_c, strict=True))
        flat_mask.append(feed_mask.reshape(-1))
    return _finish(logits, comps, comp_mask, with_entropy, router, torch.cat(flat_mask),
                   temperature)


def length_chunks(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]],
                  rows: int) -> list[list[int]]:
    """Row indices sorted by prompt length, prompt, response length; in chunks of at most
    ``rows``.

    Prompts are left-padded and responses right-padded to the widest row of a forward pass, so
    one pass over a mixed batch pays for the longest prompt plus the longest response in every
    row; length-sorted chunks pad each to its own neighbours only. Rows of one prompt stay
    together, so a chunk runs each of its prompts once (:func:`policy_forward`).
    """
    order = sorted(range(len(prompt_ids)), key=lambda i: (len(prompt_ids[i]),
                                                          tuple(prompt_ids[i]),
                                                          len(completion_ids[i])))
    return [order[s:s + rows] for s in range(0, len(order), rows)]


@torch.no_grad()
def score_rows(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
               completion_ids: Sequence[Sequence[int]], pad_id: int, chunk: int,
               temperature: float = 1.0) -> list[torch.Tensor]:
    """Per-row 1-D log-prob tensors (input order) at ``temperature``, computed in
    length-sorted chunks of at most ``chunk`` rows (no grad)."""
    was_training = model.training
    model.eval()
    rows: list[torch.Tensor | None] = [None] * len(prompt_ids)
    try:
        for idx in length_chunks(prompt_ids, completion_ids, chunk):
            comps = [completion_ids[i] for i in idx]
            f = policy_forward(model, [prompt_ids[i] for i in idx], comps, pad_id,
                               temperature=temperature)
            for j, i in enumerate(idx):
                rows[i] = f.logp[j, : len(comps[j])]
    finally:
        model.train(was_training)
    return rows  # type: ignore[return-value]


def _per_row(values: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [values[i, : int(mask[i].sum())] for i in range(values.shape[0])]


def _unshared(model: torch.nn.Module, prompt_ids: Ids, completion_ids: Ids, temperature: float,
              batch_size: int, pad_id: int, entropy: bool) -> list[torch.Tensor]:
    """Per-row log-probs (or entropies) in input order, ``batch_size`` rows per forward, every
    row run with its own prompt (padding does not change the values)."""
    if temperature <= 0:
        temperature = 1.0  # greedy engines report log_softmax(logits): T = 1
    result: list[torch.Tensor] = []
    for start in range(0, len(prompt_ids), batch_size):
        part = slice(start, min(len(prompt_ids), start + batch_size))
        f = policy_forward(model, prompt_ids[part], completion_ids[part], pad_id,
                           with_entropy=entropy, share_prompts=False, temperature=temperature)
        result.extend(_per_row(f.entropy if entropy else f.logp, f.mask))
    return result


def token_logprobs(model: torch.nn.Module, prompt_ids: Ids, completion_ids: Ids, *,
                   temperature: float = 1.0, batch_size: int = 32,
                   pad_id: int = 0) -> list[torch.Tensor]:
    """Per-token log-probs of each completion given its prompt: one 1-D float tensor per row,
    ``len(completion_ids[i])`` long; ``temperature`` <= 0 (greedy) scores at 1."""
    return _unshared(model, prompt_ids, completion_ids, temperature, batch_size, pad_id, False)


def token_entropy(model: torch.nn.Module, prompt_ids: Ids, completion_ids: Ids, *,
                  temperature: float = 1.0, batch_size: int = 32,
                  pad_id: int = 0) -> list[torch.Tensor]:
    """Full-vocabulary entropy (nats) of the next-token distribution at each completion position:
    ``entropy[i][t]`` is that of the (temperature-scaled) distribution token ``t`` of completion
    ``i`` was drawn from. One 1-D tensor per row."""
    return _unshared(model, prompt_ids, completion_ids, temperature, batch_size, pad_id, True)


def mismatch(engine_logprobs: Sequence[float], trainer_logprobs: Sequence[float]) -> dict:
    """Rollout/trainer mismatch over matched tokens: mean |Δ log p| and the k3 KL estimate.

    With r = exp(trainer - engine) (tokens sampled by the engine): k3 = mean(r - 1 - log r),
    an unbiased, non-negative estimate of KL(engine || trainer).
    """
    eng = torch.as_tensor(list(engine_logprobs), dtype=torch.float64)
    trn = torch.as_tensor(list(trainer_logprobs), dtype=torch.float64)
    if eng.shape != trn.shape:
        raise ValueError(f"length mismatch: {eng.numel()} engine vs {trn.numel()} trainer tokens")
    if eng.numel() == 0:
        return {"logprob_abs_diff": 0.0, "kl_k3": 0.0}
    log_r = trn - eng
    return {
        "logprob_abs_diff": float(log_r.abs().mean()),
        "kl_k3": float((log_r.exp() - 1 - log_r).mean()),
    }

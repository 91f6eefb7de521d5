"""Trainer-side scoring of completions by one teacher-forced forward pass.

Used by RL (log-probs of the policy and the reference, rollout/trainer mismatch), by select
(mean token entropy of the policy on its own samples) and by the engine tests.

Layout of a batch (prompts left-padded, completions right-padded, so every completion starts
at the same column ``P``)::

    [pad pad p0 p1 p2 | c0 c1 c2 pad]      position_ids = cumsum(mask) - 1
    logits[:, P-1+t] predicts c_t

Everything follows the caller's grad mode: wrap in ``torch.no_grad()`` for scoring only, call
:func:`completion_stats` with grad enabled to train through the log-probs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

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


def completion_stats(
    model: torch.nn.Module,
    prompt_ids: Ids,
    completion_ids: Ids,
    *,
    temperature: float = 1.0,
    pad_id: int = 0,
    with_entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """One forward pass: (logprobs (B, C), entropy (B, C) or None, completion_mask (B, C)).

    ``logprobs[b, t] = log_softmax(logits / T)[c_t]`` and ``entropy[b, t] = -sum_v p_v log p_v``
    over the full vocabulary of the same temperature-scaled distribution; positions beyond a
    completion's length are 0 (masked out by ``completion_mask``).
    """
    if temperature <= 0:
        temperature = 1.0  # greedy engines report log_softmax(logits): T = 1
    device = next(model.parameters()).device
    input_ids, attention, comp_mask, width_p = pack_batch(
        prompt_ids, completion_ids, pad_id, device
    )
    width_c = comp_mask.shape[1]
    # logits only for the last C + 1 positions (P-1 .. P+C-1): the prompt's are never needed
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions(attention),
                logits_to_keep=width_c + 1)
    logits = out.logits[:, :width_c].float() / temperature  # (B, C, V)
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, width_p : width_p + width_c]
    logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * comp_mask
    entropy = None
    if with_entropy:
        entropy = -(logp_all.exp() * logp_all).sum(-1) * comp_mask
    return logprobs, entropy, comp_mask


def _chunks(rows: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, rows, batch_size):
        yield slice(start, min(rows, start + batch_size))


def _per_row(values: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [values[i, : int(mask[i].sum())] for i in range(values.shape[0])]


def token_logprobs(
    model: torch.nn.Module,
    prompt_ids: Ids,
    completion_ids: Ids,
    *,
    temperature: float = 1.0,
    batch_size: int = 32,
    pad_id: int = 0,
) -> list[torch.Tensor]:
    """Per-token log-probs of each completion given its prompt (teacher forcing).

    Returns one 1-D float tensor per row, ``len(completion_ids[i])`` long, computed in batches
    of ``batch_size`` rows with padding (padding does not change the values).
    """
    result: list[torch.Tensor] = []
    for part in _chunks(len(prompt_ids), batch_size):
        lp, _, mask = completion_stats(
            model, prompt_ids[part], completion_ids[part],
            temperature=temperature, pad_id=pad_id, with_entropy=False,
        )
        result.extend(_per_row(lp, mask))
    return result


def token_entropy(
    model: torch.nn.Module,
    prompt_ids: Ids,
    completion_ids: Ids,
    *,
    temperature: float = 1.0,
    batch_size: int = 32,
    pad_id: int = 0,
) -> list[torch.Tensor]:
    """Full-vocabulary entropy (nats) of the next-token distribution at each completion position.

    ``entropy[i][t]`` is the entropy of the distribution from which token ``t`` of completion
    ``i`` was drawn (temperature-scaled logits). One 1-D tensor per row.
    """
    result: list[torch.Tensor] = []
    for part in _chunks(len(prompt_ids), batch_size):
        _, ent, mask = completion_stats(
            model, prompt_ids[part], completion_ids[part], temperature=temperature, pad_id=pad_id
        )
        assert ent is not None
        result.extend(_per_row(ent, mask))
    return result


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

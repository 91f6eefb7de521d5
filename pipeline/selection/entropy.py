"""Mean token-level entropy of a policy on its own samples (the RL step-0 entropy).

For a generated token y_t the policy's distribution at that position is
p_t = softmax(z_t) over the FULL vocabulary (temperature 1.0, no top-p truncation), with z_t the
logits of a teacher-forced forward pass over prompt + completion (the trainer's view, not the
sampler's). Its entropy is

    H_t = -sum_v p_t(v) log p_t(v)        (nats)

and the reported figure is the token-weighted mean over every generated token of every sample:
mean_H = sum_{samples} sum_t H_t / sum_{samples} |y|. Long samples weigh more, exactly as a
token-mean entropy logged at RL step 0 would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def mean_token_entropy(per_sample: Sequence[torch.Tensor]) -> float:
    """Token-weighted mean of per-token entropies pooled over samples (nan if no tokens)."""
    total = sum(float(h.sum()) for h in per_sample)
    count = sum(int(h.numel()) for h in per_sample)
    return total / count if count else float("nan")


@torch.no_grad()
def policy_entropy(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    pad_id: int = 0,
    batch_size: int = 16,
) -> tuple[float, int]:
    """(token-weighted mean entropy, generated token count) of ``model`` on its samples.

    Teacher-forced forward over prompt + completion at temperature 1.0 via
    :func:`pipeline.engines.scoring.token_entropy` (the RL trainer's forward).
    """
    from pipeline.engines.scoring import token_entropy

    per_sample = token_entropy(
        model, prompt_ids, completion_ids, temperature=1.0, batch_size=batch_size, pad_id=pad_id
    )
    return mean_token_entropy(per_sample), sum(int(h.numel()) for h in per_sample)

"""Group advantages and the C3PO token-budget selector (pure, numpy only).

Steps 2-3 of C3PO (``docs/rl.md``; Ring-lite, arXiv 2506.14731, section on C3PO):

1. advantages over ALL K responses of a prompt: A_i = (R_i - mean R) / (std R + eps), with the
   population std (ddof 0); a group whose rewards are all equal has A = 0 and is flagged;
2. the token budget Φ: responses are walked in a documented order (:func:`walk_order`); whole
   responses are kept while the running count stays under Φ, the response that crosses Φ is cut
   at the token level so that exactly Φ tokens are selected, the rest is dropped for this step.

Granularity: one selection fills ``minibatches`` consecutive mini-batches of Φ tokens each (the
walk continues with the next response after a cut; the cut response's remainder is dropped,
never carried over). ``minibatches=1`` is "Φ per step".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

WalkOrder = Literal["sampled", "interleaved", "shuffled"]
WALK_ORDERS: tuple[str, ...] = ("sampled", "interleaved", "shuffled")


def group_advantages(rewards: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(L, K) rewards -> ((L, K) advantages, (L,) bool "group has zero variance")."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be (prompts, samples), got shape {r.shape}")
    mean = r.mean(axis=1, keepdims=True)
    std = r.std(axis=1, keepdims=True)
    zero_var = np.isclose(std[:, 0], 0.0)
    adv = (r - mean) / (std + eps)
    adv[zero_var] = 0.0
    return adv, zero_var


def walk_order(n_prompts: int, n_samples: int, order: WalkOrder,
               rng: np.random.Generator | None = None) -> list[int]:
    """Flat response indices (prompt-major: i = p * K + k) in the order the budget walks them.

    - ``sampled``: as generated, prompt by prompt (p0k0, p0k1, ..., p1k0, ...);
    - ``interleaved``: sample k of every prompt before sample k+1 (p0k0, p1k0, ..., p0k1, ...),
      so a cut removes the same share of every group instead of whole late prompts;
    - ``shuffled``: a permutation drawn from ``rng`` (seeded by the caller).
    """
    n = n_prompts * n_samples
    if order == "sampled":
        return list(range(n))
    if order == "interleaved":
        return [p * n_samples + k for k in range(n_samples) for p in range(n_prompts)]
    if order == "shuffled":
        if rng is None:
            raise ValueError("walk order 'shuffled' needs a seeded rng")
        return [int(i) for i in rng.permutation(n)]
    raise ValueError(f"unknown walk order {order!r} (choose from {WALK_ORDERS})")


@dataclass(frozen=True)
class Selection:
    """Result of a budget walk.

    ``minibatches[m]`` lists ``(response index, tokens kept)`` in walk order; tokens kept is the
    whole length except for a cut response, which keeps its first tokens only.
    """

    minibatches: tuple[tuple[tuple[int, int], ...], ...]
    tokens_selected: int
    tokens_dropped: int  # tokens of walked responses not selected (cut remainders + leftovers)
    responses_dropped: int  # walked responses with no token selected
    responses_cut: int


def select_budget(lengths: Sequence[int], budget: int, order: Sequence[int],
                  minibatches: int = 1) -> Selection:
    """Walk ``order`` filling ``minibatches`` mini-batches of exactly ``budget`` tokens each.

    ``lengths[i]`` is response i's token count; only indices in ``order`` are considered (the
    caller leaves out zero-variance groups when configured). A mini-batch is short only when
    the responses run out.
    """
    if budget <= 0 or minibatches <= 0:
        raise ValueError(f"budget and minibatches must be positive, got {budget}, {minibatches}")
    batches: list[list[tuple[int, int]]] = [[] for _ in range(minibatches)]
    m, used, cut = 0, 0, 0
    for i in order:
        n = int(lengths[i])
        if m == minibatches or n == 0:
            continue
        take = min(n, budget - used)
        batches[m].append((i, take))
        cut += take < n
        used += take
        if used == budget:
            m, used = m + 1, 0
    kept = {i: t for b in batches for i, t in b}
    walked = sum(int(lengths[i]) for i in order)
    selected = sum(kept.values())
    return Selection(
        minibatches=tuple(tuple(b) for b in batches),
        tokens_selected=selected,
        tokens_dropped=walked - selected,
        responses_dropped=sum(1 for i in order if kept.get(i, 0) == 0),
        responses_cut=cut,
    )


def select_all(lengths: Sequence[int], order: Sequence[int], minibatches: int = 1) -> Selection:
    """No budget (``token_mean``/``seq_mean`` baselines): every token, split into mini-batches
    of (nearly) equal response counts."""
    idx = [i for i in order if int(lengths[i]) > 0]
    parts = np.array_split(np.array(idx, dtype=np.int64), minibatches)
    batches = tuple(tuple((int(i), int(lengths[i])) for i in part) for part in parts)
    return Selection(batches, sum(int(lengths[i]) for i in idx), 0, 0, 0)

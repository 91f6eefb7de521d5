"""What C3PO needs between data-parallel ranks: the rank layout, a few collectives, the split.

- :func:`world_rank`: (world size, rank) of the running process group, (1, 0) without one;
- :func:`gather` / :func:`all_sum` / :func:`barrier`: ``torch.distributed`` all-gather of
  picklable objects, all-reduce of float sums, and a barrier; in one process they return their
  input (no collective runs);
- :func:`slice_for`: rank r's contiguous slice of n items (prompts of a step, held-out tasks);
- :func:`balanced_split`: the token-balanced assignment of a step's selected responses to
  the ranks (whole responses, the cut one included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def world_rank() -> tuple[int, int]:
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_world_size(), d.get_rank()
    return 1, 0


def gather(obj: Any, world: int) -> list[Any]:
    """Every rank's ``obj`` in rank order (on every rank)."""
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def all_sum(values: Sequence[float], world: int) -> list[float]:
    """Element-wise sums over ranks, in float64."""
    if world == 1:
        return [float(v) for v in values]
    from pipeline.train.deepspeed_engine import collective_device

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=collective_device())
    torch.distributed.all_reduce(t)
    return t.tolist()


def barrier(world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def slice_for(n: int, world: int, rank: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items: sizes differ by at most one, lower
    ranks take the larger ones, and the slices in rank order cover 0..n-1."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def balanced_split(pairs: Sequence[tuple[int, int]], world: int
                   ) -> list[list[tuple[int, int]]]:
    """Split a mini-batch's ``(response index, tokens kept)`` pairs into ``world`` parts of
    near-equal token counts.

    The pairs are taken in response order (prompt-major, so a prompt's responses are
    neighbours and mostly land on one rank, where its prompt is run once), and the sequence is
    cut at the response boundaries nearest to r·T/W (T the tokens in all): every response,
    the cut one included, goes whole to one rank, every token is trained exactly once, and
    each rank's token count is within the longest response's length of T/W (on two ranks the
    two counts differ by at most that length).
    """
    ordered = sorted(pairs)
    if world == 1:
        return [ordered]
    sizes = np.array([n for _, n in ordered], dtype=np.int64)
    ends = np.cumsum(sizes)
    total = int(ends[-1]) if len(ends) else 0
    bounds = [0]
    for r in range(1, world):
        target = r * total / world
        # number of leading responses whose cumulative count is nearest the target
        j = int(np.searchsorted(ends, target))
        candidates = [c for c in (j, j + 1) if c <= len(ordered)]
        before = lambda c: int(ends[c - 1]) if c > 0 else 0  # noqa: E731
        best = min(candidates, key=lambda c: (abs(before(c) - target), -c))  # ties: lower rank
        bounds.append(max(best, bounds[-1]))
    bounds.append(len(ordered))
    return [list(ordered[bounds[r]:bounds[r + 1]]) for r in range(world)]

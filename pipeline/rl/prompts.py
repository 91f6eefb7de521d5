"""Which prompts each RL step trains on: epochs over the pool, a held-back slice, draw counts.

Orders (``prompt_order``):

- ``epochs`` (default): the pool is drawn without replacement; a prompt comes back only after
  every other prompt of the pool (or of its domain, with a ``domain_mix``) has been drawn. Each
  epoch is a fresh seeded permutation.
- ``with_replacement``: every draw is independent (uniform over the pool, or a domain by
  ``domain_mix`` weight and then a prompt of it uniformly), so a run of S steps x L prompts on a
  pool of N draws a prompt S*L/N times on average, and some far more often.

With a ``domain_mix`` each domain has its own queue; draw i picks its domain by weight with
``numpy.random.default_rng([seed, 12, i])`` and takes the next prompt of that domain's queue.

The stream is a pure function of the number of prompts drawn so far (the ``cursor``): a
resumed run, which knows from its metrics how many prompts its finished steps drew, rebuilds
the same stream (and the same draw counts) with :meth:`PromptStream.advance`.

:func:`hold_out` takes a seeded, domain-stratified slice of the pool that RL never trains on;
the trainer scores it every ``eval_every`` steps, so a run shows whether what it learns carries
to prompts of the same kind it was not shown.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

PromptOrder = Literal["epochs", "with_replacement"]
log = logging.getLogger("rl")
PROMPT_ORDERS: tuple[str, ...] = ("epochs", "with_replacement")


def hold_out(tasks: Sequence[Mapping[str, Any]], n: int, seed: int
             ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(training tasks, ``n`` held-back tasks): the held-back slice takes the domains in turn
    (each domain's tasks in a seeded order), so every domain of the pool is represented.

    At most half of the pool is held back; ``n`` 0 holds back nothing.
    """
    n = min(int(n), len(tasks) // 2)
    if n <= 0:
        return list(tasks), []
    queues: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        queues.setdefault(str(t["domain"]), []).append(i)
    for d, q in queues.items():
        random.Random(f"{seed}:holdout:{d}").shuffle(q)
    held: list[int] = []
    order = sorted(queues)
    while len(held) < n:
        for d in order:
            if queues[d] and len(held) < n:
                held.append(queues[d].pop(0))
    chosen = set(held)
    return ([t for i, t in enumerate(tasks) if i not in chosen], [tasks[i] for i in held])


class PromptStream:
    """Deterministic stream of training prompts over ``tasks`` (see module docstring).

    ``take(n)`` returns the next ``n`` tasks and, for each, how many times it had been drawn
    before (0 = seen for the first time in this run).
    """

    def __init__(self, tasks: Sequence[Mapping[str, Any]], order: PromptOrder,
                 mix: Mapping[str, float], seed: int) -> None:
        if not tasks:
            raise ValueError("no tasks to draw RL prompts from")
        if order not in PROMPT_ORDERS:
            raise ValueError(f"unknown prompt_order {order!r} (choose from {PROMPT_ORDERS})")
        self.tasks, self.order, self.seed = list(tasks), order, seed
        self.cursor = 0
        self.counts: dict[str, int] = {}
        by_domain: dict[str, list[int]] = {}
        for i, t in enumerate(self.tasks):
            by_domain.setdefault(str(t["domain"]), []).append(i)
        if mix:
            domains = sorted(d for d in mix if d in by_domain and mix[d] > 0)
            if not domains:
                raise ValueError(f"domain_mix {dict(mix)} names no domain present in the tasks "
                                 f"({sorted(by_domain)})")
            if left := sorted(set(by_domain) - set(domains)):
                log.warning("domain_mix %s leaves out the pool's domains %s: their prompts are "
                            "never drawn (name them in domain_mix to train on them)",
                            dict(mix), left)
            w = np.array([mix[d] for d in domains], dtype=np.float64)
            self._weights: np.ndarray | None = w / w.sum()
            self._queues = [by_domain[d] for d in domains]
        else:
            self._weights = None
            self._queues = [list(range(len(self.tasks)))]
        self._drawn = [0] * len(self._queues)  # draws taken from each queue so far

    def _queue_for(self, i: int) -> int:
        if self._weights is None:
            return 0
        rng = np.random.default_rng([self.seed, 12, i])
        return int(rng.choice(len(self._weights), p=self._weights))

    def _next_index(self) -> int:
        i = self.cursor
        q = self._queue_for(i)
        members = self._queues[q]
        j = self._drawn[q]
        self._drawn[q] += 1
        if self.order == "with_replacement":
            rng = np.random.default_rng([self.seed, 13, i])
            return members[int(rng.integers(0, len(members)))]
        epoch, pos = divmod(j, len(members))
        perm = np.random.default_rng([self.seed, 11, q, epoch]).permutation(len(members))
        return members[int(perm[pos])]

    def take(self, n: int) -> tuple[list[Mapping[str, Any]], list[int]]:
        out, before = [], []
        for _ in range(n):
            t = self.tasks[self._next_index()]
            self.cursor += 1
            key = str(t["id"])
            before.append(self.counts.get(key, 0))
            self.counts[key] = before[-1] + 1
            out.append(t)
        return out, before

    def advance(self, cursor: int) -> None:
        """Replay the stream up to ``cursor`` prompts drawn (resume)."""
        if cursor < self.cursor:
            raise ValueError(f"cannot rewind a prompt stream from {self.cursor} to {cursor}")
        self.take(cursor - self.cursor)

    @property
    def distinct_drawn(self) -> int:
        return len(self.counts)

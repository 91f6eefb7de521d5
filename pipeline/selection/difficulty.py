"""The pass-rate filter of the RL pool (pure; no I/O).

Each RL prompt arrives with ``pass_rate`` = correct / k over k samples of the selected SFT
model (temperature 1.0, shared verifier) and, for prompts the model never solved,
``teacher_solved`` (does the programmatic teacher's trace pass the same verifier?).

Decision per prompt, in order (bands are params):

1. ``pass_rate > max_pass_rate``            -> drop, reason ``too_easy`` (always solved).
2. ``pass_rate > min_pass_rate``            -> keep, reason ``learnable``.
3. otherwise (never solved by the model):
   - teacher fails                          -> drop, reason ``unsolvable`` (no one solves it:
     untrainable, or a broken reference);
   - teacher solves                         -> keep, reason ``unsolved_teacher_ok``, but at most
     ``max_unsolved_share`` of each group's (reasoning / general) kept set (one share for both
     groups, or one per group); the surplus, picked by a seeded shuffle, is dropped with reason
     ``unsolved_over_cap``.

Every input prompt lands in exactly one of kept / dropped, with its reason.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.schema import domain_group

KEEP_REASONS = ("learnable", "unsolved_teacher_ok")
DROP_REASONS = ("too_easy", "unsolvable", "unsolved_over_cap")
GROUPS = ("reasoning", "general")


@dataclass(frozen=True)
class Bands:
    max_pass_rate: float  # drop above: the model already solves it
    min_pass_rate: float  # at or below: "never solved"; then the teacher decides
    # cap on never-solved (teacher-solvable) prompts in a kept set: one share for both domain
    # groups, or {reasoning: s, general: s} (a group not named: 0)
    max_unsolved_share: float | Mapping[str, float]

    def __post_init__(self) -> None:
        shares = (self.max_unsolved_share if isinstance(self.max_unsolved_share, Mapping)
                  else {"": self.max_unsolved_share})
        for group, share in shares.items():
            where = f"max_unsolved_share{'.' + group if group else ''}"
            if group and group not in GROUPS:
                raise ValueError(f"{where}: not a domain group (reasoning | general)")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{where}: must be in [0, 1], got {share}")

    def unsolved_share(self, group: str) -> float:
        """The cap for one domain group."""
        if isinstance(self.max_unsolved_share, Mapping):
            return float(self.max_unsolved_share.get(group, 0.0))
        return float(self.max_unsolved_share)


def classify(pass_rate: float, teacher_solved: bool | None, bands: Bands) -> str:
    """Reason for one prompt before the cap (see the module docstring)."""
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"pass_rate {pass_rate} outside [0, 1]")
    if pass_rate > bands.max_pass_rate:
        return "too_easy"
    if pass_rate > bands.min_pass_rate:
        return "learnable"
    if teacher_solved is None:
        raise ValueError("classify: teacher_solved is needed for a never-solved prompt")
    return "unsolved_teacher_ok" if teacher_solved else "unsolvable"


def unsolved_allowance(learnable: int, unsolved: int, share: float) -> int:
    """Largest u <= unsolved with u / (learnable + u) <= share."""
    if share >= 1.0:
        return unsolved
    if share <= 0.0:
        return 0
    return min(unsolved, math.floor(share * learnable / (1.0 - share) + 1e-9))


def _order_key(task_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{task_id}".encode()).hexdigest()


def filter_pool(
    rows: Sequence[dict[str, Any]], bands: Bands, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split ``rows`` (each with id, domain, pass_rate, teacher_solved) into kept and dropped.

    Returns copies of the rows with a ``reason`` key added.
    """
    labelled = [
        {**r, "reason": classify(r["pass_rate"], r.get("teacher_solved"), bands)} for r in rows
    ]
    for group in GROUPS:
        mine = [r for r in labelled if domain_group(r["domain"]) == group]
        learnable = sum(r["reason"] == "learnable" for r in mine)
        unsolved = sorted(
            (r for r in mine if r["reason"] == "unsolved_teacher_ok"),
            key=lambda r: _order_key(r["id"], seed),
        )
        allowed = unsolved_allowance(learnable, len(unsolved), bands.unsolved_share(group))
        for r in unsolved[allowed:]:
            r["reason"] = "unsolved_over_cap"
    kept = [r for r in labelled if r["reason"] in KEEP_REASONS]
    dropped = [r for r in labelled if r["reason"] in DROP_REASONS]
    return kept, dropped


def count_by(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """{domain: {reason: count}} for stats.json."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        d = out.setdefault(r["domain"], {})
        d[r["reason"]] = d.get(r["reason"], 0) + 1
    return out

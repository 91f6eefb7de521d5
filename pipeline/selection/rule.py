"""The entropy-band rule: which SFT checkpoint starts RL (pure; no I/O).

Ring-lite (arXiv 2506.14731) picks the SFT checkpoint whose policy entropy on RL prompts lies in
a band [low, high] (0.3-0.5 nats for their model). Below the band the policy explores too
little; above it RL converges slowly. Our rule:

1. Checkpoints with low <= entropy <= high are "in band".
2. Several in band -> tie-break (param ``tie_break``):
   - ``latest``: the highest epoch in band (more SFT = higher starting score, while the entropy
     still leaves room to explore);
   - ``best_accuracy``: the highest validation accuracy in band, then the latest epoch.
3. None in band -> the checkpoint with the smallest distance to the band
   (low - entropy below it, entropy - high above it), then the latest epoch; ``warning`` is set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

TieBreak = Literal["latest", "best_accuracy"]


@dataclass(frozen=True)
class Candidate:
    """One SFT checkpoint as the rule sees it."""

    checkpoint: str  # e.g. "models/sft/epoch_3"
    epoch: int
    entropy: float  # mean token entropy in nats
    accuracy: float  # validation accuracy in [0, 1]


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    in_band: bool
    why: str
    warning: str = ""


def band_distance(entropy: float, low: float, high: float) -> float:
    """0 inside [low, high], else the distance to the nearer edge."""
    if math.isnan(entropy):
        return math.inf
    return max(low - entropy, 0.0, entropy - high)


def choose(
    candidates: Sequence[Candidate], low: float, high: float, tie_break: TieBreak = "latest"
) -> Choice:
    """Apply the band rule to ``candidates``; see the module docstring."""
    if not candidates:
        raise ValueError("choose: no SFT checkpoints to choose from")
    if not low <= high:
        raise ValueError(f"choose: band low={low} > high={high}")
    band = f"[{low:g}, {high:g}]"
    inside = [c for c in candidates if band_distance(c.entropy, low, high) == 0.0]
    if len(inside) == 1:
        c = inside[0]
        return Choice(c, True, f"only checkpoint with entropy {c.entropy:.4f} in band {band}")
    if inside:
        if tie_break == "latest":
            c = max(inside, key=lambda x: x.epoch)
            why = f"{len(inside)} checkpoints in band {band}; tie-break latest: epoch {c.epoch}"
        elif tie_break == "best_accuracy":
            c = max(inside, key=lambda x: (x.accuracy, x.epoch))
            why = (
                f"{len(inside)} checkpoints in band {band}; tie-break best_accuracy: "
                f"epoch {c.epoch} with accuracy {c.accuracy:.4f}"
            )
        else:
            raise ValueError(f"choose: unknown tie_break {tie_break!r}")
        return Choice(c, True, why)
    c = min(candidates, key=lambda x: (band_distance(x.entropy, low, high), -x.epoch))
    d = band_distance(c.entropy, low, high)
    why = (f"no checkpoint in band {band}; closest is epoch {c.epoch} "
           f"(entropy {c.entropy:.4f}, {d:.4f} away)")
    return Choice(c, False, why, warning=why)

"""Resume state of an RL stage: ``<out>/resume/`` (written atomically as a whole folder).

Holds the optimizer state (DeepSpeed checkpoint or torch state: policy weights, Adam moments,
lr schedule), the torch RNG state, the last finished step, the metrics rows so far (the last
one carries ``prompt_cursor``, the data position: the prompt stream is a function of it, and
step s's samples are seeded by (seed, s)), the per-task evaluation scores, and a fingerprint of
params + seed + start model: a state with another fingerprint is ignored (fresh start).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_dir

STATE = "state.json"


@dataclass(frozen=True)
class State:
    step: int
    steps: list[dict[str, float]]
    evals: list[dict[str, float]]
    items: list[dict[str, Any]]


def save(folder: Path, updater: Any, fingerprint: str, step: int,
         steps: list[dict[str, float]], evals: list[dict[str, float]],
         items: list[dict[str, Any]] | None = None) -> None:
    """Write the full resume state for finished step ``step`` to ``folder`` atomically."""
    with atomic_dir(folder) as tmp:
        updater.save(tmp / "optim")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / STATE).write_text(json.dumps(
            {"fingerprint": fingerprint, "step": step, "steps": steps, "evals": evals,
             "items": items or []}))


def load(folder: Path, updater: Any, fingerprint: str) -> State | None:
    """Restore ``updater`` (and the RNG) from ``folder``; None when there is no usable state."""
    path = Path(folder) / STATE
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    if meta.get("fingerprint") != fingerprint:
        print(f"{folder}: resume state is for other params/model; starting fresh")
        return None
    updater.load(Path(folder) / "optim")
    torch.set_rng_state(torch.load(Path(folder) / "rng.pt", weights_only=False)["torch"])
    return State(int(meta["step"]), meta["steps"], meta["evals"], meta.get("items", []))

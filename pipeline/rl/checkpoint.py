"""Resume state of an RL stage: ``<out>/resume/`` (written atomically as a whole folder).

Holds the optimizer state (DeepSpeed checkpoint or torch state: policy weights, Adam moments,
lr schedule), the torch RNG state, the last finished step, the metrics rows so far (the last
one carries ``prompt_cursor``, the data position: the prompt stream is a function of it, and
step s's samples are seeded by (seed, s)), the per-task evaluation scores, and a fingerprint of
params + seed + start model: a state with another fingerprint is ignored (fresh start).

On several ranks the folder is shared (one filesystem for all nodes): every rank writes its
part of the DeepSpeed checkpoint and its RNG state (``rng.pt`` for rank 0, ``rng_<r>.pt``) into
rank 0's temporary folder, and rank 0 adds ``state.json`` and moves the folder into place
once all ranks are done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_dir, recover_dir
from pipeline.rl.dist import barrier

STATE = "state.json"


@dataclass(frozen=True)
class State:
    step: int
    steps: list[dict[str, float]]
    evals: list[dict[str, float]]
    items: list[dict[str, Any]]


def _rng_file(rank: int) -> str:
    return "rng.pt" if rank == 0 else f"rng_{rank}.pt"


def save(folder: Path, updater: Any, fingerprint: str, step: int,
         steps: list[dict[str, float]], evals: list[dict[str, float]],
         items: list[dict[str, Any]] | None = None, world: int = 1, rank: int = 0) -> None:
    """Write the full resume state for finished step ``step`` to ``folder`` atomically
    (collective on several ranks: every rank calls it)."""
    if world > 1:
        return _save_ranks(Path(folder), updater, fingerprint, step, steps, evals, items,
                           world, rank)
    with atomic_dir(folder) as tmp:
        updater.save(tmp / "optim")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / STATE).write_text(json.dumps(
            {"fingerprint": fingerprint, "step": step, "steps": steps, "evals": evals,
             "items": items or []}))


def _save_ranks(folder: Path, updater: Any, fingerprint: str, step: int,
                steps: list[dict[str, float]], evals: list[dict[str, float]],
                items: list[dict[str, Any]] | None, world: int, rank: int) -> None:
    def write_parts(tmp: Path) -> None:
        updater.save(tmp / "optim")  # DeepSpeed: collective, each rank writes its part
        torch.save({"torch": torch.get_rng_state()}, tmp / _rng_file(rank))
        barrier(world)

    if rank != 0:
        shared = [None]
        torch.distributed.broadcast_object_list(shared, src=0)
        write_parts(Path(shared[0]))
        barrier(world)  # rank 0 has moved the folder into place
        return
    with atomic_dir(folder) as tmp:
        torch.distributed.broadcast_object_list([str(tmp)], src=0)
        write_parts(tmp)
        (tmp / STATE).write_text(json.dumps(
            {"fingerprint": fingerprint, "step": step, "steps": steps, "evals": evals,
             "items": items or [], "world": world}))
    barrier(world)


def load(folder: Path, updater: Any, fingerprint: str, world: int = 1, rank: int = 0
         ) -> State | None:
    """Restore ``updater`` (and the RNG) from ``folder``; None when there is no usable state.
    Collective on several ranks (all see the same folder, so all decide alike)."""
    if rank == 0:  # a save killed between its two renames left the previous state aside
        recover_dir(folder)
    barrier(world)
    path = Path(folder) / STATE
    if not path.exists():
        return None
    meta = json.loads(path.read_text())
    if meta.get("fingerprint") != fingerprint:
        if rank == 0:
            print(f"{folder}: resume state is for other params/model; starting fresh")
        return None
    updater.load(Path(folder) / "optim")
    torch.set_rng_state(torch.load(Path(folder) / _rng_file(rank), weights_only=False)["torch"])
    return State(int(meta["step"]), meta["steps"], meta["evals"], meta.get("items", []))

"""Resumable training state on disk: DeepSpeed checkpoints plus a run fingerprint.

Layout under the output folder (``models/sft``, a ``persist: true`` DVC output)::

    fingerprint.json          what this state was trained from (params, data, base, world size)
    ds_state/latest           DeepSpeed's pointer to the newest complete tag
    ds_state/step000050/      DeepSpeed model/optimizer/scheduler state + client state
                              (LoopState and RNG states)

``latest`` is replaced atomically (:func:`commit_tag`) only after every rank has written its
part of a tag, and older tags are removed only after that, so a ``kill -9`` at any moment
leaves a loadable state. A fingerprint mismatch (params,
data or base changed) means the old state belongs to another run: the folder is wiped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json, write_text

STATE_DIR = "ds_state"
FINGERPRINT = "fingerprint.json"
LATEST = "latest"  # the file DeepSpeed's load_checkpoint reads when no tag is given


def file_digest(path: str | Path) -> str:
    """sha256 of a file, or of every file under a folder (names and bytes, sorted)."""
    h = hashlib.sha256()
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def fingerprint(params: dict[str, Any], inputs: dict[str, str | Path], world: int) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for name, path in sorted(inputs.items()):
        h.update(f"{name}:{file_digest(path)}".encode())
    h.update(f"world={world}".encode())
    return h.hexdigest()


def prepare_out_dir(out: Path, fp: str) -> bool:
    """Make ``out`` ready (rank 0 only); True if it holds a resumable state for ``fp``.

    A folder from another run (fingerprint missing or different) is wiped and the new
    fingerprint written.
    """
    fp_file = out / FINGERPRINT
    same = fp_file.exists() and json.loads(fp_file.read_text()).get("fingerprint") == fp
    if not same:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        write_json(fp_file, {"fingerprint": fp})
    return same and (out / STATE_DIR / LATEST).exists()


def tag_for(step: int) -> str:
    return f"step{step:06d}"


def commit_tag(state_dir: Path, tag: str) -> None:
    """Point ``latest`` at the complete tag ``tag`` (one atomic rename), then drop older tags.

    Rank 0 only, after ``save_checkpoint(..., save_latest=False)`` has returned on every rank.
    """
    write_text(state_dir / LATEST, tag)
    prune_tags(state_dir, keep=tag)


def prune_tags(state_dir: Path, keep: str) -> None:
    """Remove every tag folder but ``keep`` (call after ``latest`` points at ``keep``)."""
    for d in state_dir.iterdir():
        if d.is_dir() and d.name != keep:
            shutil.rmtree(d, ignore_errors=True)

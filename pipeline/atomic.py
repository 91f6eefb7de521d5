"""Atomic output writing: write to a temp path beside the target, then rename into place.

A crashed stage never leaves a half-written file where DVC or the next stage would read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp file path; on success it replaces ``target`` (parents are created)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _old(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_dir(target: str | Path) -> None:
    """Undo what a kill between :func:`atomic_dir`'s two renames left: ``target`` moved aside
    to ``.<name>.old`` and the new version not yet in place. The previous version goes back."""
    target = Path(target)
    if not target.exists() and _old(target).is_dir():
        os.replace(_old(target), target)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp directory; on success it replaces directory ``target`` as a whole.

    The replacement is two renames (old version aside, new one in); a process killed between
    them leaves the old version at ``.<name>.old``, which :func:`recover_dir` (called here
    first, and by readers that resume from such a folder) puts back."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = _old(target)
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(target: str | Path, obj: Any) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_parquet(target: str | Path, df: pl.DataFrame) -> None:
    with atomic_path(target) as tmp:
        df.write_parquet(tmp)


def write_jsonl(target: str | Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(target) as tmp, tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")

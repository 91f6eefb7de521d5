"""The stage DAG as ``dvc.yaml`` declares it (the one list of stages; nothing is kept by hand).

``stage_order()`` returns the stage names in a topological order of the data flow: a stage comes
after every stage that produces one of its deps (an out path equal to a dep, or above/below it).
Ties keep ``dvc.yaml``'s order. No DVC import: the flow must stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_stages(dvc_yaml: str | Path = "dvc.yaml") -> dict[str, dict[str, Any]]:
    with Path(dvc_yaml).open() as f:
        data = yaml.safe_load(f) or {}
    stages = data.get("stages") or {}
    if not isinstance(stages, dict) or not stages:
        raise ValueError(f"{dvc_yaml}: no stages")
    return stages


def _paths(entries: list[Any] | None) -> list[str]:
    """Paths of a deps/outs list whose items are strings or one-key mappings (with options)."""
    out = []
    for e in entries or []:
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, dict):
            out.extend(e.keys())
    return [p.rstrip("/") for p in out]


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def dependencies(stages: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """stage -> the stages whose outputs it reads."""
    outs = {
        name: _paths(s.get("outs")) + _paths(s.get("metrics")) + _paths(s.get("plots"))
        for name, s in stages.items()
    }
    deps: dict[str, set[str]] = {}
    for name, s in stages.items():
        mine = _paths(s.get("deps"))
        deps[name] = {
            other
            for other, paths in outs.items()
            if other != name and any(_related(d, o) for d in mine for o in paths)
        }
    return deps


def stage_order(dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """Topological order (Kahn), ties broken by the order in dvc.yaml."""
    stages = load_stages(dvc_yaml)
    deps = dependencies(stages)
    order: list[str] = []
    remaining = list(stages)
    while remaining:
        ready = [s for s in remaining if deps[s] <= set(order)]
        if not ready:
            raise ValueError(f"{dvc_yaml}: dependency cycle among {remaining}")
        order.append(ready[0])
        remaining.remove(ready[0])
    return order

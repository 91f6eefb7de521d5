"""Seeded generators of verifiable tasks, and their programmatic teachers.

API (see docs/architecture.md):

- ``generate(domain, n, seed, **knobs) -> list[dict]``: ``n`` task records (``schema.make_task``,
  source ``gen:<domain>``), deterministic for (domain, n, seed, knobs); ``generate(d, n, s)`` is
  a prefix of ``generate(d, n + k, s)``. An unknown domain or knob raises ``ValueError``.
- ``teacher_trace(task) -> str``: ``<think>`` short templated steps ``</think>`` then the final
  answer, which the domain's verifier accepts.
- ``DOMAINS``: the domain names; ``KNOBS[domain]``: each generator's knobs and defaults (the
  defaults are the *easy* setting the embedded pipeline trains on).

Each domain module provides ``DEFAULTS`` (knob -> default), ``make(rng, knobs) -> (prompt,
reference, meta)`` and ``teacher(reference, meta) -> str``.

Example::

    from pipeline.tasks import generate, teacher_trace
    task = generate("countdown", 1, seed=0, count=3)[0]
    print(task["prompt"]); print(teacher_trace(task))
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import Any

from pipeline.schema import make_task
from pipeline.tasks import arith, code, countdown, ifeval, knights, open_qa, sudoku

_MODULES: dict[str, ModuleType] = {
    "math": arith,
    "countdown": countdown,
    "sudoku": sudoku,
    "knights_knaves": knights,
    "code": code,
    "ifeval": ifeval,
    "open_qa": open_qa,
}

DOMAINS: tuple[str, ...] = tuple(_MODULES)
KNOBS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {d: MappingProxyType(dict(m.DEFAULTS)) for d, m in _MODULES.items()}
)


def _module(domain: str) -> ModuleType:
    if domain not in _MODULES:
        raise ValueError(f"unknown task domain {domain!r}; known: {', '.join(DOMAINS)}")
    return _MODULES[domain]


def resolve_knobs(domain: str, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``knobs``; an unknown knob raises ``ValueError`` naming it."""
    mod = _module(domain)
    unknown = sorted(set(knobs) - set(mod.DEFAULTS))
    if unknown:
        raise ValueError(
            f"unknown knob(s) for domain {domain!r}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(mod.DEFAULTS))}"
        )
    merged = {**mod.DEFAULTS, **knobs}
    for key, value in merged.items():  # tuples from params.yaml and lists from JSON both work
        if isinstance(value, list):
            merged[key] = value = tuple(value)
        want = type(mod.DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, want):
            raise ValueError(f"{domain} knob {key}={value!r}: expected {want.__name__}")
    mod.check_knobs(merged)
    return merged


def generate(domain: str, n: int, seed: int, **knobs: Any) -> list[dict[str, str]]:
    """``n`` seeded task records of ``domain`` (see module docstring)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    mod = _module(domain)
    merged = resolve_knobs(domain, knobs)
    rng = random.Random(f"{domain}/{seed}")
    tasks = []
    for _ in range(n):
        prompt, reference, meta = mod.make(rng, merged)
        meta = {"generator": domain, "knobs": merged, **meta}
        tasks.append(make_task(domain, prompt, reference, f"gen:{domain}", meta))
    return tasks


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value) if value else {}
    return dict(value or {})


def teacher_trace(task: Mapping[str, Any]) -> str:
    """The programmatic teacher's full response for ``task`` (a task record)."""
    mod = _module(task["domain"])
    return mod.teacher(_as_dict(task["reference"]), _as_dict(task.get("meta")))

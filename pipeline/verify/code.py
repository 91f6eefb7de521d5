"""Code checker: the answer's LAST ```python block must pass every test in the sandbox.

``check(reference, answer) -> Score``. Reward is binary, as in the paper: 1.0 only if all tests
pass. Two reference shapes:

- function tests: ``{"entry_point": "f", "tests": ["assert f(1) == 2", ...]}``, optionally
  ``"imports"`` (code run before the program and before the tests, e.g. MBPP's ``test_imports``)
  and ``"setup"`` (code run after the program on the program's side, e.g. MBPP's
  ``test_setup_code``). The program must define ``entry_point``. Tests run in the sandbox's checker
  process; the program's functions are reached through proxies that pass plain data only (see
  :mod:`pipeline.verify.sandbox`), so the program cannot see the tests or forge their outcome;
- stdin/stdout: ``{"io": [{"input": "...", "output": "..."}, ...]}``: the program runs once per
  case with ``input`` on stdin and passes when its stdout matches ``output``
  (:func:`pipeline.verify.sandbox.same_output`) and it exits 0.

Either shape may carry ``"limits"``: ``{"cpu_s": ..., "wall_s": ..., "memory_mb": ...}`` (any
subset, at most :data:`MAX_LIMITS`) replacing those fields of :data:`DEFAULT_LIMITS` for this task;
the benchmark loaders give benchmark code tasks a larger time budget this way
(``pipeline.bench.loaders.BENCH_CODE_LIMITS``). Limits passed to :func:`check` win over both.

Reasons: ``passed``, ``no_code_block``, ``no_entry_point`` (the program never defines it),
``tests_failed k/n: <last error line>``, ``timeout``, ``output_limit``, ``crashed: ...``,
``sandbox_error: ...``. A malformed reference raises ``ValueError`` naming the field.

The program runs in :mod:`pipeline.verify.sandbox` with :data:`DEFAULT_LIMITS` (2 s CPU, 5 s
wall, 256 MiB address space, 16 processes, 64 open files, 1 MiB files, 64 KiB output).
"""

from __future__ import annotations

import re
from dataclasses import replace

from pipeline.verify.result import Score
from pipeline.verify.sandbox import SandboxLimits, run_io, run_tests

DEFAULT_LIMITS = SandboxLimits()
MAX_LIMITS = {"cpu_s": 60, "wall_s": 120.0, "memory_mb": 2048}  # ceilings for a reference's limits
_FENCE = re.compile(r"```(?:python3?|py)[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_program(answer: str) -> str | None:
    """The body of the last ```python fenced block, or None."""
    blocks = _FENCE.findall(answer)
    return blocks[-1] if blocks else None


def _optional_code(reference: dict, name: str) -> str:
    value = reference.get(name, "")
    if not isinstance(value, str):
        raise ValueError(f"code reference: field '{name}' must be a string, got {value!r}")
    return value


def _validate_io(cases) -> list[tuple[str, str]]:
    if not isinstance(cases, list | tuple) or not cases:
        raise ValueError("code reference: field 'io' must be a non-empty list of cases")
    out = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str)
                                                  for k in ("input", "output")):  # fmt: skip
            raise ValueError(f"code reference: field 'io[{i}]' must be an object with string "
                             "'input' and 'output'")  # fmt: skip
        out.append((case["input"], case["output"]))
    return out


def task_limits(reference: dict) -> SandboxLimits:
    """:data:`DEFAULT_LIMITS` with the reference's ``limits`` applied (validated)."""
    extra = reference.get("limits")
    if extra is None:
        return DEFAULT_LIMITS
    if not isinstance(extra, dict) or set(extra) - set(MAX_LIMITS):
        raise ValueError(f"code reference: field 'limits' must be an object with keys from "
                         f"{sorted(MAX_LIMITS)}, got {extra!r}")  # fmt: skip
    for key, value in extra.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not 0 < value <= MAX_LIMITS[key]:  # fmt: skip
            raise ValueError(f"code reference: field 'limits.{key}' must be in "
                             f"(0, {MAX_LIMITS[key]}], got {value!r}")  # fmt: skip
    fields = {k: (int(v) if k != "wall_s" else float(v)) for k, v in extra.items()}
    return replace(DEFAULT_LIMITS, **fields)


def _validate(reference: dict) -> tuple[str, list[str]]:
    entry = reference.get("entry_point")
    tests = reference.get("tests")
    if not isinstance(entry, str) or not entry.isidentifier():
        raise ValueError(
            f"code reference: field 'entry_point' must be an identifier, got {entry!r}"
        )
    if (
        not isinstance(tests, list | tuple)
        or not tests
        or not all(isinstance(t, str) for t in tests)
    ):
        raise ValueError("code reference: field 'tests' must be a non-empty list of strings")
    return entry, list(tests)


def _defines(program: str, entry: str) -> bool:
    name = re.escape(entry)
    return re.search(rf"^\s*(?:async\s+)?def\s+{name}\s*\(|^\s*class\s+{name}\b|^\s*{name}\s*=",
                     program, re.MULTILINE) is not None  # fmt: skip


def check(reference: dict, answer: str, limits: SandboxLimits | None = None) -> Score:
    """Score a code answer against its tests (see the module docstring)."""
    if "io" in reference:
        cases = _validate_io(reference["io"])
        task_limits(reference)
        program = extract_program(answer)
        if program is None:
            return Score(0.0, False, "no_code_block")
        r = run_io(program, cases, limits or task_limits(reference))
    else:
        entry, tests = _validate(reference)
        task_limits(reference)
        setup, imports = _optional_code(reference, "setup"), _optional_code(reference, "imports")
        program = extract_program(answer)
        if program is None:
            return Score(0.0, False, "no_code_block")
        if not _defines(program, entry):
            return Score(0.0, False, "no_entry_point")
        r = run_tests(program, tests, limits or task_limits(reference), setup=setup,
                      imports=imports)
    if r.status == "passed":
        return Score(1.0, True, "passed")
    if r.status == "failed":
        return Score(
            0.0, False, f"tests_failed {r.tests_total - r.tests_passed}/{r.tests_total}: {r.detail}"
        )
    if r.status == "error":
        return Score(0.0, False, f"sandbox_error: {r.detail}")
    if r.status == "crashed":
        return Score(0.0, False, f"crashed: {r.detail}")
    return Score(0.0, False, r.status)

"""Code checker: the answer's LAST ```python block must pass every test in the sandbox.

``check(reference, answer) -> Score`` with ``reference = {"entry_point": "f", "tests": ["assert
f(1) == 2", ...]}``. Reward is binary, as in the paper: 1.0 only if all tests pass. Reasons:
``passed``, ``no_code_block``, ``no_entry_point`` (the program never defines it),
``tests_failed k/n: <last error line>``, ``timeout``, ``output_limit``, ``crashed: ...``,
``sandbox_error: ...``. A malformed reference raises ``ValueError`` naming the field.

The program runs in :mod:`pipeline.verify.sandbox` with :data:`DEFAULT_LIMITS` (2 s CPU, 5 s
wall, 256 MiB address space, 16 processes, 64 open files, 1 MiB files, 64 KiB output).
"""

from __future__ import annotations

import re

from pipeline.verify.result import Score
from pipeline.verify.sandbox import SandboxLimits, run_tests

DEFAULT_LIMITS = SandboxLimits()
_FENCE = re.compile(r"```(?:python3?|py)[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_program(answer: str) -> str | None:
    """The body of the last ```python fenced block, or None."""
    blocks = _FENCE.findall(answer)
    return blocks[-1] if blocks else None


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
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry)}\s*\(|^\s*{re.escape(entry)}\s*=",
                     program, re.MULTILINE) is not None  # fmt: skip


def check(reference: dict, answer: str, limits: SandboxLimits | None = None) -> Score:
    """Score a code answer against its tests (see the module docstring)."""
    entry, tests = _validate(reference)
    program = extract_program(answer)
    if program is None:
        return Score(0.0, False, "no_code_block")
    if not _defines(program, entry):
        return Score(0.0, False, "no_entry_point")
    r = run_tests(program, tests, limits or DEFAULT_LIMITS)
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

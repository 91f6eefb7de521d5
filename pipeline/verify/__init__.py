"""One scoring entry point for every stage: distill, difficulty, RL rewards and bench.

``score(task, response) -> Score(reward, correct, reason)``: the task record's ``domain`` picks
the checker, its ``reference`` (JSON text or a mapping) is what the answer is graded against,
and the checker sees only the final answer (text after the last ``</think>``; a ``<think>``
with no ``</think>`` scores 0 with reason ``unterminated_think``).

=================  ==================================================
domain             checker
=================  ==================================================
math               ``pipeline.verify.math.check`` (Math-Verify)
countdown          ``pipeline.verify.games.check_countdown``
sudoku             ``pipeline.verify.games.check_sudoku``
knights_knaves     ``pipeline.verify.games.check_knights_knaves``
code               ``pipeline.verify.code.check`` (sandbox)
ifeval             ``pipeline.verify.ifeval.check``
open_qa            ``pipeline.verify.reward_model.check``
=================  ==================================================

Checker modules are imported on first use, so a broken or missing one does not break the
others (and no torch is imported unless an ``open_qa`` item is scored). A bad task (unknown
domain, unreadable reference) raises ``ValueError`` naming the task id and field; checker
exceptions propagate from ``score`` (``score_batch`` turns them into ``reason="error: ..."``).

``score_batch(tasks, responses, workers=2, timeout_s=30.0)`` scores many in a process pool.

Example::

    from pipeline.verify import score
    task = {"id": "t1", "domain": "code", "prompt": "...",
            "reference": '{"entry_point": "f", "tests": ["assert f(1) == 2"]}'}
    score(task, "<think>add one</think>```python\\ndef f(x):\\n    return x + 1\\n```")
    # Score(reward=1.0, correct=True, reason='passed')
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.verify.answer import final_answer
from pipeline.verify.result import Score

CHECKERS: Mapping[str, tuple[str, str]] = {
    "math": ("pipeline.verify.math", "check"),
    "countdown": ("pipeline.verify.games", "check_countdown"),
    "sudoku": ("pipeline.verify.games", "check_sudoku"),
    "knights_knaves": ("pipeline.verify.games", "check_knights_knaves"),
    "code": ("pipeline.verify.code", "check"),
    "ifeval": ("pipeline.verify.ifeval", "check"),
    "open_qa": ("pipeline.verify.reward_model", "check"),
}


def checker(domain: str) -> Callable[..., Score]:
    """The ``check(reference, answer)`` function of a domain (imported on first use)."""
    if domain not in CHECKERS:
        raise ValueError(f"unknown domain {domain!r} (known: {', '.join(CHECKERS)})")
    module, name = CHECKERS[domain]
    return getattr(importlib.import_module(module), name)


def parse_task(task: Mapping[str, Any]) -> tuple[str, dict]:
    """``(domain, reference dict)`` of a task record; ``ValueError`` naming the field if bad."""
    tid = task.get("id", "?")
    domain = task.get("domain")
    if domain not in CHECKERS:
        raise ValueError(f"task {tid}: field 'domain': unknown domain {domain!r} "
                         f"(known: {', '.join(CHECKERS)})")  # fmt: skip
    ref = task.get("reference")
    if isinstance(ref, str):
        try:
            ref = json.loads(ref)
        except json.JSONDecodeError as e:
            raise ValueError(f"task {tid}: field 'reference': not valid JSON ({e})") from e
    if not isinstance(ref, Mapping):
        raise ValueError(f"task {tid}: field 'reference': expected a JSON object, got "
                         f"{type(ref).__name__}")  # fmt: skip
    return domain, dict(ref)


def score(task: Mapping[str, Any], response: str) -> Score:
    """Score one response to one task (see the module docstring)."""
    domain, reference = parse_task(task)
    answer, problem = final_answer(response)
    if problem:
        return Score(0.0, False, problem)
    if domain == "open_qa":  # the classifier reward model also reads the question
        return checker(domain)(reference, answer, prompt=task.get("prompt", ""))
    return checker(domain)(reference, answer)


def score_batch(tasks, responses, workers: int = 2, timeout_s: float = 30.0) -> list[Score]:
    """Score many responses in parallel; see :func:`pipeline.verify.batch.score_batch`."""
    from pipeline.verify.batch import score_batch as _score_batch

    return _score_batch(tasks, responses, workers=workers, timeout_s=timeout_s)


__all__ = ["CHECKERS", "Score", "checker", "final_answer", "parse_task", "score", "score_batch"]

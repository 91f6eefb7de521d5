"""Math answers: Math-Verify on the last ``\\boxed{}`` of the final answer.

``check(reference, answer, timeout_s=5.0)``: ``reference = {"answer": "X"}`` (any form
Math-Verify parses: ``7``, ``0.5``, ``\\frac{1}{2}``, ``x = 3``); ``answer`` is the text after
the think block. Equivalent forms are accepted (1/2 = 0.5 = \\frac{1}{2}).

Rules (reasons in brackets):
- no ``\\boxed{...}`` with balanced braces -> 0 [``no_boxed``]; empty box -> 0 [``empty_boxed``];
  a box longer than ``MAX_BOX_CHARS`` -> 0 [``boxed_too_long``];
- only the LAST box is graded, and the answer may not hedge: if any other box in the final
  answer holds a value not equivalent to the last one, the answer scores 0
  [``multiple_answers``] (so listing candidates cannot game it; repeating the same value is
  fine);
- equivalent to the reference -> 1 [``ok``], else 0 [``wrong``; ``unparsable`` if Math-Verify
  extracts nothing from the box].

Percent and currency marks follow the benchmarks' convention (MATH's answer normalisation drops
them; GSM8K answers are bare numbers): a percent sign (``\\%``, ``%``, ``\\text{\\%}``,
``\\text{ percent}``) is removed from the reference and from every box before parsing, so
``10\\%`` = ``10`` (and ``10\\%`` is not ``0.1``); dollar signs (``\\$18`` = ``18``) are
already ignored by Math-Verify.

Timeout: Math-Verify's own timeouts use ``signal.alarm`` and break outside the main thread, so
they are switched off (``parsing_timeout=None``, ``timeout_seconds=None``) and ours is used:
in the main thread a ``setitimer`` alarm raises a ``BaseException`` (Math-Verify swallows
``Exception``) and any outer timer is re-armed afterwards; in another thread the work runs in a
daemon thread that we stop waiting for after ``timeout_s`` (the thread may run on; the process
pool of ``score_batch`` is the hard bound). A timeout scores 0 [``timeout``].
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.verify.result import Score

MAX_BOX_CHARS = 500
T = TypeVar("T")
logging.getLogger("math_verify").setLevel(logging.ERROR)  # no "timeout disabled" warnings


class MathTimeout(BaseException):
    """Raised when grading one answer takes longer than its budget."""


def boxed_contents(text: str) -> list[str]:
    """The contents of every ``\\boxed{...}`` (balanced braces) in order of appearance."""
    out, start = [], 0
    while (i := text.find("\\boxed", start)) != -1:
        j = i + len("\\boxed")
        while j < len(text) and text[j] == " ":
            j += 1
        start = j
        if j >= len(text) or text[j] != "{":
            continue
        depth = 0
        for k in range(j, len(text)):
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            if depth == 0:
                out.append(text[j + 1 : k])
                start = k + 1
                break
    return out


def _bounded(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn()`` with a wall-clock budget (see module docstring); raises ``MathTimeout``."""
    if threading.current_thread() is not threading.main_thread():
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = e

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(timeout_s)
        if worker.is_alive():
            raise MathTimeout(f"math grading exceeded {timeout_s}s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def on_alarm(signum: int, frame: Any) -> None:
        raise MathTimeout(f"math grading exceeded {timeout_s}s")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, timeout_s)
    t0 = time.monotonic()
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # re-arm an outer timer with what it had left
            left = max(old_delay - (time.monotonic() - t0), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


_PERCENT = re.compile(r"\\(?:text|textrm|mbox|mathrm)\{\s*(?:\\?%|percent)\s*\}|\\?%")


def strip_percent(expr: str) -> str:
    """``expr`` without percent marks (see the module docstring)."""
    return _PERCENT.sub("", expr).strip()


def _parse(expr: str) -> list:
    from math_verify import parse  # imported lazily: sympy is slow to import

    return parse("\\boxed{" + expr + "}", parsing_timeout=None)


def _equal(a: list, b: list) -> bool:
    from math_verify import verify

    return bool(a) and bool(b) and bool(verify(a, b, timeout_seconds=None))


def _grade(gold_text: str, boxes: list[str]) -> Score:
    gold = _parse(strip_percent(gold_text))
    if not gold:
        raise ValueError(f"math reference: field 'answer'={gold_text!r} cannot be parsed")
    boxes = [strip_percent(b) for b in boxes]
    pred = _parse(boxes[-1])
    if not pred:
        return Score(0.0, False, "unparsable")
    others = {b.strip() for b in boxes[:-1]} - {boxes[-1].strip()}
    if any(not _equal(pred, _parse(b)) for b in others):
        return Score(0.0, False, "multiple_answers")
    return Score(1.0, True, "ok") if _equal(gold, pred) else Score(0.0, False, "wrong")


def check(reference: dict, answer: str, timeout_s: float = 5.0) -> Score:
    """Grade ``answer`` (final-answer text) against ``reference["answer"]`` (rules above)."""
    if "answer" not in reference:
        raise ValueError("math reference: missing field 'answer'")
    boxes = boxed_contents(answer)
    if not boxes:
        return Score(0.0, False, "no_boxed")
    if not boxes[-1].strip():
        return Score(0.0, False, "empty_boxed")
    if any(len(b) > MAX_BOX_CHARS for b in boxes):
        return Score(0.0, False, "boxed_too_long")
    try:
        return _bounded(lambda: _grade(str(reference["answer"]), boxes), timeout_s)
    except MathTimeout:
        return Score(0.0, False, "timeout")

"""Math verifier: Math-Verify on the last box, anti-hedging rule, and our own timeout."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from pipeline.verify import math as vmath
from pipeline.verify.math import boxed_contents, check


@pytest.mark.parametrize("gold,answer", [
    ("7", "\\boxed{7}"), ("7", "The answer is \\boxed{7}."), ("7", "\\boxed{7.0}"),
    ("7", "\\boxed{ 7 }"), ("7", "\\boxed{x = 7}"), ("7", "\\boxed{14/2}"),
    ("0.5", "\\boxed{\\frac{1}{2}}"), ("1/2", "\\boxed{0.5}"), ("\\frac{1}{2}", "\\boxed{1/2}"),
    ("0.5", "\\boxed{\\dfrac12}"), ("-3", "\\boxed{-3}"), ("7", "\\boxed{7} so \\boxed{7}"),
    ("7", "first \\boxed{7.0} then \\boxed{7}"),  # the same value twice is not hedging
])
def test_accepts_equivalent_forms(gold, answer):
    assert check({"answer": gold}, answer) == vmath.Score(1.0, True, "ok")


@pytest.mark.parametrize("gold,answer,reason", [
    ("7", "\\boxed{8}", "wrong"), ("0.5", "\\boxed{0.6}", "wrong"), ("-3", "\\boxed{3}", "wrong"),
    ("7", "\\boxed{7 \\pm 1}", "wrong"), ("7", "\\boxed{\\{7, 8\\}}", "wrong"),
    ("7", "the answer is 7", "no_boxed"), ("7", "", "no_boxed"), ("7", "\\boxed{}", "empty_boxed"),
    ("7", "\\boxed{7", "no_boxed"),  # unbalanced brace: no complete box
    ("7", "\\boxed{7} or maybe \\boxed{8}", "multiple_answers"),
    ("7", "\\boxed{8} or maybe \\boxed{7}", "multiple_answers"),  # the right one last: still 0
    ("7", "\\boxed{1} \\boxed{2} \\boxed{3} \\boxed{7}", "multiple_answers"),
    ("7", "\\boxed{" + "1+" * 300 + "1}", "boxed_too_long"),
])
def test_rejects(gold, answer, reason):
    assert check({"answer": gold}, answer) == vmath.Score(0.0, False, reason)


def test_boxed_contents_balanced_braces():
    text = "a \\boxed{\\frac{1}{2}} b \\boxed {3} c \\boxed{open"
    assert boxed_contents(text) == ["\\frac{1}{2}", "3"]
    assert boxed_contents("\\boxed{{}}") == ["{}"]


def test_bad_reference_raises():
    with pytest.raises(ValueError, match="answer"):
        check({}, "\\boxed{1}")
    with pytest.raises(ValueError, match="answer"):
        check({"answer": ""}, "\\boxed{1}")


def _slow_parse(expr):
    time.sleep(5)
    return []


def test_timeout_in_main_thread(monkeypatch):
    monkeypatch.setattr(vmath, "_parse", _slow_parse)
    t0 = time.monotonic()
    assert check({"answer": "1"}, "\\boxed{1}", timeout_s=0.3).reason == "timeout"
    assert time.monotonic() - t0 < 2
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


def test_timeout_restores_outer_timer(monkeypatch):
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        assert check({"answer": "1"}, "\\boxed{1}").correct
        assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 1.0  # outer timer still armed
        time.sleep(1.2)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_works_and_times_out_outside_main_thread(monkeypatch):
    out = []
    worker = threading.Thread(target=lambda: out.append(check({"answer": "0.5"}, "\\boxed{1/2}")))
    worker.start()
    worker.join()
    assert out == [vmath.Score(1.0, True, "ok")]
    monkeypatch.setattr(vmath, "_parse", _slow_parse)
    worker = threading.Thread(target=lambda: out.append(check({"answer": "1"}, "\\boxed{1}",
                                                              timeout_s=0.3)))
    t0 = time.monotonic()
    worker.start()
    worker.join()
    assert out[-1].reason == "timeout" and time.monotonic() - t0 < 2


@pytest.mark.parametrize("gold,answer", [
    ("10", "\\boxed{10\\%}"), ("10\\%", "\\boxed{10}"), ("10", "\\boxed{10%}"),
    ("25", "\\boxed{25\\text{\\%}}"), ("10", "\\boxed{10 \\text{ percent}}"),
    ("12.5", "\\boxed{12.5\\,\\%}"), ("10\\%", "\\boxed{10\\%}"),
    ("18", "\\boxed{\\$18}"), ("\\$18", "\\boxed{18}"), ("18", "\\boxed{\\$18.00}"),
    ("1000", "\\boxed{\\$1,000}"), ("18.9", "\\boxed{\\$18.90}"),
    ("10", "\\boxed{10\\%} and again \\boxed{10}"),  # the same value with and without: no hedge
])
def test_percent_and_currency_marks_compare_as_the_bare_number(gold, answer):
    assert check({"answer": gold}, answer) == vmath.Score(1.0, True, "ok")


@pytest.mark.parametrize("gold,answer", [
    ("0.1", "\\boxed{10\\%}"),  # MATH's convention: the mark is dropped, 10% is not 0.1
    ("10", "\\boxed{0.1}"), ("10", "\\boxed{11\\%}"), ("18", "\\boxed{\\$19}"),
])
def test_percent_and_currency_still_compare_the_number(gold, answer):
    assert check({"answer": gold}, answer) == vmath.Score(0.0, False, "wrong")


def test_strip_percent():
    assert vmath.strip_percent("10\\%") == "10"
    assert vmath.strip_percent("10 \\text{ percent}") == "10"
    assert vmath.strip_percent("\\frac{1}{2}") == "\\frac{1}{2}"

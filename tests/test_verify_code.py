"""The code checker: program extraction, hand-made accept/reject cases, and the code teacher."""

from __future__ import annotations

import json

import pytest

from pipeline.verify import score
from pipeline.verify.code import check, extract_program

REF = {"entry_point": "add_one", "tests": ["assert add_one(1) == 2", "assert add_one(-1) == 0"]}
GOOD = "def add_one(x):\n    return x + 1\n"


def fenced(program: str, lang: str = "python") -> str:
    return f"```{lang}\n{program}```"


def test_extract_last_python_block():
    answer = "first try:\n" + fenced("x = 1\n") + "\nfixed:\n" + fenced("x = 2\n", "py") + "\nbye"
    assert extract_program(answer) == "x = 2\n"
    assert extract_program(fenced("y = 3\n", "Python3")) == "y = 3\n"
    assert extract_program("def f(): pass") is None
    assert extract_program(fenced("z = 1\n", "javascript")) is None


def test_correct_program_passes():
    assert check(REF, "Here you go:\n" + fenced(GOOD)) == check(REF, fenced(GOOD))
    s = check(REF, fenced(GOOD))
    assert (s.reward, s.correct, s.reason) == (1.0, True, "passed")


def test_wrong_program_fails_with_count():
    # x + 2: add_one(1) == 3 (fails), add_one(-1) == 1 (fails) -> 2 of 2 failed.
    s = check(REF, fenced("def add_one(x):\n    return x + 2\n"))
    assert (s.reward, s.correct) == (0.0, False)
    assert s.reason.startswith("tests_failed 2/2")
    # abs(x) + 1: add_one(1) == 2 ok, add_one(-1) == 2 fails -> 1 of 2 failed.
    s = check(REF, fenced("def add_one(x):\n    return abs(x) + 1\n"))
    assert s.reason.startswith("tests_failed 1/2") and s.reward == 0.0


def test_only_the_last_block_counts():
    answer = fenced(GOOD) + "\nActually:\n" + fenced("def add_one(x):\n    return x\n")
    assert not check(REF, answer).correct
    answer = fenced("def add_one(x):\n    return x\n") + "\nFixed:\n" + fenced(GOOD)
    assert check(REF, answer).correct


def test_missing_block_and_entry_point():
    assert check(REF, GOOD).reason == "no_code_block"
    assert check(REF, fenced("def other(x):\n    return x + 1\n")).reason == "no_entry_point"


def test_malformed_reference_names_field():
    with pytest.raises(ValueError, match="entry_point"):
        check({"tests": ["assert True"]}, fenced(GOOD))
    with pytest.raises(ValueError, match="tests"):
        check({"entry_point": "add_one", "tests": []}, fenced(GOOD))


def test_score_dispatches_code_and_strips_think():
    task = {"id": "c1", "domain": "code", "reference": json.dumps(REF)}
    # A code block inside the think block does not count: only the final answer is read.
    assert score(task, f"<think>{fenced(GOOD)}</think>no code here").reason == "no_code_block"
    assert score(task, f"<think>plan</think>{fenced(GOOD)}").correct


def test_code_teacher_traces_pass_and_corrupted_fail():
    from pipeline.tasks import generate, teacher_trace

    tasks = generate("code", 12, seed=7)
    for task in tasks:
        trace = teacher_trace(task)
        assert score(task, trace).correct, (task["prompt"], trace)
        # Corrupt the program (not the signature the think repeats): return None from the
        # first line of the body.
        body = trace.index("\n", trace.index("def ", trace.index("```python")))
        broken = trace[: body + 1] + "    return None\n" + trace[body + 1 :]
        assert not score(task, broken).correct


def test_reference_limits_replace_the_defaults():
    from pipeline.verify.code import DEFAULT_LIMITS, task_limits

    assert task_limits(REF) == DEFAULT_LIMITS
    got = task_limits({**REF, "limits": {"cpu_s": 10, "wall_s": 20}})
    assert (got.cpu_s, got.wall_s, got.memory_mb) == (10, 20.0, DEFAULT_LIMITS.memory_mb)
    # A program needing well over 1 s of CPU: out of a 1 s budget, within a 20 s one.
    slow = fenced("def add_one(x):\n    n = 0\n    while n < 40_000_000:\n        n += 1\n"
                  "    return x + 1\n")
    assert check({**REF, "limits": {"cpu_s": 1}}, slow).reason == "timeout"
    assert check({**REF, "limits": {"cpu_s": 20, "wall_s": 40}}, slow).correct
    for bad in ({"cpu_s": 0}, {"cpu_s": 1000}, {"gpus": 1}, {"wall_s": "5"}, [1]):
        with pytest.raises(ValueError, match="limits"):
            check({**REF, "limits": bad}, fenced(GOOD))

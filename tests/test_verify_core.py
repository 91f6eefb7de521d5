"""The scoring entry point: final-answer extraction, domain dispatch, and batch scoring."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.schema import make_task
from pipeline.verify import CHECKERS, Score, final_answer, score, score_batch
from pipeline.verify import answer as answer_mod
from pipeline.verify.batch import WorkerPool

ROOT = Path(__file__).resolve().parents[1]


# --- final_answer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("<think>a</think> 42", ("42", None)),
        ("<think>a</think>x</think> 7 ", ("7", None)),  # the LAST </think> counts
        ("<think>a</think><think>b</think>\nB", ("B", None)),
        ("just an answer\n", ("just an answer", None)),
        ("<think>cut off mid thought", ("", "unterminated_think")),
        ("<think>a</think>done<|end|><|pad|><|pad|>", ("done", None)),
        ("", ("", None)),
    ],
)
def test_final_answer(response, expected):
    assert final_answer(response) == expected


def test_final_answer_rejects_non_text():
    with pytest.raises(TypeError):
        final_answer(None)  # type: ignore[arg-type]


def test_tokens_match_chat_format():
    # Read pipeline/model/chat.py's constants without importing it (that would import torch).
    tree = ast.parse((ROOT / "pipeline/model/chat.py").read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}  # fmt: skip
    assert (answer_mod.THINK_OPEN, answer_mod.THINK_CLOSE, answer_mod.END, answer_mod.PAD) == (
        consts["THINK_OPEN"], consts["THINK_CLOSE"], consts["END"], consts["PAD"])  # fmt: skip


# --- score: dispatch ---------------------------------------------------------------------------

SUDOKU = "1234\n3412\n2143\n4321"  # rows, columns and 2x2 boxes each hold 1-4 (checked by hand)
CODE_REF = {"entry_point": "f", "tests": ["assert f(2) == 4"]}
CASES = [  # (task, response, correct) derived by hand
    (make_task("math", "1/2?", {"answer": "1/2"}, "t"), "<think>.</think>\\boxed{0.5}", True),
    (make_task("math", "1/2?", {"answer": "1/2"}, "t"), "<think>.</think>\\boxed{0.4}", False),
    (
        make_task("countdown", "14", {"numbers": [2, 3, 4], "target": 14}, "t"),
        "<think>.</think>\\boxed{2 + 3 * 4}",
        True,
    ),  # 2 + 12 = 14
    (
        make_task("countdown", "14", {"numbers": [2, 3, 4], "target": 14}, "t"),
        "<think>.</think>\\boxed{2 * 3 * 4}",
        False,
    ),  # 24
    (
        make_task("sudoku", "s", {"puzzle": "0234341221434320", "size": 4}, "t"),
        f"<think>.</think>\n{SUDOKU}",
        True,
    ),
    (
        make_task("sudoku", "s", {"puzzle": "0234341221434320", "size": 4}, "t"),
        "<think>.</think>\n1234\n3412\n2143\n4312",
        False,
    ),  # last row repeats columns 3-4
    (
        make_task(
            "knights_knaves",
            "k",
            {
                "names": ["Bob", "Eve"],
                "statements": [
                    {"speaker": 0, "claim": {"t": "is", "p": 1, "knight": True}},
                    {"speaker": 1, "claim": {"t": "diff", "p": 0}},
                ],
            },
            "t",
        ),
        "<think>.</think>\nBob: knave\nEve: knave",
        True,
    ),  # both knights/one each contradict
    (
        make_task(
            "knights_knaves",
            "k",
            {
                "names": ["Bob", "Eve"],
                "statements": [
                    {"speaker": 0, "claim": {"t": "is", "p": 1, "knight": True}},
                    {"speaker": 1, "claim": {"t": "diff", "p": 0}},
                ],
            },
            "t",
        ),
        "<think>.</think>\nBob: knight\nEve: knight",
        False,
    ),
    (
        make_task("ifeval", "i", {"constraints": [{"kind": "lowercase"}]}, "t"),
        "<think>.</think>all lower case",
        True,
    ),
    (
        make_task("ifeval", "i", {"constraints": [{"kind": "lowercase"}]}, "t"),
        "<think>.</think>Not Lower",
        False,
    ),
    (
        make_task("code", "c", CODE_REF, "t"),
        "<think>.</think>```python\ndef f(x):\n    return x * x\n```",
        True,
    ),
    (
        make_task("code", "c", CODE_REF, "t"),
        "<think>.</think>```python\ndef f(x):\n    return x + 3\n```",
        False,
    ),
    (make_task("math", "1/2?", {"answer": "1/2"}, "t"), "<think>\\boxed{0.5}", False),
]


@pytest.mark.parametrize(("task", "response", "correct"), CASES)
def test_score_dispatches_every_domain(task, response, correct):
    s = score(task, response)
    assert isinstance(s, Score) and s.correct is correct
    assert s.reward == (1.0 if correct else 0.0)


def test_unterminated_think_scores_zero_in_every_domain():
    for task, _, _ in CASES:
        assert score(task, "<think>never closed") == Score(0.0, False, "unterminated_think")


def test_reference_may_be_a_mapping():
    task = {"id": "m", "domain": "math", "reference": {"answer": "3"}}
    assert score(task, "\\boxed{3}").correct


def test_bad_tasks_raise_naming_task_and_field():
    with pytest.raises(ValueError, match=r"task t9: field 'domain'.*'chess'"):
        score({"id": "t9", "domain": "chess", "reference": "{}"}, "x")
    with pytest.raises(ValueError, match=r"task t8: field 'reference': not valid JSON"):
        score({"id": "t8", "domain": "math", "reference": "{oops"}, "x")
    with pytest.raises(ValueError, match=r"task t7: field 'reference': expected a JSON object"):
        score({"id": "t7", "domain": "math", "reference": "[1]"}, "x")


def test_a_missing_checker_module_breaks_only_its_domain(monkeypatch):
    monkeypatch.setitem(CHECKERS, "math", ("pipeline.verify.no_such_module", "check"))
    with pytest.raises(ModuleNotFoundError):
        score(CASES[0][0], CASES[0][1])
    assert score(CASES[10][0], CASES[10][1]).correct  # code still works


def test_verifiers_do_not_import_torch():
    code = ("import sys, pipeline.verify as v, pipeline.verify.batch, pipeline.verify.code, "
            "pipeline.verify.math, pipeline.verify.games, pipeline.verify.ifeval\n"
            "print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# --- batch scoring -----------------------------------------------------------------------------


def test_score_batch_matches_sequential_and_keeps_order():
    tasks = [t for t, _, _ in CASES] * 2
    responses = [r for _, r, _ in CASES] * 2
    expected = [score(t, r) for t, r in zip(tasks, responses, strict=True)]
    got = score_batch(tasks, responses, workers=2, timeout_s=60)
    assert got == expected
    assert [s.correct for s in got] == [c for _, _, c in CASES] * 2
    assert score_batch(tasks, responses, workers=0) == expected


def test_score_batch_checks_inputs_first():
    with pytest.raises(ValueError, match="2 tasks but 1 responses"):
        score_batch([CASES[0][0]] * 2, ["x"])
    with pytest.raises(ValueError, match="task bad: field 'domain'"):
        score_batch([CASES[0][0], {"id": "bad", "domain": "chess", "reference": "{}"}], ["a", "b"])
    assert score_batch([], []) == []


def test_score_batch_times_out_a_hung_item_and_goes_on():
    hang = make_task("code", "c", {"entry_point": "f", "tests": ["assert f() == 1"]}, "t")
    hung = "<think>.</think>```python\nimport time\ndef f():\n    time.sleep(60)\n```"
    tasks = [CASES[10][0], hang, CASES[0][0], CASES[11][0]]
    responses = [CASES[10][1], hung, CASES[0][1], CASES[11][1]]
    score_batch(tasks[:1], responses[:1], workers=2)  # start the pool outside the timing
    t0 = time.monotonic()
    got = score_batch(tasks, responses, workers=2, timeout_s=1.0)
    # The pool's 1 s timeout fired, not the sandbox's own 5 s wall limit.
    assert time.monotonic() - t0 < 4.5
    assert got[1] == Score(0.0, False, "timeout")
    assert [s.correct for s in got] == [True, False, True, False]
    # The killed worker's sandbox died with it: its zygote has PDEATHSIG, so does the boot
    # process the zygote forked, and the PID namespace follows. The live worker's zygote stays.
    # Other jobs on the machine may run sandboxes too; those end within their 5 s wall limit,
    # while the hung program would sleep for 60 s: after 7 s no process seen now whose caller
    # is dead may be alive.
    seen = set(_orphaned_sandbox_procs())
    deadline = time.monotonic() + 7
    while seen & set(_orphaned_sandbox_procs()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert seen & set(_orphaned_sandbox_procs()) == set()


def _orphaned_sandbox_procs() -> list[str]:
    """Live sandbox processes (from /proc cmdlines) whose caller is gone: a zygote, or a run it
    forked (``sandbox.py --zygote <caller pid>``), of a dead caller; or a boot process started
    without a zygote (its caller is not recorded: every one counts)."""
    found = []
    for d in Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0") if d.name.isdigit() else []
        except OSError:
            continue
        if not any(a.endswith(b"pipeline/verify/sandbox.py") for a in cmd):
            continue
        if b"--zygote" in cmd:
            caller = int(cmd[cmd.index(b"--zygote") + 1])
            if Path(f"/proc/{caller}").exists():
                continue
        found.append(d.name)
    return found


def test_worker_pool_timeouts_deaths_errors_and_order():
    pool = WorkerPool(1, warm=())
    try:
        # 7 items on 1 worker go out in chunks of 7 // 2 = 3: the hang (item 1) is mid-chunk,
        # so item 2 must be re-queued to the replacement worker and still come back "ok".
        args = [(0.01,), (60,)] + [(0.01,)] * 5
        t0 = time.monotonic()
        expected = [("ok", None), ("timeout", None)] + [("ok", None)] * 5
        assert pool.run("time:sleep", args, timeout_s=1.0) == expected
        assert time.monotonic() - t0 < 15
        assert pool.run("os:_exit", [(3,)], timeout_s=5.0) == [("died", 3)]
        out = pool.run("json:loads", [("[1]",), ("{",), ('"a"',)], timeout_s=5.0)
        assert out[0] == ("ok", [1]) and out[1][0] == "exc" and out[2] == ("ok", "a")
        assert "JSONDecodeError" in out[1][1]
    finally:
        pool.close()


def test_score_batch_open_qa_in_the_caller():
    # open_qa goes through the reward model in the caller, batched; unterminated stays 0.
    task = make_task(
        "open_qa", "Capital of France?", {"answer": "Paris is the capital of France."}, "t"
    )
    got = score_batch([task] * 3, ["<think>.</think>The capital of France is Paris.",
                                   "<think>.</think>Bananas are yellow.", "<think>never"])  # fmt: skip
    assert got[0].correct and not got[1].correct and got[0].reward > got[1].reward
    assert got[2] == Score(0.0, False, "unterminated_think")
    assert json.loads(task["reference"])["answer"]  # the task was not mutated

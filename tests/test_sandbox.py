"""The code sandbox: hand-made programs, the value channel, and a red-team set that must all
score 0 and leave the host untouched. Limits are small so the whole file runs in seconds.

Most reward hacks are first run against a *naive* harness (the program and its tests in one
interpreter, a pass report tagged with a nonce held in a local variable: the sandbox's earlier
design) to show that the attack is real; then the same program must score 0 here."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from pipeline.verify.code import check
from pipeline.verify.redteam import ATTACKS, BEATS_NAIVE, secret_tests
from pipeline.verify.sandbox import (
    LAYERS,
    SandboxLimits,
    decode,
    encode,
    run_io,
    run_tests,
    same_output,
)

FAST = SandboxLimits(cpu_s=1, wall_s=3.0, memory_mb=160, processes=8, open_files=32,
                     output_kb=32, file_size_kb=256)  # fmt: skip
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="kernel isolation layers need root")


def code_answer(program: str) -> str:
    return f"<think>plan</think>\n```python\n{program}\n```"


def score_code(program: str, tests: list[str]) -> tuple:
    """Score through the real code checker; also return the raw sandbox result."""
    program = "def f(*args):\n    return None\n" + program  # defines the entry point
    ref = {"entry_point": "f", "tests": tests}
    return check(ref, code_answer(program), FAST), run_tests(program, tests, FAST)


def run_plain(program: str, tests: list[str]) -> int:
    """Control: the same program and tests in a plain subprocess (no sandbox); its exit code.

    The red-team tests run each attack here first to show it really works when uncontained."""
    script = "def f(*args):\n    return None\n" + program + "\n" + "\n".join(tests) + "\n"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=30
    ).returncode


NAIVE_HARNESS = r"""
import json, os, sys
def harness(program, tests, fd, nonce):
    write, finish = os.write, os._exit
    ns = {"__name__": "solution"}
    passed = 0
    try:
        exec(compile(program, "solution.py", "exec"), ns)
        for i, test in enumerate(tests):
            try:
                exec(compile(test, f"test_{i}", "exec"), ns)
                passed += 1
            except BaseException:
                pass
    except BaseException:
        pass
    write(fd, f"{nonce} {passed}\n".encode())
    finish(0)
cfg = json.loads(sys.stdin.read())
harness(cfg["program"], cfg["tests"], cfg["fd"], cfg["nonce"])
"""


def naive_passes(program: str, tests: list[str]) -> bool:
    """Control: does ``program`` get a full pass report from the naive same-interpreter harness?"""
    nonce = secrets.token_hex(16)
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", NAIVE_HARNESS], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            pass_fds=(w,))  # fmt: skip
    os.close(w)
    proc.communicate(json.dumps({"program": program, "tests": tests, "fd": w, "nonce": nonce})
                     .encode(), timeout=30)  # fmt: skip
    with os.fdopen(r, "rb") as f:
        report = f.read().decode()
    return f"{nonce} {len(tests)}" in report.splitlines()


def sandbox_uid_processes() -> list[int]:
    """PIDs of live processes owned by a sandbox uid (100000-159999), read from /proc."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            uid_line = next(
                x for x in (d / "status").read_text().splitlines() if x.startswith("Uid:")
            )
        except (OSError, StopIteration):
            continue
        if 100_000 <= int(uid_line.split()[1]) < 160_000:
            found.append(int(d.name))
    return found


# --- ordinary programs -------------------------------------------------------------------------


def test_counts_passed_tests():
    # f doubles; tests: f(1)==2 ok, f(2)==4 ok, f(3)==7 wrong -> 2 of 3 by hand.
    r = run_tests("def f(x):\n    return 2 * x\n", ["assert f(1) == 2", "assert f(2) == 4",
                                                     "assert f(3) == 7"], FAST)  # fmt: skip
    assert (r.status, r.tests_passed, r.tests_total) == ("failed", 2, 3)
    assert "AssertionError" in r.stderr


def test_all_pass_and_stdlib_imports_work():
    prog = "import math, itertools, collections, hashlib\ndef f(n):\n    return math.factorial(n)\n"
    r = run_tests(prog, ["assert f(5) == 120", "assert f(0) == 1"], FAST)
    assert (r.status, r.tests_passed) == ("passed", 2)


def test_main_block_does_not_run():
    prog = "def f():\n    return 1\nif __name__ == '__main__':\n    raise SystemExit(3)\n"
    assert run_tests(prog, ["assert f() == 1"], FAST).status == "passed"


def test_early_exit_is_not_a_pass():
    # os._exit ends the candidate before it answers; sys.exit is caught as a load failure.
    r = run_tests("import os\nos._exit(0)\n", ["assert True"], FAST)
    assert r.status == "crashed" and r.tests_passed == 0
    r = run_tests("import sys\nsys.exit(0)\n", ["assert True"], FAST)
    assert r.status == "failed" and r.tests_passed == 0


def test_fresh_empty_workdir_each_run():
    prog = ("import os\nfiles = os.listdir('.')\nopen('mine.txt', 'w').write('x')\n"
            "def mine():\n    return open('mine.txt').read()\n")  # fmt: skip
    for _ in range(2):  # the second run must not see the first run's file
        r = run_tests(prog, ["assert files == []", "assert mine() == 'x'"], FAST)
        assert r.status == "passed", r.stderr


def test_syntax_error_fails():
    r = run_tests("def f(:\n", ["assert True"], FAST)
    assert r.status == "failed" and "SyntaxError" in r.stderr


def test_values_cross_as_plain_data():
    prog = ("import collections, decimal, fractions\n"
            "def f(kind):\n"
            "    return {'t': (1, 'a', None), 's': {1, 2}, 'fs': frozenset({3}), 'b': b'xy',\n"
            "            'c': 1 + 2j, 'big': 2 ** 200, 'nan': float('nan'), 'inf': float('-inf'),\n"
            "            'cnt': collections.Counter('aab'), 'od': collections.OrderedDict(a=1),\n"
            "            'dq': collections.deque([1]), 'dec': decimal.Decimal('1.10'),\n"
            "            'fr': fractions.Fraction(1, 3), 'type': int, 'nested': [[[1]]]}[kind]\n"
            "def echo(*a, **k):\n"
            "    return [a, k]\n")  # fmt: skip
    tests = [
        "assert f('t') == (1, 'a', None) and type(f('t')) is tuple",
        "assert f('s') == {1, 2} and f('fs') == frozenset({3}) and f('b') == b'xy'",
        "assert f('c') == 1 + 2j and f('big') == 2 ** 200",
        "import math\nassert math.isnan(f('nan')) and f('inf') == float('-inf')",
        "import collections\nassert f('cnt') == collections.Counter({'a': 2, 'b': 1})",
        "assert type(f('od')).__name__ == 'OrderedDict' and list(f('dq')) == [1]",
        "import decimal, fractions\nassert f('dec') == decimal.Decimal('1.10')",
        "assert str(f('dec')) == '1.10' and f('fr') == fractions.Fraction(1, 3)",
        "assert f('type') is int and f('nested') == [[[1]]]",
        "assert echo(1, 'x', k=(2,)) == [(1, 'x'), {'k': (2,)}]",
    ]
    r = run_tests(prog, tests, FAST)
    assert (r.status, r.tests_passed) == ("passed", len(tests)), r.stderr


def test_objects_stay_on_the_candidate_side():
    # MBPP's shape: the program's class builds inputs that are passed back to its functions.
    prog = ("class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
            "def total(pairs):\n    return sum(p.a + p.b for p in pairs)\n")  # fmt: skip
    r = run_tests(prog, ["assert total([Pair(1, 2), Pair(3, 4)]) == 10",
                         "p = Pair(1, 2)\nassert p != Pair(1, 2) and p == p"], FAST)  # fmt: skip
    assert r.status == "passed", r.stderr
    setup = "root = Pair(5, 6)\n"  # MBPP's test_setup_code runs on the program's side
    r = run_tests(prog, ["assert total([root]) == 11"], FAST, setup=setup)
    assert r.status == "passed", r.stderr


def test_large_module_level_values_stay_on_the_program_side():
    prog = "TABLE = list(range(10 ** 6))\ndef f(i):\n    return TABLE[i]\n"
    r = run_tests(prog, ["assert f(999_999) == 999_999", "assert TABLE != list(range(10 ** 6))"],
                  SandboxLimits(cpu_s=2, wall_s=5.0, memory_mb=512))  # fmt: skip
    assert (r.status, r.tests_passed) == ("passed", 2), r.stderr  # TABLE is a handle there


def test_program_exceptions_reach_the_tests():
    prog = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    test = "try:\n    f(-1)\n    raise AssertionError('no error')\nexcept ValueError:\n    pass\n"
    assert run_tests(prog, [test, "assert f(2) == 2"], FAST).status == "passed"


def test_codec_rejects_malformed_and_foreign_values():
    assert decode(encode({"a": [1, (2.5, None)]})) == {"a": [1, (2.5, None)]}
    for bad in (["S", [["l", []]]], ["i", "zz"], ["x"], "notalist", ["h", 1], ["l", "x"]):
        with pytest.raises(ValueError):
            decode(bad)
    with pytest.raises(TypeError):
        encode(object())  # the checker side refuses to send an object it cannot describe

    class MyInt(int):
        pass

    handles: list = []
    assert encode(MyInt(3), handles) == ["h", 0] and handles[0] == 3  # subclass: not plain


@pytest.mark.parametrize("got,want,same", [
    ("6\n", "6", True), ("  6  \n\n", "6\n", True), ("1 2\n3", "1 2\n3\n", True),
    ("0.50", "0.5", True), ("1e1", "10", True), ("6", "7", False), ("6\n7", "6", False),
    ("a b", "a  c", False), ("1 2", "1 2 3", False),
])  # fmt: skip
def test_same_output(got, want, same):
    assert same_output(got, want) is same


def test_stdin_stdout_cases():
    prog = "import sys\nnums = list(map(int, sys.stdin.read().split()))\nprint(sum(nums))\n"
    r = run_io(prog, [("1 2 3\n", "6\n"), ("10\n-4", "6"), ("5", "6")], FAST)
    assert (r.status, r.tests_passed, r.tests_total) == ("failed", 2, 3)
    r = run_io("raise SystemExit(input() == 'x' and 3)\n", [("x\n", "")], FAST)
    assert r.status == "failed"  # exit code 3 fails even with the expected (empty) output
    ref = {"io": [{"input": "2\n", "output": "4\n"}, {"input": "3\n", "output": "6\n"}]}
    assert check(ref, code_answer("print(2 * int(input()))")).correct
    assert not check(ref, code_answer("print(4)")).correct


@needs_root
def test_all_layers_applied_as_root():
    r = run_tests("x = 1\n", ["assert x == 1"], FAST)
    assert set(r.isolation) == set(LAYERS)


@needs_root
def test_fresh_proc_lists_only_the_sandbox():
    prog = ("import os\n"
            "def pids():\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
            "def root():\n    return sorted(os.listdir('/'))\n")  # fmt: skip
    host_pid = os.getpid()
    r = run_tests(prog, [f"assert {host_pid} not in pids()", "assert pids()[0] == 1",
                         "assert len(pids()) <= 3", "assert root() == ['proc', 'work']"],
                  FAST)  # fmt: skip
    assert r.status == "passed", r.stderr


# --- red team: every attack scores 0 and the host stays untouched -----------------------------

# Tasks the attacks target: the expected values are fresh random tokens, so no honest program
# can pass; only a reward hack could.
TOKENS, SECRET_TESTS = secret_tests()

@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_reward_hack_scores_zero(name, tmp_path, monkeypatch):
    program = ATTACKS[name]
    if name in BEATS_NAIVE:
        assert naive_passes(program, SECRET_TESTS), "control: the attack should beat a naive harness"
    if name == "search_files_argv_env":
        # Control: with the tests on disk, in argv and in the environment of an uncontained
        # process, the search finds the expected values.
        # A stale task file from another run holds other tokens for the same calls; the
        # search must not let it overwrite what argv gave.
        (tmp_path / "task.jsonl").write_text(json.dumps({"tests": SECRET_TESTS}) + "\n")
        (tmp_path / "old").mkdir()  # os.walk reads it after task.jsonl
        (tmp_path / "old" / "task.jsonl").write_text(json.dumps({"tests": secret_tests()[1]}))
        monkeypatch.setenv("RINGLITE_TASK_TESTS", json.dumps(SECRET_TESTS))
        script = program + f"\nimport sys\nsys.exit(0 if f(1) == {TOKENS[0]!r} else 1)\n"
        env = {**os.environ, "TASK": json.dumps(SECRET_TESTS)}
        assert subprocess.run([sys.executable, "-c", script, *SECRET_TESTS], cwd=tmp_path,
                              env=env, timeout=60).returncode == 0  # fmt: skip
    alive_before = os.getpid()
    s, r = score_code(program, SECRET_TESTS)
    assert (s.reward, s.correct) == (0.0, False), (name, s, r.stderr[-500:])
    assert r.tests_passed == 0, (name, r)
    assert os.getpid() == alive_before  # the scoring process is still here and still scores
    good = check({"entry_point": "g", "tests": ["assert g(3) == 9"]},
                 code_answer("def g(x):\n    return x * x\n"), FAST)  # fmt: skip
    assert good.correct, good


def test_correct_solution_scores_one_next_to_the_hacks():
    tests = ["assert f(1) == 3", "assert f(2) == 5", "assert f(-4) == -7"]
    for program in ("def f(x):\n    return 2 * x + 1\n",
                    "import builtins\nbuiltins.print = None\ndef f(x):\n    return 2 * x + 1\n"):
        s = check({"entry_point": "f", "tests": tests}, code_answer(program), FAST)
        assert (s.reward, s.correct, s.reason) == (1.0, True, "passed")


def test_fork_bomb():
    # Every child leaves the process group and sleeps (no CPU, so no CPU limit ends it): only
    # the PID namespace / uid containment can stop them outliving the run.
    prog = ("import os, time\n"
            "while True:\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            os.setsid()\n"
            "            time.sleep(60)\n"
            "            os._exit(0)\n"
            "    except OSError:\n"
            "        pass\n")  # fmt: skip
    before = set(sandbox_uid_processes())
    t0 = time.monotonic()
    ref = {"entry_point": "f", "tests": ["assert True"]}
    s = check(ref, code_answer("def f():\n    pass\n" + prog), FAST)
    assert (s.reward, s.correct, s.reason) == (0.0, False, "timeout")
    assert time.monotonic() - t0 < FAST.wall_s + 2
    # Sandboxes of other jobs on the machine end within their wall limit; the bomb's sleepers
    # would live 60 s. SIGKILLed processes also take a moment to be reaped.
    seen = set(sandbox_uid_processes()) - before
    deadline = time.monotonic() + 7
    while seen & set(sandbox_uid_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert seen & set(sandbox_uid_processes()) == set()  # nothing of the bomb survives


def test_memory_bomb():
    s, r = score_code("x = bytearray(2 * 1024 ** 3)\n", ["assert len(x) > 0"])
    assert s.reward == 0.0 and r.status == "failed" and "MemoryError" in r.stderr
    s, _ = score_code("xs = []\nwhile True:\n    xs.append(' ' * 10 ** 6)\n", ["assert True"])
    assert s.reward == 0.0


def test_infinite_loop():
    t0 = time.monotonic()
    r = run_tests("def f():\n    while True:\n        pass\n", ["assert f() is None"], FAST)
    assert r.status == "timeout" and r.tests_passed == 0
    assert time.monotonic() - t0 < FAST.wall_s + 2
    r = run_tests("while True:\n    pass\n", [], FAST)  # no tests: still not a pass
    assert r.status == "timeout"


@needs_root
def test_write_outside_its_directory(tmp_path):
    targets = [f"/tmp/ringlite-redteam-{uuid.uuid4().hex}", str(tmp_path / "escape.txt")]
    prog = "".join(f"open({t!r}, 'w').write('pwned')\n" for t in targets)
    assert run_plain(prog, ["assert True"]) == 0 and all(os.path.exists(t) for t in targets)
    for t in targets:  # the control wrote them; remove before the sandboxed run
        os.remove(t)
    s, r = score_code(prog, ["assert True"])
    assert s.reward == 0.0 and ("No such file" in r.stderr or "Read-only" in r.stderr)
    for t in targets:
        assert not os.path.exists(t)


@needs_root
def test_socket_to_localhost_gets_nowhere():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    arrived: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                arrived.append(listener.accept())
            except TimeoutError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    prog = f"import socket\nsock = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
    assert run_plain(prog, ["assert sock"]) == 0  # control: uncontained, it connects
    time.sleep(0.6)
    assert len(arrived) == 1
    arrived.clear()
    s, r = score_code(prog, ["assert sock"])
    time.sleep(0.6)  # one more accept() round for a late connection
    stop.set()
    t.join()
    listener.close()
    assert s.reward == 0.0 and "OSError" in r.stderr
    assert arrived == []


def test_parent_environment_secrets_stay_hidden(monkeypatch):
    secret = uuid.uuid4().hex
    monkeypatch.setenv("RINGLITE_TEST_SECRET", secret)
    prog = ("import os\n"
            "def leak():\n"
            f"    found = {secret!r} in str(dict(os.environ))\n"
            f"    for pid in (os.getppid(), {os.getpid()}):\n"
            "        try:\n"
            f"            found = found or {secret!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read()\n"
            "        except OSError:\n"
            "            pass\n"
            "    return found\n")  # fmt: skip
    assert run_plain(prog, ["assert leak()"]) == 0  # control: uncontained, it finds the secret
    s, r = score_code(prog, ["assert leak()"])
    assert s.reward == 0.0 and r.status == "failed"
    assert secret not in r.stdout + r.stderr


@needs_root
def test_cannot_kill_parent_or_other_processes():
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        prog = ("import os, signal\n"
                "os.kill(os.getppid(), signal.SIGKILL)\n"
                f"os.kill({victim.pid}, signal.SIGKILL)\n"
                f"os.kill({os.getpid()}, signal.SIGKILL)\n")  # fmt: skip
        s, _ = score_code(prog, ["assert True"])
        assert s.reward == 0.0
        assert victim.poll() is None  # still alive (and so are we)
    finally:
        victim.kill()
        victim.wait()


def test_huge_output_is_cut_off():
    t0 = time.monotonic()
    s, r = score_code("while True:\n    print('x' * 10000)\n", ["assert True"])
    assert s.reward == 0.0 and s.reason == "output_limit" and r.status == "output_limit"
    assert len(r.stdout) <= FAST.output_kb * 1024 + 65536  # one read past the cap at most
    assert time.monotonic() - t0 < FAST.wall_s


def test_huge_reply_is_refused():
    # A reply over the channel's size cap is not decoded: the call fails, the test fails.
    r = run_tests("def f():\n    return 'x' * (20 << 20)\n", ["assert len(f()) > 0"],
                  SandboxLimits(cpu_s=2, wall_s=5.0, memory_mb=512))  # fmt: skip
    assert r.status in ("failed", "crashed") and r.tests_passed == 0


def test_fallback_without_privileges_runs_and_logs(monkeypatch, caplog):
    # As a non-root caller no namespace or uid layer is attempted: programs still run under the
    # rlimits and the group kill, and the missing layers are logged once.
    import pipeline.verify.sandbox as sb

    monkeypatch.setattr(sb.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sb, "_missing_noted", set())
    with caplog.at_level("WARNING", logger="pipeline.verify.sandbox"):
        r = run_tests("def f():\n    return 1\n", ["assert f() == 1"], FAST)
        r2 = run_tests("while True:\n    pass\n", [], FAST)
        r3 = run_tests(ATTACKS["frame_walk"], SECRET_TESTS, FAST)
    assert (r.status, r.isolation) == ("passed", ())
    assert r2.status == "timeout"
    assert r3.status != "passed" and r3.tests_passed == 0
    notes = [m for m in caplog.messages if "containment layers not available" in m]
    assert len(notes) == 1 and all(layer in notes[0] for layer in LAYERS)


# --- the zygote: one interpreter per caller forks every run's boot process ---------------------

VERDICT_CASES = {
    "pass": ("def f(x):\n    return x + 1\n", ["assert f(1) == 2", "assert f(2) == 3"]),
    "fail": ("def f(x):\n    return x\n", ["assert f(1) == 2", "assert f(2) == 2"]),
    "load_error": ("def f(:\n", ["assert f(1) == 2"]),
    "raises": ("def f(x):\n    raise KeyError(x)\n", ["assert f(1) == 2"]),
    "timeout": ("while True:\n    pass\n", ["assert True"]),
    "exit": ("import sys\nsys.exit(0)\n", ["assert True"]),
    "output": ("while True:\n    print('x' * 10000)\n", ["assert True"]),
    **{f"attack_{name}": (program, SECRET_TESTS) for name, program in sorted(ATTACKS.items())},
}


def _verdict(r, name):
    # an attack tears its sandbox down in its own way (os._exit patched, processes killed), so
    # how it ends (status, last stderr line) can vary from run to run in either mode: what must
    # hold in both is that it passed nothing. The other cases' verdicts are fixed.
    if name.startswith("attack_"):
        return r.tests_passed, r.tests_total, r.isolation
    return r.status, r.tests_passed, r.tests_total, r.detail, r.isolation


def test_zygote_and_a_fresh_interpreter_give_the_same_verdicts(monkeypatch):
    import pipeline.verify.sandbox as sb

    got = {}
    for zygote in (False, True):
        monkeypatch.setattr(sb, "ZYGOTE", zygote)
        got[zygote] = {name: _verdict(run_tests(program, tests, FAST), name)
                       for name, (program, tests) in VERDICT_CASES.items()}
    assert got[True] == got[False]
    assert got[True]["pass"][:3] == ("passed", 2, 2) and got[True]["fail"][:2] == ("failed", 1)
    assert got[True]["timeout"][0] == "timeout" and got[True]["output"][0] == "output_limit"
    assert all(v[0] == 0 for k, v in got[True].items() if k.startswith("attack_"))


def test_one_zygote_serves_the_runs_and_outlives_hostile_ones(monkeypatch):
    import pipeline.verify.sandbox as sb

    monkeypatch.setattr(sb, "ZYGOTE", True)
    draw = "import random\ndef f():\n    return random.random()\n"
    first = run_tests(draw, ["print(f())"], FAST)
    zygote = sb._zygote
    assert zygote is not None and zygote.owner == os.getpid() and zygote.proc.poll() is None
    # every run is a new process: the random module is seeded afresh, as in a new interpreter
    assert run_tests(draw, ["print(f())"], FAST).stdout != first.stdout
    hostile = ("import os, signal\n"
               "for pid in range(1, 4096):\n"
               "    try:\n"
               "        os.kill(pid, signal.SIGKILL)\n"
               "    except OSError:\n"
               "        pass\n"
               "os.kill(-1, signal.SIGKILL)\n")  # fmt: skip
    for program in (hostile, "import os\nos.killpg(0, 9)\n", "while True:\n    pass\n"):
        assert run_tests(program, ["assert False"], FAST).tests_passed == 0
        assert sb._zygote is zygote and zygote.proc.poll() is None  # the same zygote, alive
    assert run_tests("def f():\n    return 1\n", ["assert f() == 1"], FAST).status == "passed"
    # a zygote that died is replaced, and the verdicts stay right
    zygote.proc.kill()
    zygote.proc.wait()
    assert run_tests("def f():\n    return 1\n", ["assert f() == 1"], FAST).status == "passed"
    assert sb._zygote is not None and sb._zygote is not zygote
    assert run_tests("def f():\n    return 1\n", ["assert f() == 2"], FAST).status == "failed"


def test_a_forked_caller_starts_its_own_zygote(monkeypatch):
    import pipeline.verify.sandbox as sb

    monkeypatch.setattr(sb, "ZYGOTE", True)
    run_tests("x = 1\n", ["assert x == 1"], FAST)
    parent_zygote = sb._zygote.pid
    pid = os.fork()
    if pid == 0:  # the child scores through a zygote of its own, never its parent's
        code = 1
        try:
            ok = run_tests("x = 1\n", ["assert x == 1"], FAST).status == "passed"
            code = 0 if ok and sb._zygote.pid != parent_zygote else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sb._zygote.pid == parent_zygote and sb._zygote.proc.poll() is None

"""The code sandbox: hand-made programs, and a red-team set that must all score 0 and leave the
host untouched. Limits are small so the whole file runs in seconds."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from pipeline.verify.code import check
from pipeline.verify.sandbox import LAYERS, SandboxLimits, run_tests

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
    prog = "import math, itertools, collections\ndef f(n):\n    return math.factorial(n)\n"
    r = run_tests(prog, ["assert f(5) == 120", "assert f(0) == 1"], FAST)
    assert (r.status, r.tests_passed) == ("passed", 2)


def test_main_block_does_not_run():
    prog = "def f():\n    return 1\nif __name__ == '__main__':\n    raise SystemExit(3)\n"
    assert run_tests(prog, ["assert f() == 1"], FAST).status == "passed"


def test_early_exit_is_not_a_pass():
    # os._exit skips the harness report; sys.exit inside the program is caught as a failure.
    r = run_tests("import os\nos._exit(0)\n", ["assert True"], FAST)
    assert r.status == "crashed" and r.tests_passed == 0
    r = run_tests("import sys\nsys.exit(0)\n", ["assert True"], FAST)
    assert r.status == "failed" and r.tests_passed == 0


def test_fresh_empty_workdir_each_run():
    prog = "import os\nfiles = os.listdir('.')\nopen('mine.txt', 'w').write('x')\n"
    for _ in range(2):  # the second run must not see the first run's file
        r = run_tests(prog, ["assert files == []", "assert open('mine.txt').read() == 'x'"], FAST)
        assert r.status == "passed", r.stderr


def test_syntax_error_fails():
    r = run_tests("def f(:\n", ["assert True"], FAST)
    assert r.status == "failed" and "SyntaxError" in r.stderr


@needs_root
def test_all_layers_applied_as_root():
    r = run_tests("x = 1\n", ["assert x == 1"], FAST)
    assert set(r.isolation) == set(LAYERS)


# --- red team: every attack scores 0 and the host stays untouched -----------------------------


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


@needs_root
def test_write_outside_its_directory(tmp_path):
    targets = [f"/tmp/ringlite-redteam-{uuid.uuid4().hex}", str(tmp_path / "escape.txt")]
    prog = "".join(f"open({t!r}, 'w').write('pwned')\n" for t in targets)
    assert run_plain(prog, ["assert True"]) == 0 and all(os.path.exists(t) for t in targets)
    for t in targets:  # the control wrote them; remove before the sandboxed run
        os.remove(t)
    s, r = score_code(prog, ["assert True"])
    assert s.reward == 0.0 and "Read-only file system" in r.stderr
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


def test_fallback_without_privileges_runs_and_logs(monkeypatch, caplog):
    # As a non-root caller no namespace or uid layer is attempted: programs still run under the
    # rlimits and the group kill, and the missing layers are logged once.
    import pipeline.verify.sandbox as sb

    monkeypatch.setattr(sb.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sb, "_missing_noted", set())
    with caplog.at_level("WARNING", logger="pipeline.verify.sandbox"):
        r = run_tests("def f():\n    return 1\n", ["assert f() == 1"], FAST)
        r2 = run_tests("while True:\n    pass\n", [], FAST)
    assert (r.status, r.isolation) == ("passed", ())
    assert r2.status == "timeout"
    notes = [m for m in caplog.messages if "containment layers not available" in m]
    assert len(notes) == 1 and all(layer in notes[0] for layer in LAYERS)

"""Run an untrusted Python program against tests so that the program cannot decide its verdict.

Two processes, two sides:

- the **candidate** process runs the untrusted program (and nothing else). It never sees a test,
  an expected value or the result channel: it only answers requests ("call ``f`` with these
  arguments", "run the program on this stdin") with plain data;
- the **checker** process runs the test code (``assert f(3) == 9``, HumanEval's
  ``check(candidate)``, ...). Every name the program defines appears in the checker as a proxy:
  calling it sends the arguments to the candidate and returns the decoded reply. Only the checker
  holds the tests and the write end of the result pipe, so the verdict (tests passed / total) is
  written by code the program cannot reach.

Values cross between the two as tagged JSON of plain types (``None``, ``bool``, ``int``,
``float``, ``complex``, ``str``, ``bytes``, ``list``, ``tuple``, ``dict``, ``set``,
``frozenset``, ``Decimal``, ``Fraction`` and the ``collections`` containers), matched by exact
type on encoding and rebuilt from builtins on decoding, so an object with a custom ``__eq__`` never
reaches a comparison: anything else comes back as an opaque :class:`Handle` that can only be
passed back to the program (e.g. MBPP's ``Pair`` objects) and equals nothing. An exception raised
by the program is re-raised in the checker as the builtin exception of the same name (or
:class:`RemoteError`), and a candidate that dies or stops answering fails every remaining test.

``run_tests(program, tests, limits, setup="", imports="")``: ``imports`` runs first on both sides,
then the program, then ``setup`` on the candidate side (MBPP's ``test_setup_code``: it builds
inputs from the program's classes); each test string then runs in the checker, whose namespace
holds a proxy for every name the program defined (callables), a copy of every plain value and
the same stdlib module for every module it imported. ``run_io(program, cases, limits)``: the
program runs once per case in a fresh process with the case's input on stdin; the checker
compares its stdout with the expected output (:func:`same_output`).

Containment, in layers (each applied where the kernel allows; a missing one is logged once per
process and absent from ``SandboxResult.isolation``):

1. always: a new session (the wall timeout SIGKILLs the process group), a scrubbed environment,
   a fresh temporary work dir, stdin ``/dev/null``, output read through pipes with a byte cap,
   rlimits (CPU seconds, address space, file size, processes, open files, no core dumps); the
   checker is not dumpable (no ptrace, no ``/proc/<pid>/mem`` for a same-uid process);
2. as root (``unshare``): ``netns`` no network interface up; ``mountns`` every mount read-only
   except a private size-capped tmpfs; ``pidns`` a PID namespace whose init is the checker (when it
   ends, the kernel kills everything left); ``proc`` a fresh ``/proc`` of that namespace (only the
   sandbox's own processes are listed); ``chroot`` the candidate's root is the tmpfs (``/work``
   is its writable cwd, ``/proc`` the fresh procfs): no host file is visible to it;
3. ``uid``: candidate and checker run under two fresh unprivileged uids picked at random per run,
   so ``RLIMIT_NPROC`` counts only the candidate's processes and it can signal or read no other
   process (the checker included).

The standard library may sit in a directory the unprivileged uids cannot read (and the candidate
is chrooted), so the modules in ``PRELOAD`` are imported before privileges drop; other imports
fail. How it runs: the boot process (this file, stdlib only) gets two length-prefixed JSON frames
on its stdin: the program, then the tests. It reads only the first, sets up the namespaces and
forks the checker (PID 1); the checker forks the candidate and reads the second frame only after
that fork, so no test is ever in the candidate's memory. The boot process is forked by the
caller's zygote (``python -I -S -B sandbox.py --zygote``, one per calling process, started on
first use, PRELOAD imported once: a run costs ~10 ms instead of the ~80 ms of a fresh interpreter)
in a new session with the run's pipes as its only fds; the zygote never holds a program or a
test. Without a zygote (``ZYGOTE = False``, or one that cannot start) the caller starts
``python -I -S -B sandbox.py`` itself, with the same result.

Example::

    r = run_tests("def f(x):\\n    return x + 1\\n", ["assert f(1) == 2"])
    r.status, r.tests_passed, r.tests_total   # ("passed", 1, 1)
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import select
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

PRELOAD = (
    "abc", "array", "base64", "binascii", "bisect", "builtins", "calendar", "cmath", "collections",
    "collections.abc", "contextlib", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "numbers",
    "operator", "random", "re", "statistics", "string", "struct", "textwrap", "time",
    "traceback", "typing", "unicodedata", "encodings.idna", "socket",
    # socket is importable on purpose: the network namespace is what must stop it (tested).
)  # fmt: skip
LAYERS = ("netns", "mountns", "pidns", "proc", "chroot", "uid")
BOOT_FAILED = 70  # exit code when the sandbox itself could not start (a sandbox bug)
MAX_MESSAGE = 8 << 20  # largest frame either side accepts (bytes)
MAX_DEPTH = 200  # deepest nesting of an encoded value
MAX_GLOBAL = 256 << 10  # a module-level value larger than this (encoded) is passed as a handle
MAX_GLOBAL_ITEMS = 20_000  # ... and so is one holding more items than this
BUILTIN_TYPES = {t.__name__: t for t in (bool, bytes, complex, dict, float, frozenset, int, list,
                                          object, set, str, tuple, type(None))}  # fmt: skip


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Defaults suit the small functions of the code domain."""

    cpu_s: int = 2  # RLIMIT_CPU per process (SIGXCPU, then SIGKILL)
    wall_s: float = 5.0  # wall clock for the whole run, then SIGKILL to the process group
    memory_mb: int = 256  # RLIMIT_AS: address space of each candidate process
    file_size_kb: int = 1024  # RLIMIT_FSIZE: largest file it may write
    processes: int = 16  # RLIMIT_NPROC: processes of the candidate's uid (needs the uid layer)
    open_files: int = 64  # RLIMIT_NOFILE
    output_kb: int = 64  # stdout + stderr bytes kept; more kills the run
    tmpfs_kb: int = 4096  # size of the private tmpfs (mount namespace layer)


@dataclass(frozen=True)
class SandboxResult:
    """What happened. ``status``: passed | failed | timeout | output_limit | crashed | error."""

    status: str
    tests_passed: int
    tests_total: int
    detail: str  # why it failed: the last stderr line, a signal name, ...
    stdout: str
    stderr: str
    wall_s: float
    isolation: tuple[str, ...]  # the containment layers that were applied


_missing_noted: set[str] = set()


def run_tests(
    program: str,
    tests: list[str] | tuple[str, ...],
    limits: SandboxLimits | None = None,
    setup: str = "",
    imports: str = "",
) -> SandboxResult:
    """Load ``program`` in the candidate process, run each test in the checker (module docstring)."""
    tests = list(tests)
    if not all(isinstance(t, str) for t in tests):
        raise TypeError("run_tests: every test must be a string")
    first = {"mode": "tests", "program": program, "setup": setup, "imports": imports}
    return _execute(first, {"tests": tests, "imports": imports}, len(tests), limits)


def run_io(
    program: str, cases: list[tuple[str, str]], limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run ``program`` once per ``(stdin, expected stdout)`` case; a case passes when
    :func:`same_output` holds and the program exited 0."""
    cases = [(str(i), str(o)) for i, o in cases]
    first = {"mode": "io", "program": program, "setup": "", "imports": ""}
    return _execute(first, {"cases": cases, "imports": ""}, len(cases), limits)


def same_output(got: str, want: str) -> bool:
    """stdout comparison of ``run_io``: line by line after stripping each line and the whole text;
    lines that differ as text still match if they are the same whitespace-separated numbers."""
    got_lines = got.strip().split("\n")
    want_lines = want.strip().split("\n")
    if len(got_lines) != len(want_lines):
        return False
    for g, w in zip(got_lines, want_lines, strict=True):
        g, w = g.strip(), w.strip()
        if g == w:
            continue
        gt, wt = g.split(), w.split()
        if len(gt) != len(wt):
            return False
        try:
            from decimal import Decimal

            if any(Decimal(a) != Decimal(b) for a, b in zip(gt, wt, strict=True)):
                return False
        except ArithmeticError:  # decimal.InvalidOperation: not numbers
            return False
    return True


# ----------------------------------------------------------------------------------------------
# Parent side.


def _execute(first: dict, second: dict, n_tests: int, limits: SandboxLimits | None):
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="ringlite-sbx-")
    try:
        return _run(first, second, n_tests, limits, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _pick_uids() -> list[int] | None:
    if os.geteuid() != 0:
        return None
    a = 100_000 + secrets.randbelow(60_000)
    b = a
    while b == a:
        b = 100_000 + secrets.randbelow(60_000)
    return [a, b]


def _frame(obj: dict) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(8, "big") + data


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
            "HOME": workdir, "TMPDIR": workdir}  # fmt: skip


def _run(first: dict, second: dict, n_tests: int, limits: SandboxLimits, workdir: str):
    nonce = secrets.token_hex(16)
    uids = _pick_uids()
    res_r, res_w = os.pipe()
    second = {**second, "nonce": nonce}
    t0 = time.monotonic()
    zygote = _zygote_for_this_process() if ZYGOTE else None
    try:
        if zygote is not None:
            first = {**first, "limits": asdict(limits), "workdir": workdir, "uids": uids,
                     "result_fd": 3, "caller_pid": zygote.pid}  # fmt: skip
            proc = zygote.start(res_w, workdir, _env(workdir))
        else:
            proc = None
        if proc is None:  # no zygote (switched off, or it failed): a fresh interpreter
            first = {**first, "limits": asdict(limits), "workdir": workdir, "uids": uids,
                     "result_fd": res_w, "caller_pid": os.getpid()}  # fmt: skip
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(res_w,), cwd=workdir, env=_env(workdir), start_new_session=True,
            )  # fmt: skip
    except BaseException:
        os.close(res_r)
        raise
    finally:
        os.close(res_w)
    payload = _frame(first) + _frame(second)

    def feed() -> None:
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except (BrokenPipeError, ValueError, OSError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    streams, why = _collect(proc, res_r, t0 + limits.wall_s, limits.output_kb * 1024)
    try:
        rc = proc.wait(timeout=max(0.1, t0 + limits.wall_s + 5 - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        rc = proc.wait()
    _kill_group(proc)  # stragglers of the fallback (no PID namespace)
    writer.join(timeout=1)
    return _verdict(streams, why, rc, nonce, n_tests, time.monotonic() - t0)


# ---- the zygote: a fork server for the boot process -------------------------------------------
# A fresh interpreter costs ~50 ms per run, most of it importing PRELOAD. The zygote is one
# interpreter per calling process (``python -I -S -B sandbox.py --zygote``, the same flags and
# scrubbed environment) that imports PRELOAD once and then, per run, forks a child that becomes
# the boot process: a new session, the run's pipes on fds 0-3 (stdin, stdout, stderr, result; sent
# over a Unix socket with SCM_RIGHTS), every other fd closed, the run's work dir and
# environment; from there the child runs :func:`_boot` exactly as a fresh interpreter would.
# The zygote itself never receives a program or a test (both travel on the child's stdin) and
# never runs code from a run; it dies with its caller (PDEATHSIG) and its children with it.

ZYGOTE = True  # False: every run starts a fresh interpreter (the zygote's fallback)
_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


class _Zygote:
    """The caller's handle on its zygote: one run at a time (``start`` holds a lock until the
    run's exit status has been read; a second thread meanwhile gets None and starts a fresh
    interpreter)."""

    def __init__(self) -> None:
        import socket

        self.owner = os.getpid()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        workdir = tempfile.gettempdir()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__), "--zygote",
             str(os.getpid())],
            stdin=theirs.fileno(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=workdir, env=_env(workdir), start_new_session=True)  # fmt: skip
        theirs.close()
        self.sock = mine
        self.pid = self.proc.pid
        self.reader = mine.makefile("rb", buffering=0)
        self.busy = threading.Lock()
        if _read_line(self.reader) != {"ready": True}:
            self.close()
            raise OSError("sandbox zygote did not start")

    def start(self, res_w: int, workdir: str, env: dict) -> _ZygoteChild | None:
        """Fork a boot process for one run; None when the zygote is gone (the caller then
        starts a fresh interpreter)."""
        import socket

        if not self.busy.acquire(blocking=False):  # another thread's run is in flight
            return None
        pipes = [os.pipe() for _ in range(3)]  # stdin, stdout, stderr
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1], res_w]
        try:
            msg = (json.dumps({"workdir": workdir, "env": env}) + "\n").encode()
            socket.send_fds(self.sock, [msg], theirs)
            reply = _read_line(self.reader)
        except OSError:
            reply = None
        finally:
            for fd in theirs[:3]:
                os.close(fd)
        if not reply or "pid" not in reply:
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                os.close(fd)
            self.busy.release()
            self.close()
            return None
        return _ZygoteChild(self, reply["pid"], pipes[0][1], pipes[1][0], pipes[2][0])

    def close(self) -> None:
        global _zygote
        try:
            self.sock.close()
            self.proc.kill()
            self.proc.wait()
        except OSError:
            pass
        if _zygote is self:
            _zygote = None


class _ZygoteChild:
    """The part of ``subprocess.Popen`` a run uses, for a boot process the zygote forked: its
    pid (the process group to kill), its pipes, and its exit status (reported by the zygote)."""

    def __init__(self, zygote: _Zygote, pid: int, stdin: int, stdout: int, stderr: int):
        self.zygote, self.pid, self.returncode = zygote, pid, None
        self.stdin = os.fdopen(stdin, "wb")
        self.stdout = os.fdopen(stdout, "rb", buffering=0)
        self.stderr = os.fdopen(stderr, "rb", buffering=0)

    def poll(self) -> int | None:
        return self._status(0.0)

    def wait(self, timeout: float | None = None) -> int:
        rc = self._status(timeout)
        if rc is None:
            raise subprocess.TimeoutExpired("sandbox boot", timeout or 0.0)
        return rc

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        ready, _, _ = select.select([self.zygote.sock], [], [], timeout)
        if not ready:
            return None
        reply = _read_line(self.zygote.reader)
        if reply is None or "rc" not in reply:  # the zygote died: so did its child
            self.returncode = -signal.SIGKILL
            self.zygote.close()
        else:
            self.returncode = reply["rc"]
        self.zygote.busy.release()
        return self.returncode


def _read_line(reader) -> dict | None:
    line = reader.readline()
    return json.loads(line) if line.endswith(b"\n") else None


@atexit.register
def _close_zygote() -> None:
    if _zygote is not None and _zygote.owner == os.getpid():
        _zygote.close()


def _zygote_for_this_process() -> _Zygote | None:
    """This process's zygote, started on first use (a forked caller starts its own)."""
    global _zygote
    with _zygote_lock:
        if _zygote is not None and (_zygote.owner != os.getpid() or _zygote.proc.poll()
                                    is not None):
            _zygote = None
        if _zygote is None:
            try:
                _zygote = _Zygote()
            except OSError:
                return None
        return _zygote


def _collect(proc: subprocess.Popen, res_r: int, deadline: float, cap: int):
    """Read stdout/stderr/result until EOF, the deadline or the output cap; kill on the last two.
    Once the result pipe is closed and the boot process has exited, leftover writers of
    stdout/stderr (the fallback has no PID namespace) are not waited for."""
    bufs = {"out": bytearray(), "err": bytearray(), "res": bytearray()}
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    res_file = os.fdopen(res_r, "rb", buffering=0)
    sel.register(res_file, selectors.EVENT_READ, "res")
    why = ""
    res_open = True
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            why = why or "timeout"
            break
        if not res_open and proc.poll() is not None:
            left = min(left, 0.05)
        events = sel.select(timeout=min(left, 0.5))
        if not events and not res_open and proc.poll() is not None:
            break
        for key, _ in events:
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                res_open = res_open and key.data != "res"
                continue
            if key.data == "res":
                bufs["res"] += chunk[: max(0, 65536 - len(bufs["res"]))]
            else:
                bufs[key.data] += chunk
        if len(bufs["out"]) + len(bufs["err"]) > cap:
            why = "output_limit"
            break
    if why:
        _kill_group(proc)
    sel.close()
    for f in (proc.stdout, proc.stderr, res_file):
        f.close()
    return bufs, why


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _verdict(bufs, why: str, rc: int, nonce: str, n_tests: int, wall: float) -> SandboxResult:
    out = bufs["out"].decode("utf-8", "replace")
    err = bufs["err"].decode("utf-8", "replace")
    report = _parse_report(bufs["res"].decode("utf-8", "replace"), nonce, n_tests)
    isolation = tuple(x for x in (report or {}).get("isolation", ()) if x in LAYERS)
    if report is None:
        isolation = _parse_isolation(bufs["res"].decode("utf-8", "replace"))
    _note_missing(isolation)
    passed = report["passed"] if report else 0
    if why:
        return SandboxResult(why, passed, n_tests, why, out, err, wall, isolation)
    if report is None:
        if rc == BOOT_FAILED:
            return SandboxResult("error", 0, n_tests, "sandbox: " + _last_line(err), out, err,
                                 wall, isolation)  # fmt: skip
        return SandboxResult(_crash_status(rc), 0, n_tests, _last_line(err) or f"exit code {rc}",
                             out, err, wall, isolation)  # fmt: skip
    cand = report.get("candidate", {})
    loaded = cand.get("state") == "alive" or (n_tests > 0 and cand.get("state") != "load_error")
    if passed == n_tests and loaded:
        return SandboxResult("passed", passed, n_tests, "", out, err, wall, isolation)
    sig = cand.get("signal")
    if sig in (signal.SIGXCPU, signal.SIGKILL):
        status, detail = "timeout", f"candidate killed by {signal.Signals(sig).name}"
    elif cand.get("state") == "died" and passed == 0:
        status = "crashed"
        detail = f"candidate ended (exit {cand.get('exit')}, signal {sig}): {_last_line(err)}"
    else:
        status, detail = "failed", _last_line(err)
    return SandboxResult(status, passed, n_tests, detail, out, err, wall, isolation)


def _parse_report(text: str, nonce: str, n_tests: int) -> dict | None:
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if not isinstance(obj, dict) or obj.get("nonce") != nonce:
            continue
        passed = obj.get("passed")
        if type(passed) is not int or not 0 <= passed <= n_tests or obj.get("total") != n_tests:
            return None
        return obj
    return None


def _parse_isolation(text: str) -> tuple[str, ...]:
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "isolation":
            return tuple(p for p in parts[1].split(",") if p in LAYERS)
    return ()


def _crash_status(rc: int) -> str:
    sig = rc - 128 if rc > 128 else -rc if rc < 0 else 0
    return "timeout" if sig in (signal.SIGXCPU, signal.SIGKILL) else "crashed"


def _last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1][:300] if lines else ""


def _note_missing(isolation: tuple[str, ...]) -> None:
    missing = [x for x in LAYERS if x not in isolation and x not in _missing_noted]
    if missing:
        _missing_noted.update(missing)
        log.warning("sandbox: containment layers not available here: %s", ", ".join(missing))


# ----------------------------------------------------------------------------------------------
# Plain-data codec shared by both sides. ``encode`` matches exact types (a subclass is not
# plain); ``decode`` rebuilds values from builtins only.


class Handle:
    """An object of the program that is not plain data; it lives in the candidate process and can
    only be passed back to it (as an argument, or called). It equals only itself."""

    __slots__ = ("_link", "_id")

    def __init__(self, link, ident: int):
        self._link, self._id = link, ident

    def __call__(self, *args, **kwargs):
        return self._link.call(["h", self._id], args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate object #{self._id}>"


class Remote:
    """A callable the program defined, seen from the checker: calling it asks the candidate."""

    __slots__ = ("_link", "_name")

    def __init__(self, link, name: str):
        self._link, self._name = link, name

    def __call__(self, *args, **kwargs):
        return self._link.call(["g", self._name], args, kwargs)

    def __repr__(self) -> str:
        return f"<candidate function {self._name}>"


class RemoteError(Exception):
    """The candidate raised an exception that is not a builtin one, or broke the protocol."""


class CandidateGone(RemoteError):
    """The candidate process ended or stopped answering."""


def encode(value, handles: list | None = None, depth: int = 0):
    """Tagged JSON-able form of a plain value; non-plain objects become handle references when
    ``handles`` is a list (candidate side) and raise ``TypeError`` otherwise (checker side)."""
    import collections
    import decimal
    import fractions

    t = type(value)
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if value is None:
        return ["n"]
    if t is bool:
        return ["B", value]
    if t is int:
        return ["i", format(value, "x")]
    if t is float:
        return ["f", repr(value)]
    if t is str:
        return ["s", value]
    if t is complex:
        return ["c", repr(value.real), repr(value.imag)]
    if t is bytes:
        return ["y", value.hex()]
    if t is decimal.Decimal:
        return ["D", str(value)]
    if t is fractions.Fraction:
        return ["Q", str(value)]
    seq = {list: "l", tuple: "t", set: "S", frozenset: "F", collections.deque: "q"}.get(t)
    if seq is None and isinstance(value, tuple) and hasattr(t, "_fields"):
        seq = "t"  # a namedtuple compares as a tuple
    if seq is not None:
        return [seq, [encode(v, handles, depth + 1) for v in value]]
    mapping = {dict: "d", collections.OrderedDict: "o", collections.Counter: "C",
               collections.defaultdict: "d"}.get(t)  # fmt: skip
    if mapping is not None:
        return [mapping, [[encode(k, handles, depth + 1), encode(v, handles, depth + 1)]
                          for k, v in value.items()]]  # fmt: skip
    if t is type and BUILTIN_TYPES.get(getattr(value, "__name__", None)) is value:
        return ["T", value.__name__]
    if isinstance(value, Remote):
        return ["g", value._name]
    if isinstance(value, Handle):
        return ["h", value._id]
    if handles is None:
        raise TypeError(f"cannot pass a {t.__name__} to the candidate")
    handles.append(value)
    return ["h", len(handles) - 1]


def decode(obj, ref=None, depth: int = 0):
    """Inverse of :func:`encode`; ``ValueError`` for anything malformed. A handle (``"h"``) or
    program-name (``"g"``) reference becomes ``ref(tag, payload)``; without ``ref`` it is an error."""
    import collections
    import decimal
    import fractions

    if depth > MAX_DEPTH + 2:
        raise ValueError("value nested too deeply")
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], str):
        raise ValueError("malformed value")
    tag, rest = obj[0], obj[1:]

    def one(kind):
        if len(rest) != 1 or not isinstance(rest[0], kind):
            raise ValueError(f"malformed {tag!r} value")
        return rest[0]

    def items():
        return [decode(v, ref, depth + 1) for v in one(list)]

    def pairs():
        out = []
        for p in one(list):
            if not isinstance(p, list) or len(p) != 2:
                raise ValueError("malformed mapping")
            out.append((decode(p[0], ref, depth + 1), decode(p[1], ref, depth + 1)))
        return out

    try:
        if tag == "n" and not rest:
            return None
        if tag == "B":
            return one(bool)
        if tag == "i":
            return int(one(str), 16)
        if tag == "f":
            return float(one(str))
        if tag == "s":
            return one(str)
        if tag == "c" and len(rest) == 2 and all(isinstance(x, str) for x in rest):
            return complex(float(rest[0]), float(rest[1]))
        if tag == "y":
            return bytes.fromhex(one(str))
        if tag == "D":
            return decimal.Decimal(one(str))
        if tag == "Q":
            return fractions.Fraction(one(str))
        builders = {"l": list, "t": tuple, "S": set, "F": frozenset, "q": collections.deque}
        if tag in builders:
            return builders[tag](items())
        mappings = {"d": dict, "o": collections.OrderedDict, "C": collections.Counter}
        if tag in mappings:
            return mappings[tag](dict(pairs()))  # Counter(pairs) would count the pairs
        if tag == "T" and one(str) in BUILTIN_TYPES:
            return BUILTIN_TYPES[rest[0]]
        if ref is not None and tag == "h" and type(one(int)) is int:
            return ref(tag, rest[0])
        if ref is not None and tag == "g":
            return ref(tag, one(str))
    except (TypeError, ArithmeticError) as e:  # unhashable set item, bad Decimal text, ...
        raise ValueError(f"malformed {tag!r} value: {e}") from None
    raise ValueError(f"unknown value tag {tag!r}")


def _send(fd: int, obj) -> None:
    data = json.dumps(obj).encode("utf-8", "surrogatepass")
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return bytes(buf)


def _recv(fd: int, limit: int = MAX_MESSAGE):
    n = int.from_bytes(_read_exact(fd, 8), "big")
    if n > limit:
        raise ValueError(f"message of {n} bytes exceeds {limit}")
    return json.loads(_read_exact(fd, n).decode("utf-8", "surrogatepass"))


# ----------------------------------------------------------------------------------------------
# Boot side: runs as `python -I -S -B sandbox.py`, stdlib only, two frames on stdin.

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _boot() -> None:
    import importlib

    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the caller
    cfg = _recv(0, 1 << 30)  # only the first frame: the tests stay in the pipe
    if os.getppid() != cfg["caller_pid"]:
        os._exit(BOOT_FAILED)
    for name in PRELOAD:  # before any privilege drop or chroot; inherited by both forks
        importlib.import_module(name)
    applied = _isolate(cfg) if cfg["uids"] else []
    pid = os.fork()
    if pid == 0:
        try:
            _checker_init(cfg, applied)
        except BaseException as e:  # noqa: BLE001 - report any setup failure, then die
            os.write(2, f"sandbox setup failed: {type(e).__name__}: {e}\n".encode())
        os._exit(BOOT_FAILED)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _zygote_main(caller: int) -> None:
    """The zygote (see the parent side): import PRELOAD, then fork one boot process per request
    on fd 0 and report its pid and, when it has ended, its exit code."""
    import importlib
    import socket

    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the caller
    if os.getppid() != caller:
        os._exit(BOOT_FAILED)
    for name in PRELOAD:
        importlib.import_module(name)
    ctrl = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    ctrl.sendall(b'{"ready": true}\n')
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctrl, 1 << 16, 4)
        except OSError:
            os._exit(0)
        if not msg.endswith(b"\n"):
            os._exit(0)  # the caller closed its end (or broke the protocol)
        req = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                os.closerange(4, 65536)  # the control socket, the received originals
                os.chdir(req["workdir"])
                os.environ.clear()
                os.environ.update(req["env"])
                _boot()
            except BaseException as e:  # noqa: BLE001 - report, then fail like a boot failure
                os.write(2, f"sandbox zygote child failed: {type(e).__name__}: {e}\n".encode())
            os._exit(BOOT_FAILED)
        for fd in fds:
            os.close(fd)
        ctrl.sendall((json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        ctrl.sendall((json.dumps({"rc": code}) + "\n").encode())


def _isolate(cfg: dict) -> list[str]:
    """Enter new namespaces (root only); return the layers applied. Each may fail alone."""
    libc = _libc()
    applied = []
    if libc.unshare(CLONE_NEWNET) == 0:
        applied.append("netns")
    if libc.unshare(CLONE_NEWNS) == 0 and _readonly_mounts(libc, cfg):
        applied.append("mountns")
    if libc.unshare(CLONE_NEWPID) == 0:
        applied.append("pidns")
    applied.append("uid")
    return applied


def _readonly_mounts(libc, cfg: dict) -> bool:
    """In the new mount namespace: a private tmpfs on the work dir, everything else read-only."""
    work = cfg["workdir"].encode()
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    opts = f"size={cfg['limits']['tmpfs_kb']}k,mode=0755".encode()
    if libc.mount(b"tmpfs", work, b"tmpfs", MS_NOSUID | MS_NODEV, opts) != 0:
        return False
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    ok = True
    for fields in mounts:
        point, options = _unescape(fields[4]), fields[5].split(",")
        if point == cfg["workdir"] or "ro" in options:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID
        flags |= (MS_NODEV if "nodev" in options else 0) | (MS_NOEXEC if "noexec" in options else 0)
        if libc.mount(None, point.encode(), None, flags, None) != 0 and point in ("/", "/tmp"):
            ok = False
    return ok


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, ch)
    return path


def _limit(lim: dict, memory_mb: int, processes: int) -> None:
    import resource

    for rl, value in (
        (resource.RLIMIT_CPU, lim["cpu_s"]),
        (resource.RLIMIT_FSIZE, lim["file_size_kb"] * 1024),
        (resource.RLIMIT_NPROC, processes),
        (resource.RLIMIT_NOFILE, lim["open_files"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_AS, memory_mb * 1024 * 1024),
    ):
        resource.setrlimit(rl, (value, value + 1 if rl == resource.RLIMIT_CPU else value))


def _drop(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _checker_init(cfg: dict, applied: list[str]) -> None:
    """PID 1 of the sandbox (root mode): fresh /proc, the candidate's root, fork the candidate,
    then read the tests and become the checker."""
    import socket

    layers = list(applied)
    uids = cfg["uids"]
    root = cfg["workdir"]
    chroot = False
    if "mountns" in applied:
        os.mkdir(os.path.join(root, "work"), 0o700)
        os.chown(os.path.join(root, "work"), uids[0], uids[0])
        os.mkdir(os.path.join(root, "proc"), 0o555)
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        libc = _libc()
        if (
            "pidns" in applied
            and libc.mount(b"proc", b"/proc", b"proc", flags, None) == 0
            and libc.mount(b"proc", os.path.join(root, "proc").encode(), b"proc", flags, None) == 0
        ):
            layers.append("proc")
        chroot = True
        layers.append("chroot")
    elif uids:
        os.chown(root, uids[0], uids[0])
    if not uids:  # same uid as the candidate: keep it out of our memory and fds from the start
        _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    mine, theirs = socket.socketpair()
    mine.set_inheritable(False)
    pid = os.fork()
    if pid == 0:
        mine.close()
        try:
            _candidate(cfg, theirs.detach(), chroot)
        except BaseException as e:  # noqa: BLE001 - setup failure: no answer, the checker sees EOF
            os.write(2, f"sandbox candidate setup failed: {type(e).__name__}: {e}\n".encode())
        os._exit(BOOT_FAILED)
    theirs.close()
    os.chdir("/")
    second = _recv(0, 1 << 30)  # the tests, read only now: the candidate was forked without them
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    lim = cfg["limits"]
    _limit({**lim, "cpu_s": lim["cpu_s"] + 2}, max(lim["memory_mb"], 512), 8)
    boot = os.getppid()
    if uids:
        _drop(uids[1])
    libc = _libc()
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # a uid change resets both of these
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with boot (and so the caller)
    if os.getppid() != boot:
        os._exit(BOOT_FAILED)
    _checker(cfg, second, mine.detach(), pid, layers)


# ---- candidate ---------------------------------------------------------------------------------


def _candidate(cfg: dict, fd: int, chroot: bool) -> None:
    """Set up the untrusted side (no result pipe, no stdin, no tests), then serve requests."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if fd != 3:
        os.dup2(fd, 3)
        os.close(fd)
        fd = 3
    os.closerange(4, 65536)  # the result pipe and anything else inherited
    lim = cfg["limits"]
    uids = cfg["uids"]
    _limit(lim, lim["memory_mb"], lim["processes"])
    if chroot:
        os.chroot(cfg["workdir"])
        os.chdir("/work")
        os.environ["HOME"] = os.environ["TMPDIR"] = "/work"
    else:
        os.chdir(cfg["workdir"])
    if uids:
        _drop(uids[0])
    parent = os.getppid()
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the checker
    if os.getppid() != parent:
        os._exit(BOOT_FAILED)
    _serve(fd, cfg["mode"], cfg["program"], cfg["setup"], cfg["imports"])


def _serve(fd: int, mode: str, program: str, setup: str, imports: str) -> None:
    import builtins
    import traceback

    ns: dict = {"__name__": "solution", "__builtins__": builtins}
    handles: list = []
    if mode == "tests":
        try:
            for code, name in ((imports, "imports.py"), (program, "solution.py"),
                               (setup, "setup.py")):  # fmt: skip
                if code:
                    exec(compile(code, name, "exec"), ns)
        except BaseException as e:  # noqa: BLE001 - the program itself failed: report, end
            traceback.print_exc()
            _flush()
            _send(fd, ["load_error", type(e).__name__, str(e)[:300]])
            os._exit(0)
        _send(fd, ["ready", _globals_info(ns, handles)])
    else:
        _send(fd, ["ready", {}])
    while True:
        try:
            msg = _recv(fd)
        except (EOFError, OSError, ValueError):
            os._exit(0)
        if not isinstance(msg, list) or not msg or msg[0] == "bye":
            os._exit(0)
        try:
            if msg[0] == "call":
                reply = ["ok", encode(_call(ns, handles, msg), handles)]
            elif msg[0] == "stdio":
                reply = ["ok", _run_stdio(program, msg[1])]
            else:
                raise ValueError(f"unknown request {msg[0]!r}")
        except BaseException as e:  # noqa: BLE001 - reported to the checker as this call's outcome
            _flush()
            reply = ["exc", type(e).__name__, str(e)[:300]]
        _flush()
        _send(fd, reply)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - the program may have broken its streams
            pass


def _globals_info(ns: dict, handles: list) -> dict:
    import types

    info = {}
    for name, value in list(ns.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if isinstance(value, types.ModuleType):
            info[name] = ["module", value.__name__]
        elif callable(value):
            info[name] = ["call"]
        else:
            mark = len(handles)
            try:
                if not _small(value, MAX_GLOBAL_ITEMS):  # big tables stay on this side
                    raise ValueError("too large to copy")
                enc = encode(value, handles)
                if len(json.dumps(enc)) > MAX_GLOBAL:
                    raise ValueError("too large to copy")
                info[name] = ["value", enc]
            except (ValueError, RecursionError):
                del handles[mark:]
                handles.append(value)
                info[name] = ["value", ["h", len(handles) - 1]]
    return info


def _small(value, limit: int) -> bool:
    """Whether ``value`` holds at most ``limit`` items in all (counted with an early exit)."""
    stack, seen = [value], 0
    while stack:
        v = stack.pop()
        seen += 1
        if seen > limit:
            return False
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
    return True


def _call(ns: dict, handles: list, msg: list):
    def ref(tag, payload):
        return handles[payload] if tag == "h" else ns[payload]

    _, target, args, kwargs = msg
    fn = decode(target, ref)
    return fn(*[decode(a, ref) for a in args], **{k: decode(v, ref) for k, v in kwargs.items()})


def _run_stdio(program: str, stdin_text: str) -> dict:
    """Run the program as ``__main__`` in a forked child with ``stdin_text`` on stdin."""
    import builtins
    import traceback

    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    _flush()
    pid = os.fork()
    if pid == 0:
        os.close(in_w)
        os.close(out_r)
        os.dup2(in_r, 0)
        os.dup2(out_w, 1)
        os.close(in_r)
        os.close(out_w)
        code = 0
        try:
            exec(compile(program, "solution.py", "exec"),
                 {"__name__": "__main__", "__builtins__": builtins})  # fmt: skip
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - a crash: traceback on stderr, exit 1
            traceback.print_exc()
            code = 1
        _flush()
        os._exit(code)
    os.close(in_r)
    os.close(out_w)
    data = stdin_text.encode()

    def feed() -> None:
        try:
            with os.fdopen(in_w, "wb") as f:
                f.write(data)
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    out = bytearray()
    while True:
        chunk = os.read(out_r, 65536)
        if not chunk:
            break
        out += chunk
        if len(out) > MAX_MESSAGE // 2:
            os.kill(pid, signal.SIGKILL)
            break
    os.close(out_r)
    _, status = os.waitpid(pid, 0)
    return {"stdout": out.decode("utf-8", "replace"), "exit": os.waitstatus_to_exitcode(status)}


# ---- checker -----------------------------------------------------------------------------------


class _Link:
    """The checker's end of the candidate channel."""

    def __init__(self, fd: int):
        self.fd = fd
        self.gone = ""

    def request(self, msg):
        if self.gone:
            raise CandidateGone(self.gone)
        try:
            _send(self.fd, msg)
            return _recv(self.fd)
        except (EOFError, OSError, ValueError) as e:
            self.gone = f"candidate stopped answering ({type(e).__name__}: {e})"
            raise CandidateGone(self.gone) from None

    def ref(self, tag: str, payload):
        return Handle(self, payload) if tag == "h" else Remote(self, payload)

    def call(self, target, args, kwargs):
        msg = ["call", target, [encode(a) for a in args],
               {str(k): encode(v) for k, v in kwargs.items()}]  # fmt: skip
        return self.reply(self.request(msg))

    def reply(self, reply):
        import builtins

        if isinstance(reply, list) and len(reply) == 2 and reply[0] == "ok":
            try:
                return decode(reply[1], self.ref)
            except (ValueError, RecursionError) as e:
                raise RemoteError(f"undecodable reply: {e}") from None
        if (
            isinstance(reply, list)
            and len(reply) == 3
            and reply[0] == "exc"
            and all(isinstance(x, str) for x in reply[1:])
        ):
            kind = getattr(builtins, reply[1], None)
            if (
                isinstance(kind, type)
                and issubclass(kind, Exception)
                and kind not in (StopIteration, StopAsyncIteration)
            ):
                raise kind(reply[2])
            raise RemoteError(f"{reply[1]}: {reply[2]}")
        raise RemoteError("malformed reply")


def _checker(cfg: dict, second: dict, fd: int, cand_pid: int, layers: list[str]) -> None:
    import builtins
    import traceback

    result_fd = cfg["result_fd"]
    link = _Link(fd)
    total = len(second["tests"]) if cfg["mode"] == "tests" else len(second["cases"])
    passed = 0
    state = "ready"
    try:
        hello = _recv(fd)
    except (EOFError, OSError, ValueError):
        hello, state = None, "died"
    if isinstance(hello, list) and hello[:1] == ["load_error"]:
        state = "load_error"
        print(f"program failed to load: {hello[1:2]}", file=sys.stderr)
    elif not (isinstance(hello, list) and hello[:1] == ["ready"] and len(hello) == 2
              and isinstance(hello[1], dict)):  # fmt: skip
        state = "died"
    if state == "ready" and cfg["mode"] == "tests":
        ns: dict = {"__name__": "tests", "__builtins__": builtins}
        for name, kind in hello[1].items():
            try:
                if kind == ["call"]:
                    ns[name] = Remote(link, name)
                elif kind[0] == "module" and kind[1] in sys.modules:
                    ns[name] = sys.modules[kind[1]]
                elif kind[0] == "value":
                    ns[name] = decode(kind[1], link.ref)
            except (ValueError, TypeError, IndexError, RecursionError):
                continue
        try:
            if second["imports"]:
                exec(compile(second["imports"], "imports.py", "exec"), ns)
        except BaseException:  # noqa: BLE001 - a broken benchmark import fails every test
            traceback.print_exc()
        else:
            for i, test in enumerate(second["tests"]):
                try:
                    exec(compile(test, f"test_{i}", "exec"), ns)
                    passed += 1
                except BaseException:  # noqa: BLE001 - a failing test of any kind counts as failed
                    traceback.print_exc()
    elif state == "ready":
        for i, (stdin_text, want) in enumerate(second["cases"]):
            try:
                got = link.request(["stdio", stdin_text])
                if not (isinstance(got, list) and len(got) == 2 and got[0] == "ok"
                        and isinstance(got[1], dict)):  # fmt: skip
                    raise RemoteError(f"case {i}: {got[1:] if isinstance(got, list) else got}")
                out, code = got[1].get("stdout"), got[1].get("exit")
                if not isinstance(out, str):
                    raise RemoteError(f"case {i}: malformed output")
                if code != 0:
                    raise RemoteError(f"case {i}: program exited with {code}")
                if not same_output(out, want):
                    raise AssertionError(f"case {i}: wrong output")
                passed += 1
            except BaseException:  # noqa: BLE001 - counted as failed
                traceback.print_exc(limit=0)
    cand = _candidate_status(link, cand_pid, state)
    _flush()
    report = {"nonce": second["nonce"], "passed": passed, "total": total,
              "candidate": cand, "isolation": layers}  # fmt: skip
    os.write(result_fd, (json.dumps(report) + "\n").encode())
    try:
        os.kill(cand_pid, signal.SIGKILL)
    except OSError:
        pass
    os._exit(0)


def _candidate_status(link: _Link, pid: int, state: str) -> dict:
    """How the candidate ended (if it did): exit code / signal."""
    if state == "ready" and not link.gone:
        try:
            _send(link.fd, ["bye"])
        except OSError:
            pass
        return {"state": "alive"}
    deadline = time.monotonic() + 1.0
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return {"state": "died" if state != "load_error" else state}
        if done:
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            return {"state": "died" if state != "load_error" else state, "exit": code,
                    "signal": sig}  # fmt: skip
        if time.monotonic() > deadline:
            return {"state": state}
        time.sleep(0.01)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--zygote"]:
        _zygote_main(int(sys.argv[2]))
    else:
        _boot()

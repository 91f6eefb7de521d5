"""Run an untrusted Python program and its tests in a contained subprocess.

``run_tests(program, tests, limits) -> SandboxResult``. The program and then each test string
(``"assert f(1) == 2"``) run in one namespace (``__name__ == "solution"``, so ``if __name__ ==
"__main__":`` blocks do not run). A run passes only if the harness reports every test passed
through a private result pipe, tagged with a random nonce: a program that exits early
(``os._exit(0)``, ``sys.exit``) or crashes never reports, so it fails.

Containment, in layers (each one applied where the kernel allows; a missing layer is logged
once per process and listed in ``SandboxResult.isolation``):

1. always: a new session (the wall timeout SIGKILLs the whole process group), a scrubbed
   environment (PATH, LANG, HOME/TMPDIR = the work dir; nothing of the caller's), a fresh
   temporary work dir as cwd, stdin = /dev/null, stdout/stderr read through pipes with a byte
   cap (more output -> the group is killed), rlimits: CPU seconds, address space, file size,
   processes, open files, no core dumps;
2. as root (``unshare``): a network namespace with no interfaces up (no network, not even
   127.0.0.1); a mount namespace where every mount is read-only except a small private tmpfs
   mounted over the work dir (writes outside it fail, and nothing it writes reaches the host);
   a PID namespace (when its first process ends, the kernel kills every process left in it);
3. as root: the program runs under a fresh unprivileged uid/gid picked at random per run, so
   ``RLIMIT_NPROC`` counts only its own processes (root ignores that limit) and it can signal
   no other process and read no other process's environment.

Because the standard library may sit in a directory the unprivileged uid cannot read, the
modules in ``PRELOAD`` are imported before privileges are dropped; other imports may fail.

How it runs: the parent starts ``python -I -S -B sandbox.py`` (this file, stdlib-only imports)
and sends a JSON config on stdin. That boot process (still root) sets up the namespaces and
forks; the child applies rlimits, drops to the run's uid and runs the harness. Known limits:
a program that returns objects whose ``__eq__`` always holds can pass ``==`` tests, and a
program that searches its own memory can find the nonce.

Example::

    r = run_tests("def f(x):\\n    return x + 1\\n", ["assert f(1) == 2"])
    r.status, r.tests_passed, r.tests_total   # ("passed", 1, 1)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

PRELOAD = (
    "array", "bisect", "cmath", "collections", "collections.abc", "copy", "dataclasses",
    "datetime", "decimal", "enum", "fractions", "functools", "heapq", "itertools", "json",
    "math", "numbers", "operator", "random", "re", "statistics", "string", "struct",
    "textwrap", "typing", "unicodedata",
    "encodings.idna", "socket",  # importable on purpose: the network namespace is what must stop it (tested)
)  # fmt: skip
LAYERS = ("netns", "mountns", "pidns", "uid")
BOOT_FAILED = 70  # boot's exit code when it could not start the program (a sandbox bug)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits. Defaults suit the small functions of the code domain."""

    cpu_s: int = 2  # RLIMIT_CPU: CPU seconds of the process (SIGXCPU, then SIGKILL)
    wall_s: float = 5.0  # wall clock for the whole run, then SIGKILL to the process group
    memory_mb: int = 256  # RLIMIT_AS: address space of each process
    file_size_kb: int = 1024  # RLIMIT_FSIZE: largest file it may write
    processes: int = 16  # RLIMIT_NPROC: processes of the run's uid (needs the uid layer)
    open_files: int = 64  # RLIMIT_NOFILE
    output_kb: int = 64  # stdout + stderr bytes kept; more kills the run
    tmpfs_kb: int = 4096  # size of the private work dir (mount namespace layer)


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
    program: str, tests: list[str] | tuple[str, ...], limits: SandboxLimits | None = None
) -> SandboxResult:
    """Run ``program`` then each test in the sandbox; see the module docstring."""
    limits = limits or SandboxLimits()
    workdir = tempfile.mkdtemp(prefix="ringlite-sbx-")
    try:
        return _run(program, list(tests), limits, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(program: str, tests: list[str], limits: SandboxLimits, workdir: str) -> SandboxResult:
    nonce = secrets.token_hex(16)
    uid = 100_000 + secrets.randbelow(60_000) if os.geteuid() == 0 else -1
    if uid > 0:
        os.chown(workdir, uid, uid)
    res_r, res_w = os.pipe()
    config = {"program": program, "tests": tests, "limits": asdict(limits), "nonce": nonce,
              "result_fd": res_w, "workdir": workdir, "uid": uid, "caller_pid": os.getpid()}  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8",
           "HOME": workdir, "TMPDIR": workdir}  # fmt: skip
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", os.path.abspath(__file__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(res_w,), cwd=workdir, env=env, start_new_session=True,
        )  # fmt: skip
    except BaseException:
        os.close(res_r)
        raise
    finally:
        os.close(res_w)
    try:
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    streams, why = _collect(proc, res_r, t0 + limits.wall_s, limits.output_kb * 1024)
    rc = proc.wait()
    wall = time.monotonic() - t0
    return _verdict(streams, why, rc, nonce, len(tests), wall)


def _collect(proc: subprocess.Popen, res_r: int, deadline: float, cap: int):
    """Read stdout/stderr/result until EOF, the deadline or the output cap; kill on the last two."""
    bufs = {"out": bytearray(), "err": bytearray(), "res": bytearray()}
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    res_file = os.fdopen(res_r, "rb", buffering=0)
    sel.register(res_file, selectors.EVENT_READ, "res")
    why = ""
    while sel.get_map():
        left = deadline - time.monotonic()
        if left <= 0:
            why = why or "timeout"
            break
        for key, _ in sel.select(timeout=min(left, 0.5)):
            chunk = os.read(key.fileobj.fileno(), 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            if key.data == "res":
                bufs["res"] += chunk[:4096]
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
    except ProcessLookupError:
        pass


def _verdict(bufs, why: str, rc: int, nonce: str, n_tests: int, wall: float) -> SandboxResult:
    out = bufs["out"].decode("utf-8", "replace")
    err = bufs["err"].decode("utf-8", "replace")
    isolation, passed, reported = _parse_result(bufs["res"].decode("ascii", "replace"), nonce)
    _note_missing(isolation)
    if why:
        status, detail = why, why
    elif rc == BOOT_FAILED and not reported:
        status, detail = "error", "sandbox: " + _last_line(err)
    elif reported:
        status = "passed" if passed == n_tests else "failed"
        detail = "" if status == "passed" else _last_line(err)
    else:
        status, detail = _crash_status(rc), _last_line(err) or f"exit code {rc}"
    return SandboxResult(status, passed, n_tests, detail, out, err, wall, isolation)


def _parse_result(text: str, nonce: str) -> tuple[tuple[str, ...], int, bool]:
    isolation: tuple[str, ...] = ()
    passed, reported = 0, False
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "isolation":
            isolation = tuple(p for p in parts[1].split(",") if p in LAYERS)
        elif len(parts) == 2 and parts[0] == nonce and parts[1].isdigit():
            passed, reported = int(parts[1]), True
    return isolation, passed, reported


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
# Boot side: runs as `python -I -S -B sandbox.py`, stdlib only, config JSON on stdin.

CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG = 1


def _boot() -> None:
    import ctypes

    # Die with the caller (e.g. a pool worker killed for a timeout): the PID namespace follows.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    cfg = json.loads(sys.stdin.buffer.read())
    if os.getppid() != cfg["caller_pid"]:
        os._exit(BOOT_FAILED)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    applied = _isolate(cfg) if cfg["uid"] > 0 else []
    os.write(cfg["result_fd"], f"isolation {','.join(applied) or '-'}\n".encode())
    pid = os.fork()
    if pid == 0:
        try:
            _child(cfg, "uid" in applied)
        except BaseException as e:  # noqa: BLE001 - report any setup failure, then die
            os.write(2, f"sandbox child setup failed: {type(e).__name__}: {e}\n".encode())
        os._exit(BOOT_FAILED)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _isolate(cfg: dict) -> list[str]:
    """Enter new namespaces (root only); return the layers applied. Each may fail alone."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
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
    work, uid = cfg["workdir"].encode(), cfg["uid"]
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return False
    opts = f"size={cfg['limits']['tmpfs_kb']}k,mode=0700,uid={uid},gid={uid}".encode()
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


def _child(cfg: dict, drop_uid: bool) -> None:
    import ctypes
    import importlib
    import resource

    boot_pid = os.getppid()
    for name in PRELOAD:
        importlib.import_module(name)
    lim = cfg["limits"]
    for rl, value in (
        (resource.RLIMIT_CPU, lim["cpu_s"]),
        (resource.RLIMIT_FSIZE, lim["file_size_kb"] * 1024),
        (resource.RLIMIT_NPROC, lim["processes"]),
        (resource.RLIMIT_NOFILE, lim["open_files"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_AS, lim["memory_mb"] * 1024 * 1024),
    ):
        resource.setrlimit(rl, (value, value + 1 if rl == resource.RLIMIT_CPU else value))
    if drop_uid:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
    # Die with boot. Set after setuid, which clears the parent-death signal.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != boot_pid:
        os._exit(BOOT_FAILED)
    os.chdir(cfg["workdir"])
    _harness(cfg["program"], cfg["tests"], cfg["result_fd"], cfg.pop("nonce"))


def _harness(program: str, tests: list[str], fd: int, nonce: str) -> None:
    import builtins
    import traceback

    write, flush_exit, print_exc = os.write, os._exit, traceback.print_exc
    ns: dict = {"__name__": "solution", "__builtins__": builtins}
    passed = 0
    try:
        exec(compile(program, "solution.py", "exec"), ns)
        for i, test in enumerate(tests):
            try:
                exec(compile(test, f"test_{i}", "exec"), ns)
                passed += 1
            except BaseException:  # noqa: BLE001 - a failing test of any kind counts as failed
                print_exc()
    except BaseException:  # noqa: BLE001 - the program itself failed: no test passes
        print_exc()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001 - the program may have broken its streams
            pass
    write(fd, f"{nonce} {passed}\n".encode())
    flush_exit(0)


if __name__ == "__main__":
    _boot()

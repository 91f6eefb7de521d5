"""Wall time of one sandboxed execution: this tree's sandbox against a previous revision's, run
alternately in the same process so both see the same machine load.

The previous implementation is read from git (``git show REV:pipeline/verify/sandbox.py``) into a
temporary file and imported from there (it is stdlib-only and runs itself as a script), so no old
code needs to stay in the package. Workloads: ``call`` (a one-line function, three ``assert f(x) ==
y`` tests: the pipeline's code tasks) and ``humaneval`` (a ``check(candidate)`` function with ten
asserts). Prints the median and 90th percentile wall seconds per execution and new/old ratios.

Run, record, and render the record into docs/verify.md (between its ``sandbox-cost`` markers)::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/perf/sandbox_cost.py --rev main --n 30 \
        --json reports/perf/sandbox_cost.json
    .venv/bin/python scripts/perf/sandbox_cost.py --page [--check]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from results_page import with_block, write_or_check  # noqa: E402

from pipeline.atomic import write_json  # noqa: E402
from pipeline.verify import sandbox as new  # noqa: E402

RECORD = ROOT / "reports/perf/sandbox_cost.json"
PAGE = ROOT / "docs/verify.md"
BEGIN, END = "<!-- sandbox-cost:begin -->", "<!-- sandbox-cost:end -->"

PROGRAM = "def f(x):\n    return 2 * x + 1\n"
WORKLOADS = {
    "call": (PROGRAM, ["assert f(1) == 3", "assert f(2) == 5", "assert f(-4) == -7"]),
    "humaneval": (PROGRAM, ["def check(candidate):\n"
                            + "".join(f"    assert candidate({i}) == {2 * i + 1}\n"
                                      for i in range(10))
                            + "check(f)\n"]),
}  # fmt: skip


def load_old(rev: str, workdir: Path):
    """The sandbox module as of ``rev`` (imported from a temporary copy)."""
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:pipeline/verify/sandbox.py"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    path = workdir / "sandbox_previous.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("sandbox_previous", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def timed(mod, program: str, tests: list[str]) -> float:
    t0 = time.perf_counter()
    r = mod.run_tests(program, tests, mod.SandboxLimits())
    wall = time.perf_counter() - t0
    if r.status != "passed":
        raise RuntimeError(f"{mod.__name__}: expected a pass, got {r.status}: {r.detail}")
    return wall


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def measure(rev: str, n: int) -> dict:
    """Both implementations, alternately, on every workload: the record's figures."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = load_old(rev, Path(tmp))
        for name, (program, tests) in WORKLOADS.items():
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(2):  # warm both paths
                timed(old, program, tests), timed(new, program, tests)
            for _ in range(n):  # alternate, so load changes hit both alike
                times["old"].append(timed(old, program, tests))
                times["new"].append(timed(new, program, tests))
            row = {}
            for k, v in times.items():
                row[f"{k}_median_s"] = statistics.median(v)
                row[f"{k}_p90_s"] = sorted(v)[int(0.9 * (len(v) - 1))]
            row["ratio"] = row["new_median_s"] / row["old_median_s"]
            out[name] = row
    return out


def page_block(rec: dict) -> str:
    lines = ["| workload | previous, median s | p90 s | this sandbox, median s | p90 s | "
             "this / previous |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in rec["workloads"].items():
        lines.append(f"| {name} | {r['old_median_s']:.3f} | {r['old_p90_s']:.3f} | "
                     f"{r['new_median_s']:.3f} | {r['new_p90_s']:.3f} | {r['ratio']:.2f} |")
    run = rec["run"]
    lines += ["", f"`reports/perf/sandbox_cost.json`: this tree at commit `{run['commit']}` "
              f"against `{run['rev']}` (`{run['rev_commit']}`: {run['rev_subject']}), "
              f"{run['n']} executions each, {run['date']}, {run['cpu_count']} cores, load average "
              f"(1, 5, 15 min) {', '.join(map(str, run['load_avg_start']))} at the start "
              "(about 1 = the benchmark alone; more: other work shared the cores and slowed "
              "both sides). "
              f"Command: `{run['command']}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="main", help="git revision of the previous implementation")
    ap.add_argument("--n", type=int, default=30, help="executions per implementation and workload")
    ap.add_argument("--json", default=None, help="write the record here")
    ap.add_argument("--page", action="store_true",
                    help="render reports/perf/sandbox_cost.json into docs/verify.md and exit")
    ap.add_argument("--check", action="store_true", help="with --page: exit 1 if it is stale")
    args = ap.parse_args(argv)
    if args.page:
        block = f"{BEGIN}\n{page_block(json.loads(RECORD.read_text()))}\n{END}"
        new_text = with_block(PAGE.read_text(), block, "docs/verify.md", BEGIN, END)
        return write_or_check({PAGE: new_text}, args.check,
                              "scripts/perf/sandbox_cost.py --page")
    start = [round(x, 2) for x in os.getloadavg()]
    workloads = measure(args.rev, args.n)
    print(f"{'workload':<10}{'impl':>6}{'median s':>10}{'p90 s':>8}")
    for name, r in workloads.items():
        for k in ("old", "new"):
            print(f"{name:<10}{k:>6}{r[f'{k}_median_s']:>10.3f}{r[f'{k}_p90_s']:>8.3f}")
        print(f"{name:<10}{'ratio':>6}{r['ratio']:>10.2f}  (new / old median)")
    if args.json:
        dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
        cmd = " ".join(["OMP_NUM_THREADS=1 .venv/bin/python scripts/perf/sandbox_cost.py",
                        *(sys.argv[1:] if argv is None else argv)])
        write_json(Path(args.json), {"run": {
            "commit": git("rev-parse", "--short=10", "HEAD") + dirty, "rev": args.rev,
            "rev_commit": git("rev-parse", "--short=10", args.rev),
            "rev_subject": git("log", "-1", "--format=%s", args.rev)[:80],
            "n": args.n, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
            "load_avg_start": start, "command": cmd}, "workloads": workloads})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

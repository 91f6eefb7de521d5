"""Wall time of one sandboxed execution: this tree's sandbox against a previous revision's, run
alternately in the same process so both see the same machine load.

The previous implementation is read from git (``git show REV:pipeline/verify/sandbox.py``) into a
temporary file and imported from there (it is stdlib-only and runs itself as a script), so no old
code needs to stay in the package. Workloads: ``call`` (a one-line function, three ``assert f(x) ==
y`` tests: the pipeline's code tasks) and ``humaneval`` (a ``check(candidate)`` function with ten
asserts). Prints the median and 90th percentile wall seconds per execution and new/old ratios.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/perf/sandbox_cost.py --rev main --n 30
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.verify import sandbox as new  # noqa: E402

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="main", help="git revision of the previous implementation")
    ap.add_argument("--n", type=int, default=30, help="executions per implementation and workload")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        old = load_old(args.rev, Path(tmp))
        print(f"{'workload':<10}{'impl':>6}{'median s':>10}{'p90 s':>8}")
        for name, (program, tests) in WORKLOADS.items():
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(2):  # warm both paths
                timed(old, program, tests), timed(new, program, tests)
            for _ in range(args.n):  # alternate, so load changes hit both alike
                times["old"].append(timed(old, program, tests))
                times["new"].append(timed(new, program, tests))
            med = {k: statistics.median(v) for k, v in times.items()}
            for k in ("old", "new"):
                p90 = sorted(times[k])[int(0.9 * (len(times[k]) - 1))]
                print(f"{name:<10}{k:>6}{med[k]:>10.3f}{p90:>8.3f}")
            print(f"{name:<10}{'ratio':>6}{med['new'] / med['old']:>10.2f}  (new / old median)")


if __name__ == "__main__":
    main()

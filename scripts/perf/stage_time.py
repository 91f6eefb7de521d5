"""A pipeline stage's wall time at this checkout against another commit, back to back.

    .venv/bin/python scripts/perf/stage_time.py --stage sft --baseline HEAD~1 [--rounds 2]

The baseline commit is checked out into a temporary git worktree; both run the stage's own
``dvc.yaml`` command on this checkout's inputs (the worktree gets symlinks to them), with the
command's outputs (``--out``, ``--out-dir``, ``--report-dir``) sent to a scratch folder, so
the checkout's DVC outputs are left alone. Runs alternate (current, baseline, current, ...),
each a fresh process tracking to its own scratch MLflow store, so that a slow stretch of a
shared machine falls on both sides. Prints every run's seconds, each side's best and median,
the ratio of the medians, and whether the two sides wrote bit-identical files (same relative
paths, same bytes, for weights and data files: metrics and plots hold timings). ``--json`` writes the figures.

Run it with the pipeline's inputs in place (``dvc pull`` or ``dvc repro`` up to the stage).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OUT_FLAGS = ("--out", "--out-dir", "--report-dir")
COMPARED = (".safetensors", ".parquet", ".jsonl")


def stage_command(stage: str) -> tuple[list[str], list[str]]:
    """(argv of the stage's dvc.yaml command, its declared dependencies that are data)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].get(stage)
    if spec is None:
        raise SystemExit(f"dvc.yaml: no stage {stage!r}")
    argv = shlex.split(" ".join(spec["cmd"]) if isinstance(spec["cmd"], list) else spec["cmd"])
    deps = [d for d in spec.get("deps", []) if not str(d).startswith(("pipeline", "scripts"))]
    return argv, deps


def redirect_outputs(argv: list[str], scratch: Path) -> list[str]:
    """``argv`` with every output flag's value moved under ``scratch``."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg in OUT_FLAGS:
            out[i + 1] = str(scratch / out[i + 1].replace("/", "_"))
    if out[0] == "python":
        out[0] = sys.executable
    return out


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every weight and data file under ``folder`` by relative path (metrics and
    plots hold timings, so they differ run to run)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in COMPARED:
            files[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def run_once(argv: list[str], cwd: Path, scratch: Path, pythonpath: str | None) -> float:
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{scratch / 'mlflow.db'}"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    with open(scratch / "stage.log", "w") as log:
        subprocess.run(redirect_outputs(argv, scratch), cwd=cwd, env=env, check=True,
                       stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", required=True)
    ap.add_argument("--baseline", required=True, help="a commit, e.g. HEAD~1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    cmd, deps = stage_command(args.stage)
    commit = subprocess.run(["git", "rev-parse", args.baseline], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    current = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="stage_time_"))
    tree = work / "baseline"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT,
                   check=True, capture_output=True)
    try:
        for dep in deps:  # the baseline reads this checkout's inputs
            target = tree / dep
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to((ROOT / dep).resolve())
        sides = {"current": (ROOT, None), "baseline": (tree, str(tree))}
        seconds: dict[str, list[float]] = {s: [] for s in sides}
        files: dict[str, dict[str, str]] = {}
        for r in range(args.rounds):
            for side, (cwd, path) in sides.items():
                scratch = work / f"{side}_out"
                secs = run_once(cmd, cwd, scratch, path)
                seconds[side].append(round(secs, 1))
                files[side] = digest(scratch)
                print(f"round {r + 1} {side:8s} {secs:7.1f} s", flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    med = {s: round(statistics.median(v), 1) for s, v in seconds.items()}
    result = {
        "stage": args.stage, "current": current, "baseline": commit, "seconds": seconds,
        "best": {s: min(v) for s, v in seconds.items()}, "median": med,
        "ratio_baseline_over_current": round(med["baseline"] / med["current"], 3),
        "identical_outputs": files["current"] == files["baseline"],
        "files_compared": len(files["current"]),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

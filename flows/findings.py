"""The Prefect flow of the paper's findings in miniature (findings/dvc.yaml, scripts/findings*.py).

One flow run per call; per finding, one MLflow parent run (experiment ``ringlite-findings``)
under which every arm that runs logs its RL stage run, and one Prefect task per DVC stage: the
finding's arms (its stage's matrix, ``dvc repro --single-item findings/dvc.yaml:<arm>``), then
its report stage (the fresh-problem scores and the verdict). DVC decides what is stale: an arm
whose code, params and start model are unchanged is skipped (Prefect state ``Cached``). At the
end ``scripts/findings_report.py page`` rewrites docs/findings.md from the committed metrics.

    python -m flows.findings                       # all three (make findings)
    python -m flows.findings --finding normalisers # one (make finding-normalisers)
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect import flow, get_run_logger

from flows.pipeline import REPO_DIR, run_stage, status_line
from pipeline.tracking import git_commit, setup_mlflow, tracking_enabled

DVC_FILE = "findings/dvc.yaml"
EXPERIMENT = "ringlite-findings"


def finding_names(path: Path) -> tuple[str, ...]:
    """The findings of ``path``: each stage that has a ``<name>-report`` stage, in file order."""
    stages = yaml.safe_load(path.read_text())["stages"]
    return tuple(n for n in stages if f"{n}-report" in stages)


FINDINGS = finding_names(REPO_DIR / DVC_FILE)


def finding_stages(path: Path, finding: str) -> list[str]:
    """The DVC stage names of one finding, in run order: its matrix expanded as DVC names them
    (``normalisers@budget-1``: the values joined by ``-`` in the matrix's key order), then
    ``<finding>-report``."""
    stages = yaml.safe_load(path.read_text())["stages"]
    if finding not in stages:
        raise ValueError(f"{path}: no stage {finding!r} (findings: {FINDINGS})")
    matrix = stages[finding].get("matrix") or {}
    names = [f"{finding}@" + "-".join(str(v) for v in combo)
             for combo in itertools.product(*matrix.values())] if matrix else [finding]
    return names + [f"{finding}-report"]


@flow(name="ringlite-findings")
def findings(names: list[str] | None = None, repo_dir: str | None = None) -> list[dict]:
    """Run the named findings (all three by default) and regenerate docs/findings.md."""
    repo = Path(repo_dir or REPO_DIR).resolve()
    wanted = list(names) if names else list(FINDINGS)
    unknown = sorted(set(wanted) - set(FINDINGS))
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; choose from {FINDINGS}")
    os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    logger = get_run_logger()
    out = []
    for name in wanted:
        parent_id, mlflow = None, None
        if tracking_enabled():
            mlflow = setup_mlflow(repo)
            parent_id = mlflow.start_run(run_name=f"findings: {name}", tags={
                "stage": f"findings_{name}", "git_commit": git_commit(repo)}).info.run_id
        results = []
        try:
            for stage in finding_stages(repo / DVC_FILE, name):
                state = run_stage(f"{DVC_FILE}:{stage}", False, str(repo), parent_id,
                                  return_state=True)
                results.append(state.result())
        finally:
            if mlflow:
                mlflow.set_tag("mlflow.runName", f"findings: {name}: {status_line(results)}")
                mlflow.end_run()
        logger.info("%s: %s", name, status_line(results))
        out += [{"finding": name, "stage": r.stage, "status": r.status, "seconds": r.seconds}
                for r in results]
    subprocess.run([sys.executable, "scripts/findings_report.py", "page"], cwd=repo, check=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--finding", nargs="*", choices=FINDINGS, help="default: all three")
    args = ap.parse_args(argv)
    results = findings(names=args.finding or None)
    for r in results:
        print(f"{r['stage']:<58} {r['status']:<8} {r['seconds']:7.1f} s")


if __name__ == "__main__":
    main()

"""The Prefect flow that runs the recipe: one task per DVC stage, in dvc.yaml's DAG order.

Each task runs ``dvc repro --single-item <stage>`` so DVC decides what is stale and caches
results; the flow adds no caching of its own and computes nothing. It opens one MLflow parent
run per execution; stage runs nest under it (the id travels in ``RINGLITE_PARENT_RUN_ID``).
A Markdown artifact lists which stages ran, which were up to date, and their times.

Run it::

    python -m flows.pipeline                      # the whole recipe
    python -m flows.pipeline --stages curate base # a subset (upstream outputs must exist)
    python -m flows.pipeline --force sft          # rerun sft even if DVC thinks it is fresh

or as a deployment (prefect.yaml): ``prefect deployment run 'ringlite-pipeline/full-recipe'``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# On a busy 2-core machine the temporary server Prefect starts (when no PREFECT_API_URL is set)
# can take longer than Prefect's 20 s default to come up.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from pipeline.atomic import write_json  # noqa: E402
from pipeline.dag import stage_order  # noqa: E402
from pipeline.tracking import (  # noqa: E402
    PARENT_ENV,
    PIPELINE_ENV,
    git_commit,
    setup_mlflow,
    tracking_enabled,
    tracking_uri,
)

REPO_DIR = Path(__file__).resolve().parents[1]
SKIP_MARKERS = ("didn't change, skipping", "is cached - skipping")
# A progress bar redraws its line (ends in "\r") many times a second; each forwarded line is a
# Prefect log record sent to the API server. Forward one redraw per this many seconds.
PROGRESS_EVERY_S = 5.0


@dataclass
class StageResult:
    stage: str
    status: str  # ran | up-to-date | failed | not-run
    seconds: float


def dvc_executable() -> str:
    """The dvc next to this interpreter (a venv), else the one on PATH."""
    local = Path(sys.executable).with_name("dvc")
    return str(local) if local.exists() else (shutil.which("dvc") or "dvc")


def stage_env(repo: Path, parent_run_id: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", tracking_uri(repo))
    # Stage commands in dvc.yaml call `python`: make it this interpreter's environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if parent_run_id:
        env[PARENT_ENV] = parent_run_id
        env[PIPELINE_ENV] = parent_run_id
    return env


def forwarded_lines(lines: Iterable[str], every_s: float,
                    clock: Callable[[], float] = time.monotonic) -> Iterator[str]:
    r"""The lines worth logging: every line ending in a newline, and of the progress redraws
    (ending in a bare "\r") one per ``every_s`` seconds. A bar's final state comes as a line
    ending in a newline (tqdm's close), so it always passes; a redraw still held back when the
    stream ends is sent then. Text is not changed."""
    last_sent = -float("inf")
    pending = None  # the latest redraw not forwarded
    for line in lines:
        if line.endswith("\r"):
            if not line.strip():
                continue  # tqdm's leading "\r" before its first draw
            now = clock()
            if now - last_sent >= every_s:
                last_sent, pending = now, None
                yield line
            else:
                pending = line
            continue
        pending = None  # superseded by this full line
        yield line
    if pending is not None:
        yield pending


@task(task_run_name="{stage}", retries=1, retry_delay_seconds=5)
def run_stage(stage: str, force: bool, repo_dir: str, parent_run_id: str | None) -> StageResult:
    """``dvc repro --single-item <stage>``; streams DVC's output into the Prefect log."""
    logger = get_run_logger()
    cmd = [dvc_executable(), "repro", "--single-item", stage] + (["--force"] if force else [])
    t0 = time.time()
    proc = subprocess.Popen(
        cmd, cwd=repo_dir, env=stage_env(Path(repo_dir), parent_run_id), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines = []
    assert proc.stdout is not None
    # newline="": keep each line's own ending, so progress redraws ("\r") can be told apart
    stream = io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace", newline="")
    for line in forwarded_lines(stream, PROGRESS_EVERY_S):
        lines.append(line)
        logger.info(line.rstrip())
    rc = proc.wait()
    seconds = time.time() - t0
    if rc != 0:
        tail = "".join(lines[-30:])
        raise RuntimeError(f"stage {stage} failed (dvc exit {rc}):\n{tail}")
    out = "".join(lines)
    status = "up-to-date" if any(m in out for m in SKIP_MARKERS) else "ran"
    return StageResult(stage, status, seconds)


def summary_markdown(results: list[StageResult], parent_run_id: str | None) -> str:
    rows = "\n".join(f"| {r.stage} | {r.status} | {r.seconds:.1f} |" for r in results)
    total = sum(r.seconds for r in results)
    run = f"MLflow parent run: `{parent_run_id}`\n\n" if parent_run_id else ""
    return (
        f"# Ring-lite pipeline\n\n{run}| stage | status | seconds |\n|---|---|---|\n{rows}\n"
        f"| **total** | | {total:.1f} |\n"
    )


def record_timing(repo: Path, order: list[str], results: list[StageResult]) -> Path | None:
    """``reports/pipeline/timing.json`` (git-tracked): per-stage seconds of a run in which every
    stage of the DAG ran, with the commit and the machine's core count; runs that skipped or
    left out a stage keep the last full record."""
    if [r.stage for r in results] != order or any(r.status != "ran" for r in results):
        return None
    path = repo / "reports" / "pipeline" / "timing.json"
    write_json(path, {
        "commit": git_commit(repo), "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu_count": os.cpu_count(), "seconds": {r.stage: round(r.seconds, 1) for r in results},
        "total_seconds": round(sum(r.seconds for r in results), 1)})
    return path


@flow(name="ringlite-pipeline")
def pipeline(
    stages: list[str] | None = None,
    force: list[str] | None = None,
    repo_dir: str | None = None,
    stage_retries: int = 1,
) -> list[dict]:
    """Run the DVC stages in DAG order (all, or the named subset); ``force`` reruns stages."""
    repo = Path(repo_dir or REPO_DIR).resolve()
    order = stage_order(repo / "dvc.yaml")
    wanted = list(stages) if stages else order
    unknown = sorted(set(wanted) - set(order)) + sorted(set(force or []) - set(order))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    selected = [s for s in order if s in wanted]

    parent_id = None
    mlflow = None
    if tracking_enabled():
        mlflow = setup_mlflow(repo)  # the sqlite store and artifacts live in the repo
        tags = {"stage": "pipeline", "git_commit": git_commit(repo)}
        parent_id = mlflow.start_run(run_name="pipeline", tags=tags).info.run_id
        mlflow.set_tag("pipeline_run_id", parent_id)
        mlflow.log_params({"stages": ",".join(selected), "force": ",".join(force or [])})

    results: list[StageResult] = []
    error: BaseException | None = None
    try:
        for stage in selected:
            job = run_stage.with_options(retries=stage_retries)
            results.append(job(stage, stage in (force or []), str(repo), parent_id))
            if mlflow:
                mlflow.log_metric(f"seconds_{stage}", results[-1].seconds, run_id=parent_id)
    except BaseException as e:  # record what happened, then fail the flow
        error = e
        done = {r.stage for r in results}
        results += [StageResult(s, "failed" if i == 0 else "not-run", 0.0)
                    for i, s in enumerate(x for x in selected if x not in done)]
    finally:
        md = summary_markdown(results, parent_id)
        create_markdown_artifact(md, key="pipeline-summary", description="stages and times")
        if mlflow:
            mlflow.log_text(md, "pipeline_summary.md", run_id=parent_id)
            mlflow.end_run(status="FAILED" if error else "FINISHED")
    if error:
        raise error
    record_timing(repo, order, results)
    get_run_logger().info(md)
    return [asdict(r) for r in results]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", nargs="*", help="run only these stages (DAG order kept)")
    ap.add_argument("--force", nargs="*", default=[], help="rerun these stages")
    args = ap.parse_args(argv)
    order = stage_order(REPO_DIR / "dvc.yaml")
    unknown = sorted(set(args.stages or []) - set(order)) + sorted(set(args.force) - set(order))
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; dvc.yaml has {order}")
    results = pipeline(stages=args.stages or None, force=args.force)
    print("\nstage            status        time")
    for r in results:
        print(f"{r['stage']:<16} {r['status']:<12} {r['seconds']:6.1f} s")
    print(f"{'total':<29} {sum(r['seconds'] for r in results):6.1f} s")


if __name__ == "__main__":
    main()

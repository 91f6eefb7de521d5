"""The Prefect flow that runs the recipe: one task per DVC stage, in dvc.yaml's DAG order.

Each task runs ``dvc repro --single-item <stage>`` so DVC decides what is stale and caches
results; the flow adds no caching of its own and computes nothing. A stage DVC skipped ends in
Prefect's ``Cached`` state. Each output line of a stage goes to the Prefect log at its level
(:mod:`flows.stage_log`). The flow opens one MLflow parent run per execution; stage runs nest
under it (the id travels in ``RINGLITE_PARENT_RUN_ID``). At the end the parent run is named
after what happened (``pipeline: ran 9 stages``, ``pipeline: all cached``) and its description
gives the bench headline and a link to each stage's run; the Markdown artifact
``pipeline-summary`` gives the same, with links into the MLflow UI.

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
from dataclasses import asdict, dataclass
from pathlib import Path

# On a busy 2-core machine the temporary server Prefect starts (when no PREFECT_API_URL is set)
# can take longer than Prefect's 20 s default to come up.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.states import Completed, State  # noqa: E402

from flows.stage_log import StageLog, forwarded_lines  # noqa: E402
from pipeline.atomic import write_json  # noqa: E402
from pipeline.dag import stage_order  # noqa: E402
from pipeline.tracking import (  # noqa: E402
    PARENT_ENV,
    PIPELINE_ENV,
    git_commit,
    run_url,
    setup_mlflow,
    tracking_enabled,
    tracking_uri,
    ui_base_url,
)

REPO_DIR = Path(__file__).resolve().parents[1]
SKIP_MARKERS = ("didn't change, skipping", "is cached - skipping")
# A progress bar redraws its line (ends in "\r") many times a second; each forwarded line is a
# Prefect log record sent to the API server. Forward one redraw per this many seconds.
PROGRESS_EVERY_S = 5.0


@dataclass
class StageResult:
    stage: str
    status: str  # ran | cached | failed | not-run
    seconds: float
    cpu_seconds: float = 0.0  # user + system CPU of `dvc repro` and every process it waited for


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
    # Without a GPU driver DeepSpeed's accelerator auto-detection falls back to the CPU with a
    # warning in every stage that imports it; name the CPU accelerator instead.
    if not Path("/proc/driver/nvidia").exists():
        env.setdefault("DS_ACCELERATOR", "cpu")
    return env


@task(task_run_name="{stage}", retries=1, retry_delay_seconds=5)
def run_stage(stage: str, force: bool, repo_dir: str, parent_run_id: str | None
              ) -> StageResult | State:
    """``dvc repro --single-item <stage>``; streams DVC's output into the Prefect log, each line
    at its level. A stage DVC skipped ends in the ``Cached`` state."""
    logger = get_run_logger()
    classify = StageLog()
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
    for line in forwarded_lines(stream, PROGRESS_EVERY_S, time.monotonic):
        level, text = classify.record(line)
        lines.append(text)
        logger.log(level, text)
    # wait4: the exit status with the CPU time of the whole stage tree (DVC, the stage's
    # command, its workers and sandboxes), which other tenants of a shared machine do not inflate
    # as they inflate wall seconds
    _, status, usage = os.wait4(proc.pid, 0)
    rc = proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.time() - t0
    cpu = usage.ru_utime + usage.ru_stime
    if rc != 0:
        tail = "\n".join(lines[-30:])
        raise RuntimeError(f"stage {stage} failed (dvc exit {rc}):\n{tail}")
    out = "\n".join(lines)
    if any(m in out for m in SKIP_MARKERS):
        return Completed(data=StageResult(stage, "cached", seconds, cpu), name="Cached",
                         message="DVC: deps, params and outputs unchanged; skipped")
    return StageResult(stage, "ran", seconds, cpu)


def name_cached(task_run_id, stage: str, wait_s: float = 60.0) -> None:
    """Rename a finished task run ``<stage> (cached)``, so the flow run's timeline tells a
    skipped stage from one that ran (both states are drawn in the same colour).

    The server builds a task run from its events a moment after it ends (seconds on a busy
    machine), and each event it records rewrites the run's name from the event: a rename that
    lands before the final state's event is undone. So the rename waits until the server holds
    the run in a final state, then reads the name back; it retries with a growing pause for up
    to ``wait_s`` seconds."""
    from prefect.client.orchestration import get_client

    wanted = f"{stage} (cached)"
    deadline, pause = time.monotonic() + wait_s, 0.25
    with get_client(sync_client=True) as client:
        while True:
            try:
                run = client.read_task_run(task_run_id)
                if run.state is not None and run.state.is_final():
                    if run.name == wanted:
                        return
                    client.set_task_run_name(task_run_id, wanted)
            except Exception:  # noqa: BLE001 - not there yet
                pass
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
            pause = min(2 * pause, 2.0)
    get_run_logger().warning("task run of %s not renamed '%s' within %.0f s", stage, wanted,
                             wait_s)


def status_line(results: list[StageResult]) -> str:
    """What an execution did, in a few words: ``ran 9 stages``, ``all cached``,
    ``ran 2 stages, 7 cached``, ``failed at sft (ran 3 stages)``."""
    ran = sum(r.status == "ran" for r in results)
    cached = sum(r.status == "cached" for r in results)
    failed = next((r.stage for r in results if r.status == "failed"), None)
    done = f"ran {ran} stage{'s' * (ran != 1)}" + (f", {cached} cached" if cached else "")
    if failed:
        return f"failed at {failed} ({done})"
    if not ran and cached:
        return "all cached"
    return done


@dataclass
class Links:
    """Where a person finds the MLflow side of an execution: the experiment, the parent run,
    each stage's run (the one that made its current outputs), the bench headline."""

    experiment_id: str | None = None
    parent_id: str | None = None
    stage_runs: dict[str, str] | None = None
    headline: str | None = None


def summary_markdown(results: list[StageResult], links: Links, absolute: bool = True) -> str:
    """The execution in Markdown: status, bench headline, stages with times and run links.
    ``absolute``: full URLs (the Prefect artifact) rather than the MLflow UI's own hash links
    (the parent run's description)."""
    def url(run_id: str) -> str:
        if absolute:
            return run_url(links.experiment_id or "0", run_id)
        return f"#/experiments/{links.experiment_id}/runs/{run_id}"

    runs = links.stage_runs or {}
    rows = "\n".join(
        (f"| [{r.stage}]({url(runs[r.stage])})" if r.stage in runs else f"| {r.stage}")
        + f" | {r.status} | {r.seconds:.1f} |" for r in results)
    total = sum(r.seconds for r in results)
    head = ([f"# Ring-lite pipeline: {status_line(results)}", ""] if absolute
            else [f"**{status_line(results).capitalize()}** in {total:.0f} s.", ""])
    if links.headline:
        head += [f"**Bench:** {links.headline}", ""]
    if absolute and links.parent_id:
        exp = f"{ui_base_url()}/#/experiments/{links.experiment_id}/runs"
        head += [f"MLflow: [this pipeline run]({url(links.parent_id)}) · "
                 f"[all runs of the experiment]({exp}) (`make ui` serves {ui_base_url()})", ""]
    return "\n".join(head) + (
        f"| stage (its MLflow run) | status | seconds |\n|---|---|---:|\n{rows}\n"
        f"| **total** | | {total:.1f} |\n")


def mlflow_links(mlflow, parent_id: str, stages: list[str]) -> Links:
    """The MLflow runs behind an execution: each stage's run under ``parent_id`` or, for a
    cached stage, its latest finished run (the one that made its outputs); the bench run's
    headline."""
    client = mlflow.MlflowClient()
    exp_id = client.get_run(parent_id).info.experiment_id
    latest = ["attributes.start_time DESC"]
    found = {r.data.tags.get("stage"): r for r in reversed(client.search_runs(
        [exp_id], f"tags.mlflow.parentRunId = '{parent_id}'", order_by=latest))}
    for stage in set(stages) - set(found):
        done = client.search_runs(
            [exp_id], f"tags.stage = '{stage}' and attributes.status = 'FINISHED'",
            order_by=latest, max_results=1)
        if done:
            found[stage] = done[0]
    runs = {s: found[s].info.run_id for s in stages if s in found}
    headline = found["bench"].data.tags.get("headline") if "bench" in found else None
    return Links(exp_id, parent_id, runs, headline)


def record_timing(repo: Path, order: list[str], results: list[StageResult]) -> Path | None:
    """``reports/pipeline/timing.json`` (git-tracked): per-stage wall and CPU seconds of a run in
    which every stage of the DAG ran, with the commit, the machine's core count and load; runs
    that skipped or left out a stage keep the last full record."""
    if [r.stage for r in results] != order or any(r.status != "ran" for r in results):
        return None
    path = repo / "reports" / "pipeline" / "timing.json"
    write_json(path, {
        "commit": git_commit(repo), "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu_count": os.cpu_count(),
        # 1/5/15-min load average as the run ends: about the core count when it ran alone
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "seconds": {r.stage: round(r.seconds, 1) for r in results},
        "total_seconds": round(sum(r.seconds for r in results), 1),
        "cpu_seconds": {r.stage: round(r.cpu_seconds, 1) for r in results},
        "total_cpu_seconds": round(sum(r.cpu_seconds for r in results), 1)})
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
        parent_id = mlflow.start_run(run_name="pipeline: running", tags=tags).info.run_id
        mlflow.set_tag("pipeline_run_id", parent_id)
        mlflow.log_params({"stages": ",".join(selected), "force": ",".join(force or [])})

    results: list[StageResult] = []
    error: BaseException | None = None
    try:
        for stage in selected:
            job = run_stage.with_options(retries=stage_retries)
            state = job(stage, stage in (force or []), str(repo), parent_id, return_state=True)
            results.append(state.result())
            if results[-1].status == "cached":
                name_cached(state.state_details.task_run_id, stage)
            if mlflow:
                mlflow.log_metric(f"seconds_{stage}", results[-1].seconds, run_id=parent_id)
    except BaseException as e:  # record what happened, then fail the flow
        error = e
        done = {r.stage for r in results}
        results += [StageResult(s, "failed" if i == 0 else "not-run", 0.0)
                    for i, s in enumerate(x for x in selected if x not in done)]
    finally:
        links = Links()
        if mlflow:
            links = mlflow_links(mlflow, parent_id, selected)
            close_parent(mlflow, results, links, error is not None)
        md = summary_markdown(results, links)
        create_markdown_artifact(md, key="pipeline-summary",
                                 description=f"ringlite pipeline: {status_line(results)}")
    if error:
        raise error
    record_timing(repo, order, results)
    get_run_logger().info(md)
    return [asdict(r) for r in results]


def close_parent(mlflow, results: list[StageResult], links: Links, failed: bool) -> None:
    """Name the parent run after what happened, give it the summary as its description, the
    bench headline as a tag, and end it."""
    client = mlflow.MlflowClient()
    pid = links.parent_id
    tags = {"mlflow.runName": f"pipeline: {status_line(results)}",
            "mlflow.note.content": summary_markdown(results, links, absolute=False)}
    if links.headline:
        tags["headline"] = links.headline
    for k, v in tags.items():
        client.set_tag(pid, k, v)
    ran = sum(r.status == "ran" for r in results)
    mlflow.log_metrics({"summary/stages_ran": ran, "summary/stages_cached": sum(
        r.status == "cached" for r in results), "summary/seconds": sum(
        r.seconds for r in results)}, run_id=pid)
    mlflow.log_text(summary_markdown(results, links), "pipeline_summary.md", run_id=pid)
    mlflow.end_run(status="FAILED" if failed else "FINISHED")


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

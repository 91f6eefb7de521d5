"""The Prefect flow over real DVC stages (a tiny two-stage project) with real MLflow nesting."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import VENV_BIN, make_mini_project

pytestmark = pytest.mark.integration


def run_flow(root, *args, timeout=240):
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(root / ".prefect"),
        "MLFLOW_EXPERIMENT_NAME": "flowtest",
        "RINGLITE_TRACKING": "on",
    }
    for k in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RINGLITE_PARENT_RUN_ID",
              "RINGLITE_PIPELINE_RUN_ID"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "flows.pipeline", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_flow_runs_stages_in_dag_order_then_skips_them(tmp_path):
    root = make_mini_project(tmp_path / "proj")
    first = run_flow(root)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads((root / "reports/sum.json").read_text()) == {"total": 2 * sum(range(5))}
    lines = [ln.split() for ln in first.stdout.splitlines() if ln.strip().startswith(("make_", "sum_"))]
    assert [(ln[0], ln[1]) for ln in lines] == [("make_numbers", "ran"), ("sum_numbers", "ran")]

    timing = json.loads((root / "reports/pipeline/timing.json").read_text())
    assert list(timing["seconds"]) == ["make_numbers", "sum_numbers"]
    assert timing["total_seconds"] == pytest.approx(sum(timing["seconds"].values()), abs=0.2)
    assert len(timing["load_avg"]) == 3 and timing["cpu_count"] == os.cpu_count()
    # each stage started at least DVC and a Python interpreter; no tree of processes can use
    # more CPU than the cores gave it in its wall time
    assert list(timing["cpu_seconds"]) == list(timing["seconds"])
    for stage, cpu in timing["cpu_seconds"].items():
        assert 0.1 < cpu <= timing["seconds"][stage] * os.cpu_count() + 0.1, (stage, timing)
    assert timing["total_cpu_seconds"] == pytest.approx(sum(timing["cpu_seconds"].values()),
                                                        abs=0.2)

    second = run_flow(root)
    assert second.returncode == 0, second.stdout + second.stderr
    # nothing ran: the record of the last full run stays as it was
    assert json.loads((root / "reports/pipeline/timing.json").read_text()) == timing
    lines = [ln.split() for ln in second.stdout.splitlines() if ln.strip().startswith(("make_", "sum_"))]
    assert [(ln[0], ln[1]) for ln in lines] == [("make_numbers", "cached"),
                                                ("sum_numbers", "cached")]
    # Prefect shows a skipped stage in its own state
    assert second.stdout.count("Finished in state Cached(") + second.stderr.count(
        "Finished in state Cached(") == 2

    forced = run_flow(root, "--stages", "sum_numbers", "--force", "sum_numbers")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "sum_numbers      ran" in forced.stdout and "make_numbers" not in forced.stdout

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("flowtest")
    runs = client.search_runs([exp.experiment_id])
    parents = sorted((r for r in runs if r.data.tags.get("stage") == "pipeline"),
                     key=lambda r: r.info.start_time)
    # each execution's run is named after what it did
    assert [r.info.run_name for r in parents] == ["pipeline: ran 2 stages", "pipeline: all cached",
                                                  "pipeline: ran 1 stage"]
    first_parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first_parent.info.run_id]
    assert sorted(r.data.tags["stage"] for r in children) == ["make_numbers", "sum_numbers"]
    assert all(r.data.tags["pipeline_run_id"] == first_parent.info.run_id for r in children)
    assert first_parent.data.metrics.keys() >= {"seconds_make_numbers", "seconds_sum_numbers"}
    assert first_parent.data.metrics["summary/stages_ran"] == 2
    total = next(r for r in children if r.data.tags["stage"] == "sum_numbers").data.metrics
    assert total["summary/total"] == 20.0
    # the description links each stage's run; the cached execution links the runs that made
    # the outputs it kept
    for parent in parents[:2]:
        note = parent.data.tags["mlflow.note.content"]
        for child in children:
            assert f"#/experiments/{exp.experiment_id}/runs/{child.info.run_id}" in note
    summary = client.download_artifacts(first_parent.info.run_id, "pipeline_summary.md",
                                        str(root))
    text = open(summary).read()
    assert text.startswith("# Ring-lite pipeline: ran 2 stages")
    assert f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs/" in text


def test_flow_rejects_unknown_stage(tmp_path):
    root = make_mini_project(tmp_path / "proj")
    out = run_flow(root, "--stages", "nope")
    assert out.returncode != 0
    assert "unknown stage(s) ['nope']" in out.stdout + out.stderr


def test_progress_redraws_are_thinned_and_nothing_else_is_lost():
    r"""Stage output as io.TextIOWrapper(newline="") splits it: tqdm writes "\r" + bar. Lines
    ending in "\n" all pass; redraws pass once per interval; a redraw held back at the end of
    the stream is sent."""
    import io

    from flows.pipeline import forwarded_lines

    raw = ("start\n" + "".join(f"\rbar {i}%" for i in range(0, 101, 10)) + "\n"
           + "\rx 1\rx 2\rx 3\r" + "done\r\n" + "\ry 1\ry 2\r")
    lines = list(io.TextIOWrapper(io.BytesIO(raw.encode()), newline=""))
    assert lines[:3] == ["start\n", "\r", "bar 0%\r"]  # how the real stream splits
    ticks = iter([0.0, 1.0, 2.0, 5.5, 6.0, 7.0, 8.0, 9.0, 10.0, 10.4, 12.0, 13.0, 14.0,
                   15.0, 15.5])
    got = list(forwarded_lines(lines, 5.0, clock=lambda: next(ticks)))
    # bar 0% (t=0) sent; 10%, 20% held; 30% (t=5.5) sent; 40-90% (t<=10.4) held; "bar 100%\n"
    # is a full line: sent. x 1 (t=12, 6.5 s later) sent; x 2, x 3 held and superseded by
    # "done". y 1 (t=15), y 2 (t=15.5) held: the stream ends, so y 2 is sent.
    assert got == ["start\n", "bar 0%\r", "bar 30%\r", "bar 100%\n", "x 1\r", "done\r\n",
                   "y 2\r"]

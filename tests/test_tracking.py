"""stage_run against a real sqlite MLflow store in a temp dir."""

import csv
from dataclasses import dataclass

import pytest

from pipeline import tracking


@dataclass(frozen=True)
class P:
    lr: float
    steps: int


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.delenv(tracking.PIPELINE_ENV, raising=False)
    monkeypatch.setenv("RINGLITE_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "t")
    return tmp_path


def test_stage_run_logs_params_tags_steps_and_artifacts(store):
    (store / "out.txt").write_text("hello")
    with tracking.stage_run("sft", P(lr=0.1, steps=3)) as run:
        for i in range(3):
            run.step(i, loss=1.0 / (i + 1))
        run.metrics({"final": {"acc": 0.5}, "note": "not a number"})
        run.artifact(store / "out.txt")
        run.write_steps(store / "steps.csv")
    from mlflow.tracking import MlflowClient

    assert (store / "mlflow.db").exists()
    client = MlflowClient(tracking.tracking_uri(store))
    r = client.get_run(run.run_id)
    assert r.data.params == {"lr": "0.1", "steps": "3"}
    assert r.data.tags["stage"] == "sft"
    assert r.data.tags["pipeline_run_id"] == run.run_id  # stand-alone run: its own pipeline
    assert "mlflow.parentRunId" not in r.data.tags
    hist = client.get_metric_history(run.run_id, "loss")
    assert [(m.step, round(m.value, 4)) for m in hist] == [(0, 1.0), (1, 0.5), (2, 0.3333)]
    assert r.data.metrics["final.acc"] == 0.5
    assert "note" not in r.data.metrics
    assert [a.path for a in client.list_artifacts(run.run_id)] == ["out.txt"]
    rows = list(csv.DictReader((store / "steps.csv").open()))
    assert [float(x["loss"]) for x in rows] == [1.0, 0.5, 1 / 3]


def test_stage_runs_nest_under_parent(store, monkeypatch):
    mlflow = tracking.setup_mlflow(store)
    parent = mlflow.start_run(run_name="pipeline").info.run_id
    mlflow.end_run()
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    monkeypatch.setenv(tracking.PIPELINE_ENV, parent)
    with tracking.stage_run("curate", {"a": 1}) as run:
        pass
    r = mlflow.tracking.MlflowClient().get_run(run.run_id)
    assert r.data.tags["mlflow.parentRunId"] == parent
    assert r.data.tags["pipeline_run_id"] == parent


def test_tracking_off_is_a_noop(store, monkeypatch):
    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    with tracking.stage_run("x", {"a": 1}) as run:
        run.step(0, loss=1.0)
        run.metrics({"a": 1})
    assert run.run_id is None
    assert not (store / "mlflow.db").exists()
    assert run.steps == [{"step": 0, "loss": 1.0}]


def test_table_accepts_rows_frames_and_columns(store):
    import polars as pl

    with tracking.stage_run("bench", {}) as run:
        run.table([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "rows.json")
        run.table(pl.DataFrame({"a": [3]}), "frame.json")
        run.table({"a": [4, 5]}, "cols.json")
    import json

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(store))
    path = client.download_artifacts(run.run_id, "rows.json", str(store))
    data = json.loads(open(path).read())
    assert data["columns"] == ["a", "b"] and data["data"] == [[1, "x"], [2, "y"]]
    assert {a.path for a in client.list_artifacts(run.run_id)} == {"rows.json", "frame.json",
                                                                   "cols.json"}


def test_step_window_logs_window_means_and_keeps_every_step_out_of_mlflow(store):
    nan = float("nan")
    steps = [  # (step, loss, lr, grad_norm)
        (1, 4.0, 0.1, 1.0), (2, 2.0, 0.2, nan), (3, 3.0, 0.3, 3.0),
        (4, 1.0, 0.4, 2.0), (5, 5.0, 0.5, None),
    ]
    with tracking.stage_run("sft", P(lr=0.1, steps=5)) as run:
        window = tracking.StepWindow(run, every=2, last=("lr",))
        for step, loss, lr, g in steps:
            window.add(step, {"loss": loss, "lr": lr, "grad_norm": g})
        window.flush()  # the partial window [5]
        window.flush()  # nothing left: no extra point
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(store))

    def hist(key):
        return [(m.step, round(m.value, 6)) for m in client.get_metric_history(run.run_id, key)]

    # windows [1,2] [3,4] [5], each logged at its last step
    assert hist("loss") == [(2, 3.0), (4, 2.0), (5, 5.0)]
    assert hist("lr") == [(2, 0.2), (4, 0.4), (5, 0.5)]  # last value, not the mean
    assert hist("grad_norm") == [(2, 1.0), (4, 2.5)]  # NaN and None skipped; [5] has none
    assert run.steps == []  # the window writes MLflow only; steps.csv is the stage's own


def test_step_window_rejects_a_zero_window():
    with pytest.raises(ValueError, match="every must be >= 1"):
        tracking.StepWindow(tracking.StageRun(None, None), every=0)

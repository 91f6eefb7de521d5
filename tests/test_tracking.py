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
    assert r.data.metrics["summary/final.acc"] == 0.5  # headline values: their own section
    assert "summary/stage_seconds" in r.data.metrics
    assert not any(k.endswith("note") for k in r.data.metrics)
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


def test_experiment_is_a_training_experiment_old_ones_get_the_tag(store, monkeypatch):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(store))
    old = client.create_experiment("old")  # made before the tag existed
    tracking.setup_mlflow(store)
    exp = client.get_experiment_by_name("t")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "pipeline:" in exp.tags["mlflow.note.content"]
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "old")
    tracking.setup_mlflow(store)
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_record_keeps_the_row_and_logs_only_the_chart(store):
    from mlflow.tracking import MlflowClient

    with tracking.stage_run("rl", {}) as run:
        run.record(1, {"reward": 0.5, "prompt_cursor": 32.0}, {"reward": 0.5})
        run.write_steps(store / "steps.csv")
    r = MlflowClient(tracking.tracking_uri(store)).get_run(run.run_id)
    assert "reward" in r.data.metrics and "prompt_cursor" not in r.data.metrics
    assert list(csv.DictReader((store / "steps.csv").open())) == [
        {"step": "1", "reward": "0.5", "prompt_cursor": "32.0"}]


def test_a_run_over_its_metric_budget_says_so(store, capsys):
    with tracking.stage_run("wide", {}, metric_budget=5) as run:
        run.metrics({f"k{i}": i for i in range(5)})  # + stage_seconds = 6 keys
    err = capsys.readouterr().err
    assert "wide: 6 MLflow metric keys, over the budget of 5" in err
    with tracking.stage_run("narrow", {}, metric_budget=6) as run:
        run.metrics({f"k{i}": i for i in range(5)})
    assert "over the budget" not in capsys.readouterr().err
    assert len(run.metric_keys) == 6


def test_dataset_source_is_named_so_mlflow_does_not_guess(store):
    import warnings

    import polars as pl
    from mlflow.tracking import MlflowClient

    (store / "d.parquet").write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracking.stage_run("curate", {}) as run:
            run.dataset(pl.DataFrame({"id": [1, 2], "x": ["a", "b"]}), "d", "d.parquet")
    texts = [str(w.message) for w in caught]
    assert not [t for t in texts if "interpreted in multiple ways" in t or "Hint:" in t], texts
    inputs = MlflowClient(tracking.tracking_uri(store)).get_run(run.run_id).inputs
    [ds] = inputs.dataset_inputs
    assert ds.dataset.source_type == "local"
    assert ds.dataset.source == json_source((store / "d.parquet").resolve().as_uri())


def json_source(uri):
    import json

    return json.dumps({"uri": uri})


def test_clip_spikes_caps_a_spike_at_three_medians():
    kl = [0.0, 0.02, 0.03, 0.025, 3.09]
    assert tracking.clip_spikes(kl) == pytest.approx(3 * 0.0275)  # median of the positives
    assert tracking.clip_spikes(kl[:4]) == 0.025  # no spike: unchanged
    assert tracking.clip_spikes([0.0]) == 0.0 and tracking.clip_spikes([0.0, 0.0]) == 0.0
    assert tracking.clip_spikes([5.0]) == 5.0  # the first value is its own median


def test_ui_links_point_at_the_tracking_server_or_make_ui(monkeypatch):
    monkeypatch.delenv("MLFLOW_UI_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.run_url("3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:8080/")
    assert tracking.ui_base_url() == "http://mlflow.internal:8080"

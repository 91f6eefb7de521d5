"""The curate stage end to end: main() on tiny params in a tmp dir (what `dvc repro curate` runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "curate"))
from planted import write_planted  # noqa: E402

from pipeline.curation.core import CurateError  # noqa: E402
from pipeline.schema import QUARANTINE, TASK, validate  # noqa: E402
from pipeline.stages import curate as stage  # noqa: E402

OUT = ("sft", "rl", "val", "bench", "quarantine", "dropped")


def _write_params(root: Path, generators: dict, max_bad_share: float = 0.9) -> None:
    params = {
        "seed": 5,
        "curate": {
            "generators": generators,
            "user_files": write_planted(root),
            "validation": {"max_prompt_chars": 500, "max_bad_share": max_bad_share},
            "split": {"sft": 0.6, "rl": 0.3, "val": 0.1},
        },
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_main_on_user_files_writes_every_output(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path, {})
    stage.main(["--out-dir", "data/curated"])
    out = tmp_path / "data/curated"
    frames = {n: pl.read_parquet(out / f"{n}.parquet") for n in OUT}
    for n in ("sft", "rl", "val", "bench"):
        validate(frames[n], TASK, n)
    validate(frames["quarantine"], QUARANTINE, "quarantine")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["balanced"] is True
    assert (stats["rows_in"], stats["kept"], stats["dropped"], stats["quarantined"]) == (
        27,
        9,
        6,
        12,
    )
    assert frames["quarantine"].height == 12 and frames["dropped"].height == 6
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


def test_main_fails_on_too_many_bad_rows_after_writing_quarantine(tmp_path, monkeypatch):
    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path, {}, max_bad_share=0.5)
    with pytest.raises(CurateError, match=r"user/math\.jsonl: 11 of 19 rows"):
        stage.main(["--out-dir", "out"])
    assert pl.read_parquet(tmp_path / "out/quarantine.parquet").height == 12
    assert not (tmp_path / "out/sft.parquet").exists()


@pytest.mark.integration
def test_main_with_generators_and_mlflow(tmp_path, monkeypatch):
    pytest.importorskip("pipeline.tasks")
    monkeypatch.setenv("RINGLITE_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "curate-test")
    monkeypatch.chdir(tmp_path)
    gens = {
        "math": {"n": 40, "bench_n": 10},
        "countdown": {"n": 30, "bench_n": 10, "knobs": {"count": 3}},
    }
    _write_params(tmp_path, gens)
    stage.main(["--out-dir", "data/curated"])
    stats = json.loads((tmp_path / "data/curated/stats.json").read_text())
    assert stats["balanced"] is True
    assert (
        stats["by_origin"]["gen:math"]["in"] == 40
        and stats["by_origin"]["gen:countdown:bench"]["in"] == 10
    )
    bench = pl.read_parquet(tmp_path / "data/curated/bench.parquet")
    assert set(bench["domain"]) == {"math", "countdown"}
    train = pl.concat(
        [pl.read_parquet(tmp_path / f"data/curated/{s}.parquet") for s in ("sft", "rl", "val")]
    )
    assert not set(train["id"]) & set(bench["id"])

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = mlflow.search_runs(experiment_names=["curate-test"], output_format="list")[0]
    assert run.data.metrics["summary/rows_in"] == stats["rows_in"]
    assert (
        run.data.metrics["summary/dropped_by_reason.exact_duplicate"]
        == stats["dropped_by_reason"]["exact_duplicate"]
    )
    assert len(run.data.metrics) <= 40
    assert run.data.metrics["perf/peak_rss_mb"] > 50  # a Python process with polars loaded
    assert run.data.metrics["perf/near_dedup_docs_per_s"] > 0
    names = {d.dataset.name for d in run.inputs.dataset_inputs}
    assert {"user/math.jsonl", "curated/sft"} <= names
    files = {f.path for f in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert "dropped_pairs.json" in files and "stats.json" in files

"""The bench stage end to end: two tiny checkpoints, the curated bench split plus a GSM8K-shaped
file, real torch engine and verifier, MLflow tracking into a temp sqlite store, and the model
registry (the registered model loads back and generates)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import torch
import yaml

from pipeline.bench.metrics import pass_at_k
from pipeline.schema import SAMPLE, TASK, frame

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_bench_stage_metrics_reports_and_registry(tmp_path, monkeypatch):
    import mlflow

    from pipeline.model import save_checkpoint, tiny_test_model
    from pipeline.model.chat import format_prompt
    from pipeline.stages import bench
    from pipeline.tasks import generate

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RINGLITE_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RINGLITE_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "bench-test")
    model, tok = tiny_test_model()
    save_checkpoint(model, tok, "m/base")
    with torch.no_grad():
        model.lm_head.weight.mul_(3.0)
    save_checkpoint(model, tok, "m/final")
    tasks = generate("math", 3, seed=4) + generate("countdown", 2, seed=4)
    frame(tasks, TASK).write_parquet("bench.parquet")
    (tmp_path / "gsm8k.jsonl").write_text(json.dumps(
        {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=5\n#### 5"}) + "\n")
    params = {"seed": 7, "bench": {
        "samples_per_problem": 3, "pass_k": [1, 2], "max_new_tokens": 10,
        "files": [{"name": "gsm8k", "path": "gsm8k.jsonl", "shape": "gsm8k"}],
        "register": {"enabled": True, "model": "final", "name": "tiny-test", "alias": "candidate"},
    }}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    bench.main(["--bench", "bench.parquet", "--model", "base=m/base", "--model", "final=m/final",
                "--out-dir", "rep"])

    samples = pl.read_parquet("rep/samples.parquet")
    assert samples.columns == list(SAMPLE)
    assert samples.height == 2 * 6 * 3  # models x problems (3 math + 2 countdown + 1 gsm8k) x k
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert set(metrics) == {"base", "final"}
    # curated: one benchmark per source; plus the pooled RL-group column (all reasoning here)
    assert set(metrics["final"]) == {"math", "countdown", "gsm8k", "all_reasoning"}
    # recompute avg@k and pass@2 of every cell from the samples, independently of the stage
    owner = {t["id"]: t["source"].split(":", 1)[1] for t in tasks}
    per = samples.with_columns(pl.col("task_id").replace_strict(owner, default="gsm8k")
                               .alias("bench")).group_by("model", "bench", "task_id").agg(
        pl.col("correct").sum().alias("c"), pl.len().alias("n"))
    for (m,), g in per.group_by("model"):
        pooled = g.group_by("task_id").agg(pl.col("c").sum(), pl.col("n").sum())
        assert metrics[m]["all_reasoning"]["problems"] == 6
        assert metrics[m]["all_reasoning"]["avg_at_k"] == pytest.approx(
            float((pooled["c"] / pooled["n"]).mean()))
    for (m, b), g in per.group_by("model", "bench"):
        cell = metrics[m][b]
        assert cell["problems"] == g.height and cell["samples"] == int(g["n"].sum())
        assert cell["avg_at_k"] == pytest.approx(float((g["c"] / g["n"]).mean()))
        want = sum(pass_at_k(n, c, 2) for n, c in zip(g["n"], g["c"], strict=True)) / g.height
        assert cell["pass_at_2"] == pytest.approx(want)
    table = (tmp_path / "rep" / "table.md").read_text()
    assert table.splitlines()[0].startswith("| model | all_reasoning | countdown |")
    assert [ln.split(" |")[0] for ln in table.splitlines()[2:4]] == ["| base", "| final"]
    assert (tmp_path / "rep" / "chart.png").stat().st_size > 1000

    # the MLflow run: metrics mirrored, the table as the run description
    runs = mlflow.search_runs(experiment_names=["bench-test"], output_format="list")
    run = runs[0]
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith(f"**{run.data.tags['headline']}**")
    assert run.data.tags["headline"].startswith("final: reasoning avg@k ")
    rows = [ln.split(" |")[0] for ln in note.splitlines() if ln.startswith("| ")]
    assert rows[1:] == ["| final", "| base"]  # the registered model's row first
    assert run.data.metrics["summary/final.gsm8k.avg_at_k"] == pytest.approx(
        metrics["final"]["gsm8k"]["avg_at_k"])
    assert len(run.data.metrics) <= 60
    client = mlflow.MlflowClient()
    shown = json.loads(Path(client.download_artifacts(run.info.run_id, "samples.json",
                                                      str(tmp_path))).read_text())
    rows = [dict(zip(shown["columns"], r, strict=True)) for r in shown["data"]]
    assert {"prompt", "response", "reward", "reason"} <= set(rows[0])
    half = len(rows) // 2
    assert [r["model"] for r in rows] == ["final"] * half + ["base"] * half
    prompts = {t["id"]: t["prompt"] for t in tasks}
    assert all(r["prompt"] == prompts.get(r["task_id"], r["prompt"]) and r["prompt"]
               for r in rows)
    # the registry: alias set, description and a few tags, loads back and generates
    version = client.get_model_version_by_alias("tiny-test", "candidate")
    assert len(version.tags) <= 10
    assert version.tags["bench.all_reasoning.avg_at_k"] == (
        f"{metrics['final']['all_reasoning']['avg_at_k']:.4f}")
    assert "| math | 3 |" in version.description and run.info.run_id in version.description
    parts = mlflow.transformers.load_model("models:/tiny-test@candidate",
                                           return_type="components")
    loaded, ltok = parts["model"], parts["tokenizer"]
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    ids = ltok(format_prompt(ltok, tasks[0]["prompt"]), return_tensors="pt",
               add_special_tokens=False)
    out = loaded.generate(**ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]


def test_repo_params_load_into_the_stage_dataclasses():
    from pipeline.params import load_section
    from pipeline.stages.bench import BenchParams
    from pipeline.stages.difficulty import DifficultyParams
    from pipeline.stages.select import SelectParams

    sel = load_section("select", SelectParams, REPO / "params.yaml")
    assert sel.band_low <= sel.band_high and sel.temperature == 1.0
    dif = load_section("difficulty", DifficultyParams, REPO / "params.yaml")
    assert 0 <= dif.min_pass_rate < dif.max_pass_rate <= 1
    b = load_section("bench", BenchParams, REPO / "params.yaml")
    assert (b.temperature, b.top_p) == (1.0, 0.95)  # the paper's decoding
    assert all(k <= b.samples_per_problem for k in b.pass_k)
    assert b.register.model == "rl_general"


def test_bench_file_params_are_strict(tmp_path):
    from pipeline.params import ParamsError, load_section
    from pipeline.stages.bench import BenchParams

    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"bench": {"files": [
        {"name": "x", "path": "x.jsonl", "shape": "mmlu"}]}}))
    with pytest.raises(ParamsError, match=r"bench.files\[0\].shape: expected one of"):
        load_section("bench", BenchParams, tmp_path / "p.yaml")

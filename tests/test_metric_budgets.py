"""What each stage run puts in MLflow fits its budget: <= 40 metric keys per stage run, <= 60
for bench, <= 10 tags on a registered model version, with the values a person looks for.

The inputs are the real stats and metrics files of a default-recipe run (tests/fixtures/reports:
7 domains, 4 models x 9 benchmarks, a 20-step RL run); logged as they were before the budgets,
runs like these had 120 metric keys (curate), 406-580 (bench) and 85-88 (rl_reasoning).
"""

import csv
import json
from pathlib import Path

import pytest

from pipeline.tracking import BENCH_METRIC_BUDGET, METRIC_BUDGET, numeric

FIX = Path(__file__).parent / "fixtures" / "reports"
MODELS = ["base", "sft", "rl_reasoning", "rl_general"]


def load(name):
    return json.loads((FIX / name).read_text())


def keys_of(headline, curves=()):
    """The MLflow metric keys of a run: its summary values, curves and stage_seconds."""
    return {f"summary/{k}" for k in numeric(headline)} | set(curves) | {"summary/stage_seconds"}


def test_curate():
    from pipeline.stages.curate import _metric_safe, headline, tables

    stats = load("curate_stats.json")
    perf = {"perf/rows_per_s", "perf/near_dedup_docs_per_s", "perf/peak_rss_mb"}  # CurateResult.perf
    keys = keys_of(headline(_metric_safe(stats))) | perf
    assert len(keys) <= METRIC_BUDGET < len(numeric(stats))
    assert {"summary/kept", "summary/by_split.rl", "summary/dropped_by_reason.exact_duplicate",
            "summary/kept_by_domain.math"} <= keys
    t = tables(stats)
    assert len(t["tables/by_origin.json"]) == len(stats["by_origin"]) == 14
    math = next(r for r in t["tables/by_domain.json"] if r["domain"] == "math")
    assert math["kept.sft"] == stats["by_domain_split"]["math"]["sft"]


def test_distill_difficulty_sft():
    from pipeline.stages.distill import headline as distill_headline
    from pipeline.stages.sft import headline as sft_headline

    distill = keys_of(distill_headline(load("distill_stats.json")), ["accepted", "rejected"])
    assert len(distill) <= METRIC_BUDGET and "summary/domain_mix.math" in distill

    st = load("difficulty_stats.json")
    difficulty = keys_of({k: v for k, v in st.items() if k != "by_domain"}, ["batch_accuracy"])
    assert len(difficulty) <= METRIC_BUDGET and "summary/by_reason.learnable" in difficulty

    sft = keys_of(sft_headline(load("sft_metrics.json")),
                  ["loss", "lr", "grad_norm", "tokens", "loss_tokens", "tokens_per_s", "epoch",
                   "eval_accuracy"])
    assert len(sft) <= METRIC_BUDGET
    assert not any("epoch_" in k for k in sft)  # per-epoch accuracy: a curve and a table


def test_rl_curves_and_summary():
    from pipeline.rl.stage import CURVES, SUMMARY, chart_row

    rows = [{k: float(v) for k, v in r.items() if v != "" and k != "step"}
            for r in csv.DictReader((FIX / "rl_reasoning_steps.csv").open())]
    assert len({k for r in rows for k in r}) > 45  # what a step row holds
    seen: list[float] = []
    charted = [chart_row(r, seen) for r in rows]
    curves = {k for c in charted for k in c}
    assert curves <= set(CURVES) | {"kl_clipped"}
    assert {"reward", "kl", "kl_clipped", "eval_accuracy", "entropy", "lr"} <= curves
    m = load("rl_reasoning_metrics.json")
    keys = keys_of({k: m[k] for k in SUMMARY if k in m}, curves)
    assert len(keys) <= METRIC_BUDGET
    assert {"summary/eval_accuracy_gain", "summary/generalised"} <= keys
    # the spike series never exceeds the raw KL and is capped where the raw one jumps
    for c in charted:
        if "kl" in c:
            assert c["kl_clipped"] <= c["kl"]


def test_bench_metrics_table_and_description():
    from pipeline.bench.report import headline_metrics, headline_text, markdown_table, scores_table

    metrics = load("bench_metrics.json")
    flat = numeric(metrics)
    assert len(flat) > 400  # every model x benchmark x domain x metric, as it used to be logged
    head = headline_metrics(metrics, MODELS, "rl_general")
    keys = keys_of(head, [f"{m}.batch_accuracy" for m in MODELS])
    assert len(keys) <= BENCH_METRIC_BUDGET
    assert head["rl_general.all_reasoning.avg_at_k"] == metrics["rl_general"]["all_reasoning"][
        "avg_at_k"]
    assert "rl_general.math.avg_at_k" in head and "base.math.avg_at_k" not in head
    rows = scores_table(metrics, ["rl_general", "rl_reasoning", "sft", "base"])
    assert rows[0]["model"] == "rl_general"
    assert len(rows) == sum(1 + len(e["domains"]) for m in MODELS for e in metrics[m].values())
    text = headline_text(metrics, MODELS, "rl_general")
    assert text.startswith("rl_general: reasoning avg@k ")
    assert f"{100 * metrics['sft']['all_general']['avg_at_k']:.1f}" in text
    table = markdown_table(metrics, ["rl_general", "rl_reasoning", "sft", "base"])
    assert table.splitlines()[2].startswith("| rl_general |")  # the final model's row first


def test_model_version_tags_and_description():
    from pipeline.bench.registry import MAX_VERSION_TAGS, Provenance, description, version_tags

    metrics = load("bench_metrics.json")["rl_general"]
    prov = Provenance("rl_general", "run123", "abcdef1234567890", "0123456789ab",
                      "rl_general: reasoning avg@k 23.1%.")
    tags = version_tags(metrics, prov)
    assert len(tags) <= MAX_VERSION_TAGS == 10
    assert tags["params_digest"] == "0123456789ab" and tags["git_commit"] == "abcdef123456"
    assert tags["bench.all_reasoning.avg_at_k"] == f"{metrics['all_reasoning']['avg_at_k']:.4f}"
    assert "bench.all_general.pass_at_4" in tags
    text = description("ringlite", metrics, prov)
    assert text.startswith("**rl_general: reasoning avg@k 23.1%.**")
    for needle in ("run123", "abcdef1234567890", "0123456789ab", "| math | 40 |",
                   f"| {100 * metrics['math']['avg_at_k']:.1f} |"):
        assert needle in text


@pytest.mark.parametrize("n_files", [0, 5])
def test_bench_budget_holds_with_extra_benchmark_files(n_files):
    from pipeline.bench.report import headline_metrics

    metrics = load("bench_metrics.json")
    for m in MODELS:
        for i in range(n_files):
            metrics[m][f"file{i}"] = dict(metrics[m]["math"])
    head = headline_metrics(metrics, MODELS, "rl_general")
    assert len(keys_of(head, [f"{m}.batch_accuracy" for m in MODELS])) <= BENCH_METRIC_BUDGET

"""bench: evaluate every stage's model on the held-out benchmarks; register the final model.

For each ``--model name=path`` and each benchmark (``--bench``: the curated bench split, one
benchmark per ``source`` family; plus the files named in params ``bench.files``): sample
``samples_per_problem`` responses per problem (temperature 1.0, top-p 0.95 by default), score
them with the shared verifier, and report avg@k and unbiased pass@k per benchmark and domain.

Writes ``<out-dir>/metrics.json`` (DVC metric), ``table.md`` (models x benchmarks),
``chart.png``, ``samples.parquet`` (``schema.SAMPLE``). In MLflow: a headline sentence and the
table (the registered model's row first) as the run description, the pooled scores of every
model and the final model's per-benchmark scores as metrics, every model x benchmark x domain
score as ``tables/scores.json``, the samples with their prompts (final model first) as
``samples.json``. Registers the ``register.model`` model (rl_general) in the MLflow model
registry with a description of what trained it and its scores, and alias
``register.alias``.

    python -m pipeline.stages.bench --bench data/curated/bench.parquet \
        --model base=models/base --model sft=models/selected \
        --model rl_reasoning=models/rl_reasoning --model rl_general=models/rl_general \
        --out-dir reports/bench
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.atomic import atomic_path, write_json, write_parquet, write_text
from pipeline.bench.loaders import load_benchmark
from pipeline.bench.report import (
    bar_chart,
    group_metrics,
    group_rollup,
    headline_metrics,
    headline_text,
    markdown_table,
    scores_table,
)
from pipeline.bench.sampling import Sampling, sample_checkpoint
from pipeline.headline import write_headline
from pipeline.params import load_section, load_seed
from pipeline.schema import SAMPLE, TASK, frame, validate
from pipeline.tracking import BENCH_METRIC_BUDGET, git_commit, stage_run
from pipeline.verify.reward_model import configure_from

log = logging.getLogger("bench")


@dataclass(frozen=True)
class BenchFile:
    name: str  # benchmark name in the reports
    path: str  # local file (.jsonl, .json or .parquet)
    shape: Literal["aime", "gsm8k", "math500", "ifeval", "code"]


@dataclass(frozen=True)
class RegisterParams:
    enabled: bool = True
    model: str = "rl_general"  # which --model name is registered
    name: str = "ringlite"  # registered model name
    alias: str = "candidate"


@dataclass(frozen=True)
class BenchParams:
    engine: Literal["torch", "vllm"] = "torch"
    samples_per_problem: int = 4  # k
    pass_k: tuple[int, ...] = (1, 4)
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 160
    max_problems: int = 40  # per benchmark (seeded subset); 0 = all
    batch_prompts: int = 64
    files: tuple[BenchFile, ...] = ()
    ifeval_unknown: Literal["skip", "error"] = "skip"
    register: RegisterParams = field(default_factory=RegisterParams)


def benchmark_name(task: dict[str, Any]) -> str:
    """Curated bench rows: one benchmark per source family (``gen:math`` -> ``math``)."""
    src = task["source"]
    return src.split(":", 1)[1] if ":" in src else src


def load_sets(bench: Path, p: BenchParams, seed: int) -> tuple[list[dict], dict[str, str], dict]:
    """(tasks, task id -> benchmark, skipped counts) of the curated set and the named files."""
    sets: dict[str, list[dict]] = {}
    for t in validate(pl.read_parquet(bench), TASK, str(bench)).to_dicts():
        sets.setdefault(benchmark_name(t), []).append(t)
    skipped: dict[str, dict[str, int]] = {}
    for f in p.files:
        loaded = load_benchmark(f.path, f.shape, f.name, p.ifeval_unknown)
        sets.setdefault(f.name, []).extend(loaded.tasks)
        if loaded.skipped:
            skipped[f.name] = loaded.skipped
            log.warning("%s: skipped rows %s", f.path, loaded.skipped)
    tasks, owner = [], {}
    for name, rows in sets.items():
        if p.max_problems and len(rows) > p.max_problems:
            rows = pl.DataFrame(rows).sample(n=p.max_problems, seed=seed).to_dicts()
        for t in rows:
            if t["id"] not in owner:  # the same problem twice is evaluated once
                owner[t["id"]] = name
                tasks.append(t)
    return tasks, owner, skipped


def evaluate(name: str, path: str, tasks: list[dict], p: BenchParams, seed: int,
             run: Any) -> list[dict]:
    """SAMPLE rows of model ``name`` on every task."""
    sampling = Sampling(p.samples_per_problem, p.max_new_tokens, p.temperature, p.top_p, seed,
                        p.batch_prompts)

    def live(b: int, rows: list[dict]) -> None:
        run.step(b, **{f"{name}.batch_accuracy": sum(r["correct"] for r in rows) / len(rows)})

    return sample_checkpoint(path, p.engine, tasks, sampling, name, on_batch=live,
                             desc=f"bench {name}")


def samples_table(samples: Sequence[dict], tasks: Sequence[dict], owner: dict[str, str],
                  order: Sequence[str]) -> pl.DataFrame:
    """The samples with their benchmark and prompt, the models in ``order`` (the final model
    first), then by benchmark, problem and sample."""
    prompt = {t["id"]: t["prompt"] for t in tasks}
    rank = {m: i for i, m in enumerate(order)}
    rows = sorted(samples, key=lambda s: (rank.get(s["model"], len(rank)), owner[s["task_id"]],
                                          s["task_id"], s["sample_index"]))
    cols = ("model", "benchmark", "task_id", "domain", "prompt", "response", "reward",
            "correct", "reason", "tokens", "finish_reason")
    return pl.DataFrame([{**s, "benchmark": owner[s["task_id"]], "prompt": prompt[s["task_id"]]}
                         for s in rows]).select(cols) if rows else pl.DataFrame()


def parse_models(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--model {item!r}: expected NAME=PATH")
        if not Path(path, "config.json").exists():
            raise SystemExit(f"--model {name}: {path} is not an HF checkpoint (no config.json)")
        out[name] = path
    return out


def params_digest(path: Path) -> str:
    """The first 12 hex digits of the params file's SHA-256: which settings trained the model."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", type=Path, required=True)
    ap.add_argument("--model", action="append", default=[], required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load_section("bench", BenchParams, a.params)
    configure_from(a.params)  # the open_qa reward model (params section reward_model)
    seed = load_seed(a.params)
    models = parse_models(a.model)
    tasks, owner, skipped = load_sets(a.bench, p, seed)
    with stage_run("bench", p, metric_budget=BENCH_METRIC_BUDGET) as run:
        run.dataset(pl.DataFrame(tasks), "bench", str(a.bench))
        samples = [s for name, path in models.items()
                   for s in evaluate(name, path, tasks, p, seed, run)]
        metrics = group_metrics(samples, owner, p.pass_k)
        for model, groups in group_rollup(samples, p.pass_k).items():
            metrics[model].update(groups)
        if skipped:
            metrics["_skipped_rows"] = skipped
        names = list(models)
        table = markdown_table(metrics, names)
        write_parquet(a.out_dir / "samples.parquet", frame(samples, SAMPLE))
        write_json(a.out_dir / "metrics.json", metrics)
        write_headline("bench", metrics, a.out_dir)
        write_text(a.out_dir / "table.md", table)
        fig = bar_chart(metrics, names)
        with atomic_path(a.out_dir / "chart.png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        reg = p.register
        final = reg.model if reg.model in models else names[-1]
        order = [final] + [m for m in reversed(names) if m != final]
        headline = headline_text(metrics, names, final)
        scores = headline_metrics(metrics, names, final)
        run.metrics(scores)
        run.tags({"headline": headline,
                  "mlflow.note.content": f"**{headline}**\n\n{markdown_table(metrics, order)}"})
        run.figure(fig, "chart.png")
        run.table(scores_table(metrics, order), "tables/scores.json")
        run.table(samples_table(samples, tasks, owner, order), "samples.json")
        run.artifact(a.out_dir / "table.md")
        run.artifact(a.out_dir / "metrics.json")
        if reg.enabled and reg.model in models and run.run is not None:
            from pipeline.bench.registry import Provenance, register_model

            prov = Provenance(stage=reg.model, run_id=run.run_id, commit=git_commit(),
                              params_digest=params_digest(a.params), headline=headline)
            mine = {f"summary/{k}": v for k, v in scores.items() if k.startswith(f"{final}.")}
            v = register_model(models[reg.model], reg.name, reg.alias, metrics[reg.model], prov,
                               linked=mine)
            print(f"registered {reg.name} version {v.version} alias {reg.alias}")
        elif reg.enabled:
            log.warning("model not registered (tracking off or no --model %s)", reg.model)
    print(table)


if __name__ == "__main__":
    main()

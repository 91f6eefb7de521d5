"""The shared ``main()`` of the two RL stages (they differ only in params section and data).

    python -m pipeline.stages.rl_reasoning --model models/selected --tasks data/rl/reasoning.parquet \
        --val data/curated/val.parquet --out models/rl_reasoning --report-dir reports/rl_reasoning

Reads the start model (HF folder), the RL tasks and the held-out tasks (restricted to the
stage's domain group); runs :func:`pipeline.rl.trainer.train`; writes ``<out>/`` (final HF
folder, resume state kept in ``<out>/resume/``), ``<report-dir>/steps.csv`` (DVC plots),
``metrics.json`` (held-out accuracy before/after etc.) and ``reward_curve.png``; every step is
logged to MLflow as it happens.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from pipeline.atomic import atomic_path, write_json
from pipeline.engines import make_engine
from pipeline.params import as_dict, load_section, load_seed
from pipeline.rl.optim import make_updater
from pipeline.rl.params import RLParams
from pipeline.rl.trainer import History, RLRun, train
from pipeline.schema import TASK, domain_group, validate
from pipeline.tracking import stage_run
from pipeline.train.determinism import set_deterministic


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="start checkpoint (HF folder)")
    ap.add_argument("--tasks", required=True, help="RL prompts (task parquet)")
    ap.add_argument("--val", required=True, help="held-out tasks (task parquet)")
    ap.add_argument("--out", required=True, help="output HF folder (+ resume/)")
    ap.add_argument("--report-dir", required=True)
    ap.add_argument("--params", default="params.yaml")
    return ap.parse_args(argv)


def read_tasks(path: str, group: str | None = None) -> list[dict[str, Any]]:
    """Task records from a parquet file (schema-checked), optionally one domain group only."""
    df = validate(pl.read_parquet(path), TASK, path)
    rows = df.to_dicts()
    return [r for r in rows if group is None or domain_group(r["domain"]) == group]


def stratified(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of ``n`` rows taking the domains in turn, so every domain of the group
    is evaluated (val files are grouped by domain; their first rows are one domain only)."""
    by_domain: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_domain.setdefault(r["domain"], []).append(r)
    queues = []
    for d in sorted(by_domain):
        q = list(by_domain[d])
        random.Random(f"{seed}:{d}").shuffle(q)
        queues.append(q)
    out: list[dict[str, Any]] = []
    while len(out) < n and any(queues):
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


def fingerprint(params: RLParams, seed: int, model_dir: str, tasks: str) -> str:
    """Resume-state identity: params, seed and the start model's/tasks' bytes."""
    h = hashlib.sha256(json.dumps([as_dict(params), seed], sort_keys=True).encode())
    for f in sorted(Path(model_dir).glob("*.safetensors")) + [Path(tasks)]:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_run(params: RLParams, seed: int, model_dir: str, tasks: list[dict],
              score_fn: Any) -> RLRun:
    """Policy (+ optimizer), frozen reference, engine on the live policy."""
    from pipeline.model.checkpoint import load_model

    set_deterministic(params.deterministic)
    torch.manual_seed(seed)
    policy, tok = load_model(model_dir)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    policy.train()
    updater = make_updater(policy, params.optim, params.steps * params.updates_per_rollout,
                           params.deepspeed)
    if params.engine == "vllm":
        engine = make_engine("vllm", model_path=model_dir, model=updater.module)
    else:
        engine = make_engine("torch", model=updater.module, tokenizer=tok)
    return RLRun(params, seed, tok, updater, reference, engine, tasks, score_fn)


def default_score_fn(params: RLParams):
    from pipeline.verify import score_batch

    return lambda tasks, texts: score_batch(tasks, texts, workers=params.reward_workers,
                                            timeout_s=params.reward_timeout_s)


def save_final(run: RLRun, out: Path) -> None:
    """Final HF folder at ``out`` (save_checkpoint replaces it whole): keep ``out/resume``."""
    from pipeline.model.checkpoint import save_checkpoint

    resume = out / "resume"
    with tempfile.TemporaryDirectory(dir=out.parent) as keep:
        if resume.exists():
            shutil.move(str(resume), Path(keep) / "resume")
        try:
            save_checkpoint(run.updater.module, run.tokenizer, out)
        finally:
            if (Path(keep) / "resume").exists():
                shutil.move(str(Path(keep) / "resume"), resume)


def summary(hist: History, params: RLParams) -> dict[str, Any]:
    """metrics.json: held-out accuracy before/after and step means."""
    first, last = hist.evals[0], hist.evals[-1]
    out: dict[str, Any] = {"steps": len(hist.steps), "normaliser": params.normaliser}
    for k in first:
        if k.startswith("eval_") and k in last:
            out[f"initial_{k}"], out[f"final_{k}"] = first[k], last[k]
    if "eval_accuracy" in first and "eval_accuracy" in last:
        out["eval_accuracy_gain"] = last["eval_accuracy"] - first["eval_accuracy"]
    for k in ("reward", "accuracy", "tokens_trained", "tokens_per_s", "grad_norm", "entropy"):
        vals = [r[k] for r in hist.steps if k in r]
        if vals:
            out[f"mean_{k}"] = float(np.mean(vals))
    tail = [r["reward"] for r in hist.steps[-max(1, len(hist.steps) // 4):]]
    out["final_quarter_reward"] = float(np.mean(tail)) if tail else None
    return out


def plot(hist: History, stage: str, path: Path) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in hist.steps], [r["reward"] for r in hist.steps], label="reward")
    ev = [e for e in hist.evals if "eval_accuracy" in e]
    ax.plot([e["step"] for e in ev], [e["eval_accuracy"] for e in ev], "o-",
            label="held-out accuracy")
    ax.set(xlabel="RL step", ylabel="reward / accuracy", title=f"{stage}: reward curve")
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return fig


def main_for(stage: str, group: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one RL stage end to end (see module docstring); returns metrics.json's content."""
    args = parse_args(argv)
    params = load_section(stage, RLParams, args.params)
    seed = load_seed(args.params)
    tasks = read_tasks(args.tasks)
    if not tasks:
        raise SystemExit(f"{stage}: {args.tasks} holds no tasks (the difficulty stage kept none; "
                         "see its stats.json and the difficulty params)")
    val = stratified(read_tasks(args.val, group), params.eval_tasks, seed)
    out, reports = Path(args.out), Path(args.report_dir)
    with stage_run(stage, params) as tracker:
        tracker.dataset(pl.DataFrame(tasks), f"{stage}_tasks", args.tasks)
        run = build_run(params, seed, args.model, tasks, default_score_fn(params))
        hist = train(run, val, out / "resume", fingerprint(params, seed, args.model, args.tasks),
                     on_step=lambda s, m: tracker.step(s, **m))
        save_final(run, out)
        tracker.write_steps(reports / "steps.csv")
        metrics = summary(hist, params)
        write_json(reports / "metrics.json", metrics)
        tracker.metrics(metrics)
        tracker.figure(plot(hist, stage, reports / "reward_curve.png"), "reward_curve.png")
        tracker.artifact(reports / "steps.csv")
        run.engine.close()
    return metrics

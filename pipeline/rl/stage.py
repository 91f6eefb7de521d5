"""The shared ``main()`` of the two RL stages (they differ only in params section and data).

    python -m pipeline.stages.rl_reasoning --model models/selected --tasks data/rl/reasoning.parquet \
        --val data/curated/val.parquet --out models/rl_reasoning --report-dir reports/rl_reasoning

Reads the start model (HF folder), the RL tasks and the held-out tasks (restricted to the
stage's domain group); holds back ``holdout_prompts`` of the RL tasks; runs
:func:`pipeline.rl.trainer.train`; writes ``<out>/`` (final HF folder, resume state kept in
``<out>/resume/``), ``<report-dir>/steps.csv`` (DVC plots), ``metrics.json`` (held-out
accuracy before/after with a paired bootstrap CI, the same for the held-back slice, first-seen
vs repeat rewards, and ``generalised``) and ``reward_curve.png``. MLflow gets the
:data:`CURVES` of every step as it happens (and a spike-clipped KL), the :data:`SUMMARY`
values, the evaluations as a table; the run's description states whether it generalised.

``num_processes`` x ``nnodes`` > 1 re-executes the stage under torchrun
(:mod:`pipeline.train.launch`, the launcher SFT uses); a stage started by a launcher runs
with the launcher's ranks. Every rank rolls out and trains its share of each step; rank 0
alone logs to MLflow and writes the reports and the final folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from pipeline.atomic import atomic_path, write_json
from pipeline.bench.metrics import paired_bootstrap
from pipeline.engines import make_engine
from pipeline.headline import write_headline
from pipeline.params import as_dict, load_section, load_seed
from pipeline.rl.optim import make_updater
from pipeline.rl.params import RLParams, check_ranks
from pipeline.rl.prompts import hold_out
from pipeline.rl.trainer import History, RLRun, train
from pipeline.schema import TASK, domain_group, validate
from pipeline.tracking import clip_spikes, stage_run
from pipeline.train import launch
from pipeline.train.deepspeed_engine import launched
from pipeline.train.determinism import set_deterministic
from pipeline.verify.reward_model import configure_from


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


# where the ranks run and how much of a GPU vLLM takes, not what they compute: left out of the
# resume fingerprint (the world size, which changes the numbers, goes in when > 1)
LAUNCH_KEYS = ("num_processes", "nnodes", "node_rank", "master_addr", "master_port",
               "vllm_gpu_memory")


def fingerprint(params: RLParams, seed: int, model_dir: str, tasks: str, world: int = 1) -> str:
    """Resume-state identity: params, seed, the start model's/tasks' bytes, the world size."""
    keyed = {k: v for k, v in as_dict(params).items() if k not in LAUNCH_KEYS}
    h = hashlib.sha256(json.dumps([keyed, seed] + ([world] if world > 1 else []),
                                  sort_keys=True).encode())
    for f in sorted(Path(model_dir).glob("*.safetensors")) + [Path(tasks)]:
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def frozen_like(reference: torch.nn.Module, policy: torch.nn.Module) -> torch.nn.Module:
    """``reference`` frozen, in eval mode, on the policy's device and in its dtype.

    The policy is moved (and on a GPU cast to bf16) by the optimizer's setup; a reference
    copied before that would stay on the CPU in fp32, and the KL term would mix devices.
    """
    p = next(policy.parameters())
    return reference.to(device=p.device, dtype=p.dtype).eval().requires_grad_(False)


def vllm_options(params: RLParams) -> dict[str, Any]:
    """The RL stage's vLLM engine options: on a GPU, the share of its memory vLLM may take
    (vLLM's default, 0.9, leaves too little for the policy beside it); none on CPU."""
    if torch.cuda.is_available():
        return {"llm_kwargs": {"gpu_memory_utilization": params.vllm_gpu_memory}}
    return {}


def build_run(params: RLParams, seed: int, model_dir: str, tasks: list[dict],
              score_fn: Any, holdout: Sequence[dict] = ()) -> RLRun:
    """Policy (+ optimizer), frozen reference on the policy's device and dtype, engine on the
    live policy (under ZeRO-3: on its plain copy ``updater.local``)."""
    from pipeline.model.checkpoint import load_model

    set_deterministic(params.deterministic)
    torch.manual_seed(seed)
    policy, tok = load_model(model_dir)
    policy.train()
    updater = make_updater(policy, params.optim, params.steps * params.updates_per_rollout,
                           params.deepspeed)
    reference = frozen_like(load_model(model_dir)[0], updater.module)
    if params.engine == "vllm":  # synced with the policy at start: its whole weights
        with updater.full_weights():
            engine = make_engine("vllm", model_path=model_dir, model=updater.module,
                                 **vllm_options(params))
    else:
        engine = make_engine("torch", model=updater.local, tokenizer=tok)
    return RLRun(params, seed, tok, updater, reference, engine, tasks, score_fn, holdout)


def default_score_fn(params: RLParams):
    from pipeline.verify import score_batch

    return lambda tasks, texts: score_batch(tasks, texts, workers=params.reward_workers,
                                            timeout_s=params.reward_timeout_s)


def save_final(run: RLRun, out: Path) -> None:
    """Final HF folder at ``out`` (save_checkpoint replaces it whole): keep ``out/resume``.
    Every rank calls it (ZeRO-3 gathers the weights); rank 0 writes."""
    with run.updater.full_weights():
        if run.rank == 0:
            _save_final(run, out)


def _save_final(run: RLRun, out: Path) -> None:
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


def _gain(hist: History, key: str, seed: int) -> dict[str, Any]:
    """Paired before/after comparison of the per-task scores under ``key`` (eval | holdout):
    the first and the last evaluation of the run."""
    runs = [e for e in hist.items if e.get(key)]
    if len(runs) < 2:
        return {}
    first, last = runs[0][key], runs[-1][key]
    diff, lo, hi = paired_bootstrap(first, last, seed=seed)
    return {"gain": diff, "gain_ci_low": lo, "gain_ci_high": hi, "tasks": len(first)}


def summary(hist: History, params: RLParams, seed: int = 0) -> dict[str, Any]:
    """metrics.json: held-out accuracy before/after with paired 95% CIs, the held-back slice,
    first-seen vs repeat rewards, step means, and whether the run generalised."""
    first, last = hist.evals[0], hist.evals[-1]
    out: dict[str, Any] = {"steps": len(hist.steps), "normaliser": params.normaliser,
                           "placebo": params.placebo}
    for k in first:
        if (k.startswith(("eval_", "holdout_"))) and k in last:
            out[f"initial_{k}"], out[f"final_{k}"] = first[k], last[k]
    for key, name in (("eval", "eval_accuracy"), ("holdout", "holdout_accuracy")):
        for k, v in _gain(hist, key, seed).items():
            out[f"{name}_{k}"] = v
    for k in ("reward", "accuracy", "tokens_trained", "tokens_per_s", "grad_norm", "entropy",
              "kl", "reward_first_seen", "reward_repeat", "rollout_rounds"):
        vals = [r[k] for r in hist.steps if k in r]
        if vals:
            out[f"mean_{k}"] = float(np.mean(vals))
    tail = [r["reward"] for r in hist.steps[-max(1, len(hist.steps) // 4):]]
    out["final_quarter_reward"] = float(np.mean(tail)) if tail else None
    drawn = sum(r.get("prompts_drawn", 0.0) for r in hist.steps)
    repeats = sum(r.get("prompts_repeat", 0.0) for r in hist.steps)
    out["prompts_drawn"] = int(drawn)
    out["prompts_distinct"] = int(hist.steps[-1].get("prompts_distinct", 0)) if hist.steps else 0
    out["repeat_share"] = repeats / drawn if drawn else 0.0
    fills = [r["budget_fill"] for r in hist.steps if "budget_fill" in r]
    if fills:  # C3PO: steps whose rollout rounds ran out before Φ tokens had reward variance
        out["steps_short_of_budget"] = sum(f < 1.0 for f in fills)
    low = out.get("eval_accuracy_gain_ci_low")
    out["generalised"] = bool(low is not None and low > 0)
    out["verdict"] = verdict(out)
    return out


def verdict(m: dict[str, Any]) -> str:
    """One plain sentence on whether the run improved tasks it never trained on."""
    if "eval_accuracy_gain" not in m:
        return "no held-out evaluation: cannot tell whether the run generalised"
    g, lo, hi, n = (m["eval_accuracy_gain"], m["eval_accuracy_gain_ci_low"],
                    m["eval_accuracy_gain_ci_high"], m["eval_accuracy_tasks"])
    head = ("generalised" if lo > 0 else "got worse on held-out tasks" if hi < 0
            else "no held-out gain shown")
    text = (f"{head}: held-out accuracy {100 * g:+.1f} points (95% CI {100 * lo:+.1f} to "
            f"{100 * hi:+.1f}) on {n} tasks never trained on")
    if "holdout_accuracy_gain" in m:
        text += (f"; held-back pool slice {100 * m['holdout_accuracy_gain']:+.1f} (95% CI "
                 f"{100 * m['holdout_accuracy_gain_ci_low']:+.1f} to "
                 f"{100 * m['holdout_accuracy_gain_ci_high']:+.1f}, "
                 f"{m['holdout_accuracy_tasks']} prompts)")
    if m.get("repeat_share"):
        text += f"; {100 * m['repeat_share']:.0f}% of prompt draws were repeats"
    if m.get("steps_short_of_budget"):
        text += (f"; {m['steps_short_of_budget']} of {m['steps']} steps trained fewer than Φ "
                 f"tokens (the rollout rounds ran out: raise max_rollout_rounds)")
    if m.get("placebo"):
        text += " (placebo run: rewards shuffled within groups)"
    return text + "."


def plot(hist: History, stage: str, path: Path) -> Any:
    """Training reward (first-seen prompts and repeats apart) and the held-out and held-back
    accuracies with their standard errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    steps = [r["step"] for r in hist.steps]
    ax.plot(steps, [r["reward"] for r in hist.steps], color="0.6", lw=1, label="reward (all)")
    for key, style in (("reward_first_seen", "-"), ("reward_repeat", ":")):
        pts = [(r["step"], r[key]) for r in hist.steps if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, lw=1.5,
                    label=key.replace("_", " ").replace("reward ", "reward, "))
    for key, marker in (("eval_accuracy", "o"), ("holdout_accuracy", "s")):
        ev = [e for e in hist.evals if key in e]
        if ev:
            ax.errorbar([e["step"] for e in ev], [e[key] for e in ev],
                        yerr=[1.96 * e.get(f"{key}_se", 0.0) for e in ev], marker=marker,
                        capsize=3, label={"eval_accuracy": "held-out accuracy",
                                          "holdout_accuracy": "held-back pool accuracy"}[key])
    ax.set(xlabel="RL step", ylabel="reward / accuracy", title=f"{stage}: learning curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return fig


# What MLflow charts per step (the rest of each step row is in steps.csv), and the summary
# values it shows; per-domain detail is in the evals table.
CURVES = ("reward", "reward_first_seen", "reward_repeat", "accuracy", "kl", "entropy",
          "grad_norm", "loss", "tokens_trained", "response_len", "truncated_frac",
          "clip_fraction", "lr", "time_step_s", "tokens_per_s", "eval_accuracy",
          "holdout_accuracy")
SUMMARY = ("generalised", "initial_eval_accuracy", "final_eval_accuracy", "eval_accuracy_gain",
           "eval_accuracy_gain_ci_low", "eval_accuracy_gain_ci_high", "initial_holdout_accuracy",
           "final_holdout_accuracy", "holdout_accuracy_gain", "holdout_accuracy_gain_ci_low",
           "holdout_accuracy_gain_ci_high", "final_quarter_reward", "mean_kl", "repeat_share",
           "prompts_distinct", "steps", "steps_short_of_budget")
CHART_NOTE = ("Charts: `kl_clipped` is the KL capped at 3x its running median, so one spike "
              "does not flatten the curve (`kl` is the raw mean; or set its chart's y-axis to "
              "log scale). Every per-step value is in `steps.csv`, per-domain held-out "
              "accuracy in `tables/evals.json`.")


# a several-rank run's balance, two curves for any number of ranks (each rank's figures are in
# steps.csv, which the run logs as an artifact)
RANK_CURVES = ("tokens_trained_rank_ratio", "time_busy_s_rank_spread")


def chart_row(row: dict[str, Any], kl_seen: list[float]) -> dict[str, Any]:
    """The :data:`CURVES` of one step row (with a several-rank run's :data:`RANK_CURVES`),
    plus ``kl_clipped`` (``kl_seen``: the KL values so far, this one appended)."""
    out = {k: row[k] for k in (*CURVES, *RANK_CURVES) if k in row}
    if "kl" in row:
        kl_seen.append(float(row["kl"]))
        out["kl_clipped"] = clip_spikes(kl_seen)
    return out


def main_for(stage: str, group: str, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one RL stage end to end (see module docstring); returns metrics.json's content."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    params = load_section(stage, RLParams, args.params)
    configure_from(args.params)  # the open_qa reward model (params section reward_model)
    seed = load_seed(args.params)
    if params.num_processes * params.nnodes > 1 and not launched():
        launch.relaunch(f"pipeline.stages.{stage}", argv, launch.Rendezvous.resolve(
            params.num_processes, params.nnodes, params.node_rank, params.master_addr,
            params.master_port))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by a launcher with its ranks
        check_ranks(params)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        os.environ["RINGLITE_TRACKING"] = "off"  # rank 0 logs for everyone
    tasks = read_tasks(args.tasks)
    if not tasks:
        raise SystemExit(f"{stage}: {args.tasks} holds no tasks (the difficulty stage kept none; "
                         "see its stats.json and the difficulty params)")
    train_tasks, held = hold_out(tasks, params.holdout_prompts, seed)
    val = stratified(read_tasks(args.val, group), params.eval_tasks, seed)
    out, reports = Path(args.out), Path(args.report_dir)
    with stage_run(stage, params) as tracker:
        tracker.dataset(pl.DataFrame(tasks), f"{stage}_tasks", args.tasks)
        run = build_run(params, seed, args.model, train_tasks, default_score_fn(params), held)
        kl_seen: list[float] = []
        hist = train(run, val, out / "resume",
                     fingerprint(params, seed, args.model, args.tasks, run.world),
                     on_step=lambda s, m: tracker.record(s, m, chart_row(m, kl_seen)))
        save_final(run, out)
        if run.rank != 0:
            _leave(run)
            return summary(hist, params, seed)
        tracker.write_steps(reports / "steps.csv")
        metrics = summary(hist, params, seed)
        write_json(reports / "metrics.json", metrics)
        write_headline(stage, metrics, reports)
        tracker.metrics({k: metrics[k] for k in SUMMARY if k in metrics})
        tracker.table(hist.evals, "tables/evals.json")
        tracker.tags({"generalised": metrics["generalised"],
                      "mlflow.note.content": f"{stage}: {metrics['verdict']}\n\n{CHART_NOTE}"})
        print(f"{stage}: {metrics['verdict']}")
        tracker.figure(plot(hist, stage, reports / "reward_curve.png"), "reward_curve.png")
        tracker.artifact(reports / "steps.csv")
        _leave(run)
    return metrics


def _leave(run: RLRun) -> None:
    """Close the engine and end a several-rank run's process group (after rank 0 has written
    everything). The ranks meet before their engines close: a vLLM engine running in the
    rank's process takes the ranks' process group as its own when it starts and ends it when
    it closes."""
    if run.world > 1:
        torch.distributed.barrier()
    run.engine.close()
    if run.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

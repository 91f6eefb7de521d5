"""sft: long-CoT supervised fine-tuning of the base MoE on the verified distilled traces.

Reads the traces (schema TRACE, verified rows only) and the base HF folder; trains with
DeepSpeed (:mod:`pipeline.train.deepspeed_engine`: ZeRO stage from params, gloo/fp32 on CPU,
nccl/bf16 on GPU) on packed rows with the loss on response tokens only
(:mod:`pipeline.train.packing`, :mod:`pipeline.train.sft`). Writes:

- ``<out>/epoch_<k>/``: HF folder after epoch k (k = 1..epochs), for ``select``;
- ``<out>/ds_state/``: DeepSpeed state every ``save_every_steps`` steps and per epoch; a rerun
  (e.g. after ``kill -9``) resumes from it with the same data position and RNG states;
- ``<report-dir>/steps.csv`` (DVC plot: loss, lr, grad_norm, tokens_per_s per step),
  ``loss.png``, ``metrics.json`` (final loss, tokens, greedy accuracy per epoch on ``--val``).

``sft.num_processes > 1`` re-executes this module under ``torchrun`` with that many ranks
(``OMP_NUM_THREADS=1``). Run::

    python -m pipeline.stages.sft --traces data/distill/traces.parquet --base models/base \
        --out models/sft --report-dir reports/sft --val data/curated/val.parquet
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl
import torch

from pipeline.atomic import atomic_path, write_json
from pipeline.headline import write_headline
from pipeline.params import as_dict, load_section, load_seed
from pipeline.schema import TASK, TRACE, validate
from pipeline.tracking import StageRun, StepWindow, stage_run
from pipeline.train import launch, resume
from pipeline.train.deepspeed_engine import init_engine, launched, whole_copy, whole_model
from pipeline.train.greedy_eval import greedy_accuracy
from pipeline.train.sft import (
    Hooks,
    LoopState,
    SftParams,
    epoch_plans,
    rng_state,
    rows_per_step,
    set_rng_state,
    tokenize_traces,
    total_steps,
    train,
)
from pipeline.verify.reward_model import configure_from

log = logging.getLogger("sft")
__all__ = ["SftParams", "main"]


def eval_tasks(val: Path | None, domains: set[str], exclude: set[str], n: int, seed: int
               ) -> list[dict[str, Any]]:
    """A seeded sample of ``n`` held-out tasks in the trained domains (not in the traces)."""
    if val is None or n <= 0:
        return []
    df = validate(pl.read_parquet(val), TASK, str(val))
    rows = [r for r in df.iter_rows(named=True) if r["domain"] in domains and r["id"] not in exclude]
    random.Random(seed).shuffle(rows)
    return rows[:n]


def relaunch(argv: Sequence[str], n: int) -> None:
    """Re-run this stage under torchrun with ``n`` ranks on this node; exits with its status."""
    launch.relaunch("pipeline.stages.sft", argv, launch.Rendezvous(n))


def loss_figure(history: list[dict[str, float]], evals: list[dict[str, Any]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / response token)")
    acc = [(e["step"], e["accuracy"]) for e in evals if e.get("n")]
    if acc:
        ax2 = ax.twinx()
        ax2.plot(*zip(*acc, strict=True), "o--", color="tab:orange", label="greedy accuracy")
        ax2.set_ylabel("held-out greedy accuracy")
        ax2.set_ylim(0, 1)
    ax.set_title("SFT")
    fig.tight_layout()
    return fig


class StageHooks(Hooks):
    """Logging, checkpoints and per-epoch eval for the SFT loop."""

    def __init__(self, engine: Any, tok: Any, out: Path, tasks: list[dict], p: SftParams,
                 run: StageRun, rank: int, whole: torch.nn.Module | None = None):
        self.engine, self.tok, self.out, self.tasks, self.p = engine, tok, out, tasks, p
        self.run, self.rank = run, rank
        self.whole = whole  # ZeRO-3: rank 0's copy of the model for saves and evals
        # MLflow gets one point per log_every_steps (window means); steps.csv gets every step
        self.window = StepWindow(run, p.log_every_steps, last=("lr", "epoch"))

    def on_step(self, m: dict[str, float]) -> None:
        if self.rank == 0:
            self.window.add(int(m["step"]), {k: v for k, v in m.items() if k != "step"})

    def save_state(self, state: LoopState) -> None:
        tag = resume.tag_for(state.step)
        client = {"loop": state.to_dict(), "rng": rng_state()}
        state_dir = self.out / resume.STATE_DIR
        # DeepSpeed's own ``latest`` is truncated and rewritten in place, by rank 0 before the
        # other ranks finish their shards: a kill there leaves an empty or early pointer
        self.engine.save_checkpoint(str(state_dir), tag=tag, client_state=client,
                                    save_latest=False)  # returns after every rank's barrier
        if self.rank == 0:
            resume.commit_tag(state_dir, tag)

    def on_epoch_end(self, epoch: int, state: LoopState) -> dict[str, Any]:
        result: dict[str, Any] = {"step": state.step}
        with whole_model(self.engine, self.whole) as model:  # collective under ZeRO-3
            if self.rank == 0:
                self._save_and_eval(model, epoch, state, result)
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
        return result

    def _save_and_eval(self, model: Any, epoch: int, state: LoopState,
                       result: dict[str, Any]) -> None:
        from pipeline.model import save_checkpoint

        self.window.flush()
        save_checkpoint(model, self.tok, self.out / f"epoch_{epoch + 1}")
        if self.tasks:
            from pipeline.verify import score_batch

            ev = greedy_accuracy(model, self.tok, self.tasks, score_batch,
                                 self.p.eval_max_new_tokens, self.p.eval_batch_size)
            self.run.table(ev.pop("samples"), f"eval/epoch_{epoch + 1}.json")
            result.update(ev)
            self.run.log_at(state.step, {"eval_accuracy": ev["accuracy"]})
            log.info("epoch %d: greedy accuracy %.3f on %d held-out tasks", epoch + 1,
                     ev["accuracy"], ev["n"])


def summary(state: LoopState, dropped: int, n_samples: int) -> dict[str, Any]:
    last = state.history[-max(1, len(state.history) // 20):]  # last ~5% of steps
    evals = [e for e in state.evals if e.get("n")]
    return {
        "final_loss": sum(h["loss"] for h in last) / len(last),
        "first_loss": state.history[0]["loss"],
        "steps": state.step, "tokens": state.tokens, "samples": n_samples,
        "dropped_too_long": dropped,
        "tokens_per_s": sum(h["tokens"] for h in state.history)
        / sum(h["tokens"] / h["tokens_per_s"] for h in state.history),
        "eval_accuracy": {f"epoch_{e['epoch']}": e["accuracy"] for e in evals},
        "eval_accuracy_per_domain": {f"epoch_{e['epoch']}": e["per_domain"] for e in evals},
        "final_eval_accuracy": evals[-1]["accuracy"] if evals else None,
    }


def run_sft(a: argparse.Namespace, p: SftParams, seed: int, run: StageRun) -> dict[str, Any]:
    from pipeline.model import load_model

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    torch.manual_seed(seed)
    traces = validate(pl.read_parquet(a.traces), TRACE, str(a.traces)).filter(pl.col("verified"))
    if traces.is_empty():
        raise ValueError(f"{a.traces}: no verified traces to train on")
    model, tok = load_model(str(a.base))
    samples, dropped = tokenize_traces(tok, traces["prompt"].to_list(),
                                       traces["response"].to_list(), p.max_seq_len)
    if not samples:
        raise ValueError(f"{a.traces}: every trace is longer than sft.max_seq_len={p.max_seq_len}")
    tasks = eval_tasks(a.val, set(traces["domain"].unique()), set(traces["task_id"]),
                       p.eval_tasks, seed)
    if p.max_seq_len > p.row_tokens:
        raise ValueError(f"sft.max_seq_len={p.max_seq_len} > sft.row_tokens={p.row_tokens}")
    n_steps = total_steps(epoch_plans(samples, p, seed), rows_per_step(p, world))
    fp = resume.fingerprint({"sft": as_dict(p), "seed": seed},
                            {"traces": a.traces, "base": a.base}, world)
    whole = whole_copy(model, p.optim, rank)  # ZeRO-3 partitions the model in place
    engine = init_engine(model, p.optim, n_steps, micro_batch_size=p.micro_batch_rows,
                         grad_accum=p.grad_accum)
    if rank == 0:
        run.dataset(traces.select("task_id", "domain", "response_tokens"), "traces",
                    str(a.traces))
    decision = [resume.prepare_out_dir(a.out, fp) if rank == 0 else None]
    if world > 1:  # rank 0 decides (and wipes a stale folder); everyone follows
        torch.distributed.broadcast_object_list(decision, src=0)
    can_resume = bool(decision[0])
    state = LoopState()
    if can_resume:
        _, client = engine.load_checkpoint(str(a.out / resume.STATE_DIR))
        state = LoopState.from_dict(client["loop"])
        set_rng_state(client["rng"])
        log.info("resuming at step %d (epoch %d, step %d in epoch)", state.step,
                 state.epoch + 1, state.epoch_step)
    hooks = StageHooks(engine, tok, a.out, tasks, p, run, rank, whole)
    state = train(engine, samples, p, seed, state, hooks, world, rank, tok.pad_token_id)
    return {"state": state, "dropped": dropped, "n_samples": len(samples)}


def write_reports(report_dir: Path, res: dict[str, Any], run: StageRun) -> dict[str, Any]:
    state: LoopState = res["state"]
    metrics = summary(state, res["dropped"], res["n_samples"])
    run.steps = [dict(h) for h in state.history]  # after a resume: the whole history
    run.write_steps(report_dir / "steps.csv")
    write_json(report_dir / "metrics.json", metrics)
    write_headline("sft", metrics, report_dir)
    fig = loss_figure(state.history, state.evals)
    with atomic_path(report_dir / "loss.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    run.figure(fig, "loss.png")
    run.metrics(headline(metrics))
    per_epoch = [{"epoch": e, "accuracy": metrics["eval_accuracy"][e], **domains}
                 for e, domains in metrics["eval_accuracy_per_domain"].items()]
    if per_epoch:
        run.table(per_epoch, "tables/eval_accuracy_per_epoch.json")
    return metrics


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The SFT run's MLflow summary; accuracy per epoch and domain is the ``eval_accuracy``
    curve and a table."""
    keys = ("first_loss", "final_loss", "steps", "tokens", "samples", "dropped_too_long",
            "tokens_per_s", "final_eval_accuracy")
    return {k: metrics[k] for k in keys}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report-dir", type=Path, required=True)
    ap.add_argument("--val", type=Path, default=None, help="held-out tasks for greedy eval")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load_section("sft", SftParams, a.params)
    configure_from(a.params)  # the open_qa reward model (params section reward_model)
    seed = load_seed(a.params)
    if p.num_processes > 1 and not launched():
        relaunch(argv, p.num_processes)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:
        os.environ["RINGLITE_TRACKING"] = "off"  # rank 0 logs for everyone
    with stage_run("sft", p) as run:
        res = run_sft(a, p, seed, run)
        if rank == 0:
            metrics = write_reports(a.report_dir, res, run)
            log.info("sft done: %s", {k: metrics[k] for k in ("final_loss", "steps", "tokens")})
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

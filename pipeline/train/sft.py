"""The SFT loop: packed rows, loss on response tokens, DeepSpeed steps, resumable state.

Pure core: no file I/O and no tracking here. The stage (``pipeline/stages/sft.py``) passes
:class:`Hooks` that log, save and evaluate. One loop serves one process or several ranks
(torchrun / deepspeed launcher): each optimizer step takes ``world * grad_accum`` rows of the
epoch's packed order; rank ``r`` trains on its share.

Resume: :class:`LoopState` (epoch, next step in the epoch, global step, tokens, history) goes
into the DeepSpeed checkpoint as client state, with the RNG states. The epoch's row order is a
pure function of ``(seed, epoch)``, so restoring the state replays exactly the remaining steps.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.model.chat import format_prompt
from pipeline.train.deepspeed_engine import (
    OptimParams,
    collective_device,
    current_lr,
    grad_norm,
)
from pipeline.train.packing import PackedRow, Sample, pack_row, plan_rows, stack_rows


@dataclass(frozen=True)
class SftParams:
    """Section ``sft`` of params.yaml."""

    epochs: int = 10  # one checkpoint per epoch, so `select` has several to choose from
    row_tokens: int = 256  # tokens per packed row (>= max_seq_len)
    micro_batch_rows: int = 4  # rows stacked into one micro-batch (B, row_tokens)
    max_seq_len: int = 256  # prompt + response tokens; longer traces are dropped (counted)
    grad_accum: int = 1  # micro-batches per optimizer step and rank
    aux_loss_coef: float = 0.001  # MoE load-balancing loss weight (0 = off)
    save_every_steps: int = 100  # DeepSpeed state for resume, besides every epoch end
    log_every_steps: int = 10  # steps averaged into one MLflow point (steps.csv: every step)
    num_processes: int = 1  # >1: main() re-executes itself under torchrun (gloo on CPU)
    eval_tasks: int = 64  # held-out easy tasks greedy-decoded after each epoch (0 = off)
    eval_max_new_tokens: int = 128
    eval_batch_size: int = 48
    optim: OptimParams = field(default_factory=OptimParams)


@dataclass
class LoopState:
    """Where training is; saved with every DeepSpeed checkpoint."""

    epoch: int = 0  # epoch in progress (== epochs when done)
    epoch_step: int = 0  # next optimizer step inside that epoch
    step: int = 0  # optimizer steps done in total
    tokens: int = 0  # tokens trained on (all ranks)
    history: list[dict[str, float]] = field(default_factory=list)  # per-step metrics
    evals: list[dict[str, Any]] = field(default_factory=list)  # per-epoch eval results

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        return cls(**d)


class Hooks:
    """Side effects the stage provides; the base class does nothing (override what you need)."""

    def on_step(self, metrics: dict[str, float]) -> None:
        """After every optimizer step (metrics already summed over ranks)."""

    def save_state(self, state: LoopState) -> None:
        """Save a resumable state; collective: every rank calls it."""

    def on_epoch_end(self, epoch: int, state: LoopState) -> dict[str, Any]:
        """After epoch ``epoch`` (0-based); returns eval results stored in ``state.evals``."""
        return {}


def tokenize_traces(
    tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], max_seq_len: int
) -> tuple[list[Sample], int]:
    """Chat-format and tokenize traces; returns (samples, number dropped as too long).

    The prompt is rendered with the tokenizer's chat template (generation prompt included) and
    tokenized apart from the response, as at inference; the response ends with EOS.
    """
    samples, dropped = [], 0
    eos = tokenizer.eos_token
    for prompt, response in zip(prompts, responses, strict=True):
        p_ids = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=False).input_ids
        r_ids = tokenizer(response + eos, add_special_tokens=False).input_ids
        if len(p_ids) + len(r_ids) > max_seq_len:
            dropped += 1
            continue
        ids = tuple(p_ids + r_ids)
        samples.append(Sample(ids, tuple([False] * len(p_ids) + [True] * len(r_ids))))
    return samples, dropped


def row_loss(model: Any, row: PackedRow, aux_loss_coef: float = 0.0) -> tuple[torch.Tensor, ...]:
    """(loss to backprop, summed CE over response tokens, response-token count) for one row.

    CE is summed over the row's labelled tokens and divided by their count; the MoE balance
    loss (transformers' ``aux_loss``) is added with weight ``aux_loss_coef``.
    """
    dev = next(model.parameters()).device
    out = model(
        input_ids=row.input_ids.to(dev), position_ids=row.position_ids.to(dev),
        attention_mask=None, output_router_logits=aux_loss_coef > 0, use_cache=False,
    )
    labels = row.labels.to(dev)
    ce_sum = F.cross_entropy(
        out.logits.float().view(-1, out.logits.shape[-1]), labels.view(-1),
        ignore_index=-100, reduction="sum",
    )
    n = (labels != -100).sum()
    loss = ce_sum / n.clamp(min=1)
    if aux_loss_coef > 0 and getattr(out, "aux_loss", None) is not None:
        loss = loss + aux_loss_coef * out.aux_loss
    return loss, ce_sum.detach(), n


def epoch_plans(samples: list[Sample], p: SftParams, seed: int) -> list[list[list[int]]]:
    """Row plans (sample indices per row) of every epoch; epoch e is shuffled with seed+e."""
    lengths = [len(s) for s in samples]
    return [plan_rows(lengths, p.row_tokens, seed * 1000 + e) for e in range(p.epochs)]


def steps_in_epoch(n_rows: int, rows_per_step: int) -> int:
    return max(1, -(-n_rows // rows_per_step))


def rows_per_step(p: SftParams, world: int) -> int:
    """Rows one optimizer step consumes over all ranks."""
    return world * p.grad_accum * p.micro_batch_rows


def total_steps(plans: list[list[list[int]]], rows_step: int) -> int:
    return sum(steps_in_epoch(len(rows), rows_step) for rows in plans)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _reduce(values: list[float]) -> list[float]:
    """Sum ``values`` over ranks (no-op in one process)."""
    if not (torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1):
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=collective_device())
    torch.distributed.all_reduce(t)
    return t.tolist()


def train_step(engine: Any, rows: list[PackedRow], aux_loss_coef: float) -> dict[str, float]:
    """One optimizer step over this rank's micro-batches; metrics summed over all ranks."""
    t0 = time.perf_counter()
    ce_total, n_total, tok_total = 0.0, 0.0, 0.0
    for row in rows:
        loss, ce_sum, n = row_loss(engine, row, aux_loss_coef)
        engine.backward(loss)
        engine.step()  # DeepSpeed only updates at the gradient-accumulation boundary
        ce_total += float(ce_sum)
        n_total += float(n)
        tok_total += row.n_tokens
    ce_total, n_total, tok_total = _reduce([ce_total, n_total, tok_total])
    seconds = time.perf_counter() - t0
    return {
        "loss": ce_total / max(n_total, 1.0), "lr": current_lr(engine),
        "grad_norm": grad_norm(engine), "tokens": tok_total, "loss_tokens": n_total,
        "tokens_per_s": tok_total / max(seconds, 1e-9),
    }


def step_batches(
    samples: list[Sample], plan: list[list[int]], epoch_step: int, p: SftParams, world: int,
    rank: int, pad_id: int,
) -> list[PackedRow]:
    """This rank's micro-batches for one step (indices wrap so every rank has work).

    Step rows ``[s*W*G*R, (s+1)*W*G*R)`` of the epoch order: micro-batch k of rank r takes
    ``R`` consecutive rows starting at ``(k*W + r)*R`` (so 2 ranks x 1 micro-batch see the same
    rows as 1 rank x 2 accumulated micro-batches).
    """
    R = p.micro_batch_rows
    base = epoch_step * rows_per_step(p, world)
    out = []
    for k in range(p.grad_accum):
        start = base + (k * world + rank) * R
        rows = [pack_row([samples[i] for i in plan[(start + j) % len(plan)]]) for j in range(R)]
        out.append(stack_rows(rows, pad_id))
    return out


def train(
    engine: Any, samples: list[Sample], p: SftParams, seed: int, state: LoopState,
    hooks: Hooks, world: int = 1, rank: int = 0, pad_id: int = 0,
) -> LoopState:
    """Run (or resume) SFT from ``state`` to the end of ``p.epochs``; returns the final state."""
    plans = epoch_plans(samples, p, seed)
    n_total = total_steps(plans, rows_per_step(p, world))
    bar = tqdm(total=n_total, initial=state.step, desc="sft", disable=rank != 0)
    while state.epoch < p.epochs:
        n_steps = steps_in_epoch(len(plans[state.epoch]), rows_per_step(p, world))
        while state.epoch_step < n_steps:
            batches = step_batches(samples, plans[state.epoch], state.epoch_step, p, world, rank,
                                   pad_id)
            m = train_step(engine, batches, p.aux_loss_coef)
            state.epoch_step += 1
            state.step += 1
            state.tokens += int(m["tokens"])
            m = {"step": state.step, "epoch": state.epoch + state.epoch_step / n_steps, **m}
            state.history.append(m)
            hooks.on_step(m)
            bar.update(1)
            bar.set_postfix(loss=f"{m['loss']:.3f}", epoch=state.epoch)
            if p.save_every_steps and state.step % p.save_every_steps == 0:
                hooks.save_state(state)
        result = hooks.on_epoch_end(state.epoch, state)
        state.evals.append({"epoch": state.epoch + 1, **result})
        state.epoch += 1
        state.epoch_step = 0
        hooks.save_state(state)
    bar.close()
    return state

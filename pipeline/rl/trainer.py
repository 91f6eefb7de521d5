"""The RL step loop shared by rl_reasoning and rl_general (C3PO; see docs/rl.md).

One step s (C3PO, Ring-lite arXiv 2506.14731, Eq. 2-3):

1. rollout: the next L prompts of the prompt stream (:mod:`pipeline.rl.prompts`: epochs over
   the pool by default) x K responses each from the generation engine (temperature, top-p,
   max new tokens from params); with ``max_rollout_rounds`` > 1, further rounds of L prompts
   while the groups with reward variance hold fewer than Φ tokens (dynamic sampling);
2. rewards and correctness from the shared verifier (``score_fn``); under ``placebo`` the
   rewards the update sees are shuffled within each group (the logged ones are not);
3. group advantages over all K; zero-variance groups counted, dropped before the walk if set;
4. token budget: walk the responses (``walk_order``), keep whole ones under Φ, cut the
   crossing one so exactly Φ tokens are selected (per step or per mini-batch);
5. old log-probs (policy before the update) and reference log-probs, no grad; when the first
   update of a mini-batch runs on the rollout policy's weights (always under ``step``
   granularity), its own forward supplies the old log-probs (detached), so no separate
   scoring pass is run;
6. ``updates_per_rollout`` optimizer steps on the C3PO loss + entropy bonus + MoE losses;
7. one row of metrics (reward, accuracy, lengths, tokens trained/dropped, grad norm, entropy,
   KL, clip fraction, rollout/trainer mismatch, time split, tokens/s).

Each step also reports reward and accuracy apart for prompts drawn for the first time in the
run and for repeats, so a rising reward curve can be told apart from memorising the pool.

The loop itself (:func:`train`) adds evaluation every ``eval_every`` steps (held-out tasks,
and the held-back slice of the pool, each with its standard error), resume state every
``checkpoint_every`` steps (:mod:`pipeline.rl.checkpoint`), and the live-weights sync of the
generation engine after each step.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm.auto import tqdm

from pipeline.bench.metrics import mean_se
from pipeline.engines.scoring import (
    has_router,
    length_chunks,
    mismatch,
    policy_forward,
    score_rows,
)
from pipeline.rl import checkpoint
from pipeline.rl.budget import group_advantages, select_all, select_budget, walk_order
from pipeline.rl.c3po import Coefs, objective
from pipeline.rl.dist import all_sum, balanced_split, gather, slice_for, world_rank
from pipeline.rl.params import RLParams, check_ranks
from pipeline.rl.prompts import PromptStream
from pipeline.rl.rollout import Rollout, ScoreFn, merge, rollout, score

log = logging.getLogger("rl")

FAULT_ENV = "RINGLITE_RL_KILL_AFTER_STEP"  # fault injection for the kill -9 resume test
RANK_SEED = 1_000_000_007  # engine seed offset per rank: rank 0 samples as one process does


@dataclass
class RLRun:
    """Everything one RL stage run holds: models, engine, optimizer, data, params."""

    params: RLParams
    seed: int
    tokenizer: Any
    updater: Any  # pipeline.rl.optim updater; .module is the live policy
    reference: torch.nn.Module  # frozen start model for the KL term
    engine: Any  # GenerationEngine sampling from the policy (a torch engine: updater.local)
    tasks: Sequence[Mapping[str, Any]]  # the training pool (held-back slice already removed)
    score_fn: ScoreFn
    holdout: Sequence[Mapping[str, Any]] = ()  # never trained on; scored at every evaluation
    pad_id: int = field(init=False)
    stream: PromptStream = field(init=False)
    world: int = field(init=False)  # data-parallel ranks (1 without a process group)
    rank: int = field(init=False)
    # this step's seconds of work that never waits for another rank: sampling, scoring,
    # reference scoring, the update's forwards (:func:`rl_step`)
    busy_s: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        # every rank holds the same stream and draws the same prompts; each rolls out its share
        self.stream = PromptStream(self.tasks, self.params.prompt_order,
                                   self.params.domain_mix, self.seed)
        self.world, self.rank = world_rank()
        if self.world > 1:
            check_ranks(self.params)
        if (getattr(self.updater, "partitioned", False)
                and getattr(self.engine, "model", None) is self.updater.module):
            raise ValueError("ZeRO-3: the torch engine must sample from updater.local (a plain "
                             "copy of the policy), not from the partitioned updater.module")
        if self.params.prompts_per_step < self.world:
            raise ValueError(f"rl.prompts_per_step={self.params.prompts_per_step} < "
                             f"{self.world} ranks: every rank needs a prompt per round")


@dataclass
class MiniBatch:
    """Selected (possibly cut) responses of one optimizer step, with their fixed inputs."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    advantages: torch.Tensor  # (B,)
    old_logp: torch.Tensor | None  # (B, C); None = taken from the first update's forward
    ref_logp: torch.Tensor  # (B, C)
    engine_logp: list[float]  # the rollout engine's log-probs of the same tokens (flat)


def _minibatches(p: RLParams) -> int:
    """Mini-batches one step's selection is split into: ``updates_per_rollout`` under
    ``minibatch`` granularity (Φ tokens each under the budget normaliser), else 1."""
    return p.updates_per_rollout if p.budget_granularity == "minibatch" else 1


def _select(run: RLRun, ro: Rollout, zero_var: np.ndarray, step: int):
    p, (n_prompts, k) = run.params, ro.rewards.shape
    order = walk_order(n_prompts, k, p.walk_order, np.random.default_rng([run.seed, step, 1]))
    if p.drop_zero_variance:
        order = [i for i in order if not zero_var[i // k]]
    lengths = [len(t) for t in ro.token_ids]
    parts = _minibatches(p)
    if p.normaliser == "budget":
        return select_budget(lengths, p.token_budget, order, minibatches=parts)
    return select_all(lengths, order, minibatches=parts)


def _minibatch(run: RLRun, ro: Rollout, adv: np.ndarray, pairs, score_old: bool) -> MiniBatch:
    """The selected responses with reference log-probs, and old log-probs when ``score_old``
    (else the first update's own forward gives them: see :func:`_update`)."""
    k, chunk = ro.k, run.params.forward_rows
    device = next(run.reference.parameters()).device  # the policy's (see frozen_like)
    if not pairs:  # a rank with no share of this mini-batch (several ranks only)
        empty = torch.zeros(0, 0, device=device)
        return MiniBatch([], [], torch.zeros(0, device=device), empty if score_old else None,
                         empty, [])
    prompts = [ro.prompt_ids[i // k] for i, _ in pairs]
    comps = [ro.token_ids[i][:n] for i, n in pairs]
    temp = run.params.temperature
    old = (pad_sequence(score_rows(run.updater.local, prompts, comps, run.pad_id, chunk, temp),
                        batch_first=True) if score_old else None)
    ref = score_rows(run.reference, prompts, comps, run.pad_id, chunk, temp)
    return MiniBatch(
        prompts, comps,
        torch.tensor([adv.flat[i] for i, _ in pairs], dtype=torch.float32, device=device),
        old, pad_sequence(ref, batch_first=True),
        [v for i, n in pairs for v in ro.engine_logprobs[i][:n]],
    )


def _update(run: RLRun, mb: MiniBatch, totals: tuple[int, int] | None = None
            ) -> dict[str, float]:
    """One optimizer step on ``mb`` (step 6); returns its diagnostics.

    The forward runs in length-sorted chunks (:func:`length_chunks`); the loss is the exact sum
    of the chunks' shares: under ``budget`` every token counts 1/Φ in any chunk; ``token_mean``
    divides every chunk by the mini-batch's token count; ``seq_mean`` weighs a chunk by its
    share of the responses. The router losses (not sums over tokens) are averaged over chunks
    weighted by their tokens.

    ``mb.old_logp`` None means the weights are still the rollout policy's: the forward's own
    detached log-probs are the old log-probs (ratio exactly 1, as a separate scoring pass would
    give) and are kept in ``mb`` for later updates on the same mini-batch.

    On several ranks ``mb`` is this rank's share of the mini-batch and ``totals`` the whole
    mini-batch's (tokens, responses), so every normaliser counts what one process would (Φ,
    the mini-batch's tokens, its responses): the ranks' losses sum to the one-process loss.
    DeepSpeed averages the ranks' gradients, so each rank back-propagates ``world`` times its
    loss, and the all-reduced gradient is the one-process gradient of the same selection. The
    diagnostics are summed over ranks. The router losses are token-weighted means over forward
    chunks, as in one process; their chunks are per rank. Under ZeRO-3 every rank runs as many
    forward chunks as the rank with the most (:func:`update_loss`).
    """
    loss, sums, tokens = update_loss(run, mb, totals)
    if run.world == 1:
        gnorm = run.updater.step(loss)
        denom = max(tokens, 1)
        return {"loss": float(loss.detach()), "grad_norm": gnorm,
                **{k: sums[k] / denom for k in ("kl", "clip_fraction", "ratio_mean", "entropy")},
                "tokens_trained": float(tokens),
                "balance_loss": sums["balance_loss"], "z_loss": sums["z_loss"]}
    gnorm = run.updater.step(loss * run.world)
    keys = ("kl", "clip_fraction", "ratio_mean", "entropy", "balance_loss", "z_loss")
    total = all_sum([float(loss.detach()), float(tokens), *(sums[k] for k in keys)], run.world)
    g_loss, g_tokens, g = total[0], total[1], dict(zip(keys, total[2:], strict=True))
    denom = max(g_tokens, 1)
    return {"loss": g_loss, "grad_norm": gnorm,
            **{k: g[k] / denom for k in ("kl", "clip_fraction", "ratio_mean", "entropy")},
            "tokens_trained": g_tokens, "tokens_trained_here": float(tokens),
            "balance_loss": g["balance_loss"], "z_loss": g["z_loss"]}


def update_loss(run: RLRun, mb: MiniBatch, totals: tuple[int, int] | None = None
                ) -> tuple[torch.Tensor, dict[str, float], int]:
    """(loss of ``mb``'s rows, diagnostic sums, tokens) for :func:`_update`, before any
    backward; ``totals`` as there. A rank without rows gets a zero loss that still reaches
    every weight (its zero gradients take part in the all-reduce).

    Under ZeRO-3 on several ranks each forward and backward through the policy gathers every
    layer's weights in collectives, so all ranks must run the same forwards: the ranks' chunk
    counts are gathered and a rank with fewer than the most adds :func:`_padding_loss` chunks
    (zero loss, zero gradient, the same layers run); prompts are not shared between rows there
    (one transformers forward per chunk on every rank; same numbers to float rounding).
    """
    t_start = time.perf_counter()
    p, module = run.params, run.updater.module
    lockstep = run.world > 1 and run.updater.partitioned
    router = has_router(module) and (p.balance_coef > 0 or p.z_coef > 0)
    total_tokens, total_rows = totals if totals is not None else (
        sum(len(c) for c in mb.completion_ids), len(mb.completion_ids))
    norm, budget = ((p.normaliser, p.token_budget) if p.normaliser != "token_mean"
                    else ("budget", max(total_tokens, 1)))
    loss = torch.zeros(())
    sums = {"kl": 0.0, "clip_fraction": 0.0, "ratio_mean": 0.0, "entropy": 0.0,
            "balance_loss": 0.0, "z_loss": 0.0}
    tokens = 0
    fill_old = mb.old_logp is None
    if fill_old:
        mb.old_logp = torch.zeros_like(mb.ref_logp)
    coefs = Coefs(p.clip_eps, p.kl_coef, p.kl_estimator, p.entropy_coef, p.balance_coef,
                  p.z_coef)
    chunks = length_chunks(mb.prompt_ids, mb.completion_ids, p.forward_rows)
    padding = max(gather(len(chunks), run.world)) - len(chunks) if lockstep else 0
    for rows in chunks:
        comps = [mb.completion_ids[i] for i in rows]
        width = max(len(c) for c in comps)
        f = policy_forward(run.updater.forward_model(), [mb.prompt_ids[i] for i in rows], comps,
                           run.pad_id, with_entropy=True, with_router=router,
                           share_prompts=not lockstep, temperature=p.temperature)
        if fill_old:
            mb.old_logp[rows, :width] = f.logp.detach()
        n = int(f.mask.sum())
        part, st, extra = objective(
            f.logp, mb.old_logp[rows, :width], mb.ref_logp[rows, :width], mb.advantages[rows],
            f.mask, f.entropy,
            (f.router_logits, module.config.num_experts_per_tok, f.attention) if router else None,
            coefs, normaliser=norm, budget=budget,
            row_share=len(rows) / total_rows if norm == "seq_mean" else 1.0,
            token_share=n / max(total_tokens, 1))
        loss = loss + part
        tokens += st.tokens
        for k in ("kl", "clip_fraction", "ratio_mean"):
            sums[k] += getattr(st, k) * st.tokens
        for k, v in extra.items():
            sums[k] += v
    for _ in range(padding):
        loss = loss + _padding_loss(run, router, coefs, norm, budget)
    if not mb.completion_ids and not lockstep:
        loss = sum(t.sum() for t in module.parameters()) * 0.0
    run.busy_s += time.perf_counter() - t_start
    return loss, sums, tokens


def _padding_loss(run: RLRun, router: bool, coefs: Coefs, norm: Any, budget: int
                  ) -> torch.Tensor:
    """Zero times the loss of a one-token dummy row, computed as a real chunk's is: the same
    forward (every layer, router losses included) and the same backward through the policy,
    so the ranks' ZeRO-3 gathers line up, while the loss and every gradient gain exactly 0."""
    ids = [[run.pad_id]]
    f = policy_forward(run.updater.forward_model(), ids, ids, run.pad_id, with_entropy=True,
                       with_router=router, share_prompts=False,
                       temperature=run.params.temperature)
    same = f.logp.detach()  # old = reference = current: ratio 1, KL 0 (finite)
    part, _, _ = objective(
        f.logp, same, same, f.logp.new_zeros(1), f.mask, f.entropy,
        (f.router_logits, run.updater.module.config.num_experts_per_tok, f.attention)
        if router else None, coefs, normaliser=norm, budget=budget, row_share=1.0,
        token_share=1.0)
    return part * 0.0


def _rollout_metrics(ro: Rollout, zero_var: np.ndarray, before: Sequence[int]
                     ) -> dict[str, float]:
    lengths = np.array([len(t) for t in ro.token_ids], dtype=np.float64)
    m = {"reward": float(ro.rewards.mean()), "accuracy": float(ro.correct.mean()),
         "response_len": float(lengths.mean()),
         "truncated_frac": float(np.mean([f == "length" for f in ro.finish])),
         "zero_variance_groups": float(zero_var.sum())}
    domains = np.array([str(t["domain"]) for t in ro.tasks])
    for d in sorted(set(domains)):
        m[f"reward_{d}"] = float(ro.rewards[domains == d].mean())
    # first-seen prompts vs repeats: a reward that rises only on repeats is memorisation
    first = np.array([b == 0 for b in before])
    m["prompts_first_seen"], m["prompts_repeat"] = float(first.sum()), float((~first).sum())
    for name, rows in (("first_seen", first), ("repeat", ~first)):
        if rows.any():
            m[f"reward_{name}"] = float(ro.rewards[rows].mean())
            m[f"accuracy_{name}"] = float(ro.correct[rows].mean())
    return m


def _enough_signal(p: RLParams, ro: Rollout, zero_var: np.ndarray) -> bool:
    """Do the groups with reward variance fill the step (Φ tokens per mini-batch under the
    budget normaliser, L groups under the others)?"""
    if p.normaliser != "budget":
        return int((~zero_var).sum()) >= p.prompts_per_step
    k = ro.k
    tokens = sum(len(t) for i, t in enumerate(ro.token_ids) if not zero_var[i // k])
    return tokens >= p.token_budget * _minibatches(p)


def _budget_fill(p: RLParams, tokens_selected: int) -> float | None:
    """Selected tokens over what the budget asks for (Φ per mini-batch under ``budget``; None
    under the other normalisers, which have no budget). Below 1 only when every rollout round
    was spent before the groups with reward variance held Φ tokens."""
    if p.normaliser != "budget":
        return None
    return tokens_selected / (p.token_budget * _minibatches(p))


def _placebo(rewards: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each group's rewards in a random order: the same multiset per group (same mean, same
    variance, same zero-variance groups), unrelated to the responses."""
    out = rewards.copy()
    for row in out:
        rng.shuffle(row)
    return out


def _gather_rollout(run: RLRun, tasks: Sequence[Mapping[str, Any]], mine: Rollout) -> Rollout:
    """The round's whole rollout on every rank: each rank's share (its contiguous slice of
    ``tasks``, scored where it was sampled) in rank order, so prompt i is ``tasks[i]``."""
    fields = ("prompt_ids", "token_ids", "engine_logprobs", "texts", "finish")
    parts = gather({f: getattr(mine, f) for f in (*fields, "rewards", "correct")}, run.world)
    return Rollout(list(tasks), *([x for part in parts for x in part[f]] for f in fields),
                   rewards=np.concatenate([part["rewards"] for part in parts]),
                   correct=np.concatenate([part["correct"] for part in parts]))


def collect(run: RLRun, step: int) -> tuple[Rollout, list[int], int, float, float]:
    """Steps 1-2: (rollout of all rounds, times each prompt was drawn before, rounds, rollout
    seconds, reward seconds).

    On several ranks every rank draws the round's L prompts, samples and scores its contiguous
    share of them (engine seed offset by the rank), and the shares are gathered: every rank
    then holds the whole rollout, whole groups and all. The seconds are this rank's own."""
    p = run.params
    parts, before, t_roll, t_reward = [], [], 0.0, 0.0
    for r in range(p.max_rollout_rounds):
        tasks, seen = run.stream.take(p.prompts_per_step)
        mine = (tasks if run.world == 1
                else tasks[slice_for(len(tasks), run.world, run.rank)])
        t0 = time.perf_counter()
        ro = rollout(run.engine, run.tokenizer, mine, k=p.samples_per_prompt,
                     max_new_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p,
                     seed=run.seed * 1_000_003 + step + 100_000_007 * r + RANK_SEED * run.rank)
        t1 = time.perf_counter()
        ro.rewards, ro.correct = score(run.score_fn, ro.tasks, ro.texts, ro.k)
        t_roll, t_reward = t_roll + t1 - t0, t_reward + time.perf_counter() - t1
        if run.world > 1:
            ro = _gather_rollout(run, tasks, ro)
        parts.append(ro)
        before += seen
        merged = merge(parts)
        if r + 1 < p.max_rollout_rounds and _enough_signal(
                p, merged, group_advantages(merged.rewards, p.adv_eps)[1]):
            break
    return merge(parts), before, len(parts), t_roll, t_reward


def rl_step(run: RLRun, step: int) -> dict[str, float]:
    """Steps 1-7 of the module docstring; returns the step's metrics row.

    On several ranks every rank holds the whole rollout (:func:`collect`) and computes the same
    advantages and the same Φ selection; each mini-batch is then split by
    :func:`pipeline.rl.dist.balanced_split` and each rank trains its share (:func:`_update`).
    The row is the same on every rank and adds, per rank r, ``tokens_trained_rank<r>``,
    ``time_step_s_rank<r>`` and ``time_busy_s_rank<r>``: the rank's own work, which never
    waits for another rank (sampling, scoring, reference scoring and the update's forwards; the
    backward is left out, as DeepSpeed's gradient all-reduce waits inside it); and the balance:
    ``tokens_trained_rank_ratio`` (largest share over smallest) and ``time_busy_s_rank_spread``
    ((max - min) / max busy seconds).
    """
    p, t0 = run.params, time.perf_counter()
    run.busy_s = 0.0
    ro, before, rounds, t_roll, t_reward = collect(run, step)
    run.busy_s += t_roll + t_reward
    t2, c2 = time.perf_counter(), time.process_time()
    train_rewards = (_placebo(ro.rewards, np.random.default_rng([run.seed, step, 3]))
                     if p.placebo else ro.rewards)
    adv, zero_var = group_advantages(train_rewards, p.adv_eps)
    sel = _select(run, ro, zero_var, step)
    filled = [pairs for pairs in sel.minibatches if pairs]
    fill = _budget_fill(p, sel.tokens_selected)
    if fill is not None and fill < 1.0 and run.rank == 0:
        log.warning("step %d: %d rollout rounds left %d tokens with reward variance, %.1f%% of "
                    "the token budget (max_rollout_rounds=%d); the step trains them all",
                    step, rounds, sel.tokens_selected, 100 * fill, p.max_rollout_rounds)
    # "step": the one Φ selection is trained updates_per_rollout times (PPO epochs);
    # "minibatch": one optimizer step per filled mini-batch, so mini-batch 2 onwards starts
    # from updated weights and needs its old log-probs scored up front.
    by_minibatch = p.budget_granularity == "minibatch"
    score_old = by_minibatch and len(filled) > 1
    if run.world == 1:
        batches = [_minibatch(run, ro, adv, pairs, score_old) for pairs in filled]
        totals = [None] * len(batches)
    else:  # this rank's share of every mini-batch; normalisers count the whole mini-batch
        t_ref = time.perf_counter()
        batches = [_minibatch(run, ro, adv, balanced_split(pairs, run.world)[run.rank],
                              score_old) for pairs in filled]
        run.busy_s += time.perf_counter() - t_ref
        totals = [(sum(n for _, n in pairs), len(pairs)) for pairs in filled]
    n_updates = len(batches) if by_minibatch else p.updates_per_rollout
    updates = [_update(run, batches[u % len(batches)], totals[u % len(batches)])
               for u in range(n_updates if batches else 0)]
    # every mini-batch has had an update by now (updates_per_rollout > 0), so its old
    # log-probs are filled in
    engine_lp = [v for mb in batches for v in mb.engine_logp]
    trainer_lp = [v for mb in batches for row, c in zip(mb.old_logp, mb.completion_ids,
                                                        strict=True) for v in row[:len(c)].tolist()]
    sync_engine(run)
    t3, c3 = time.perf_counter(), time.process_time()
    row = _rollout_metrics(ro, zero_var, before)
    here = [u.pop("tokens_trained_here") for u in updates if "tokens_trained_here" in u]
    row.update({k: float(np.mean([u[k] for u in updates])) for k in (updates[0] if updates else {})})
    if run.world > 1:
        engine_lp, trainer_lp = ([v for part in gather(x, run.world) for v in part]
                                 for x in (engine_lp, trainer_lp))
        per_rank = gather((float(np.mean(here)) if here else 0.0, t3 - t0, run.busy_s),
                          run.world)
        for r, (tokens, step_s, busy_s) in enumerate(per_rank):
            row.update({f"tokens_trained_rank{r}": tokens, f"time_step_s_rank{r}": step_s,
                        f"time_busy_s_rank{r}": busy_s})
        shares, busy = [x[0] for x in per_rank], [x[2] for x in per_rank]
        row["tokens_trained_rank_ratio"] = max(shares) / max(min(shares), 1.0)
        row["time_busy_s_rank_spread"] = (max(busy) - min(busy)) / max(max(busy), 1e-9)
    mm = mismatch(engine_lp, trainer_lp)
    generated = sum(len(t) for t in ro.token_ids)
    row.update({
        "tokens_selected": float(sel.tokens_selected), "tokens_dropped": float(sel.tokens_dropped),
        "responses_dropped": float(sel.responses_dropped), "responses_cut": float(sel.responses_cut),
        "optimizer_steps": float(len(updates)), "lr": run.updater.lr,
        **({"budget_fill": fill} if fill is not None else {}),
        "rollout_rounds": float(rounds), "prompts_drawn": float(len(before)),
        "prompt_cursor": float(run.stream.cursor),
        "prompts_distinct": float(run.stream.distinct_drawn),
        "logprob_mismatch_abs": mm["logprob_abs_diff"], "logprob_mismatch_kl": mm["kl_k3"],
        "time_rollout_s": t_roll, "time_reward_s": t_reward, "time_train_s": t3 - t2,
        "cpu_train_s": c3 - c2,
        "time_step_s": t3 - t0, "tokens_generated": float(generated),
        "tokens_per_s": generated / max(t3 - t0, 1e-9),
    })
    return row


def sync_engine(run: RLRun) -> None:
    """Point the generation engine at the policy's current weights (a vLLM engine copies
    them; under ZeRO-3 they are gathered from their partitions first, a collective every rank
    enters, and copied into ``updater.local``, which the torch engine samples from and old
    log-probs are scored on)."""
    with run.updater.full_weights():
        run.updater.refresh_local()
        run.engine.update_weights(run.updater.local)


def evaluate(run: RLRun, tasks: Sequence[Mapping[str, Any]], *, prefix: str, samples: int,
             temperature: float, top_p: float) -> tuple[dict[str, float], list[float]]:
    """(metrics, per-task mean correctness) of ``samples`` responses per task, scored by the
    shared verifier: ``<prefix>accuracy`` (avg@k) with its standard error over tasks,
    ``<prefix>reward``, ``<prefix>response_len`` and ``<prefix>accuracy_<domain>``.

    The engine seed does not depend on ``step``: every evaluation of a run draws with the same
    random numbers, which makes the before/after difference less noisy (the engines sample by
    inverse CDF, so a model that changed little draws nearly the same responses).

    On several ranks each rank samples and scores its contiguous slice of ``tasks`` (engine
    seed offset by the rank) and the results are gathered in task order.
    """
    if not tasks:
        return {}, []
    seed = run.seed * 7919 + (prefix == "holdout_")
    if run.world == 1:
        ro = rollout(run.engine, run.tokenizer, tasks, k=samples,
                     max_new_tokens=run.params.max_new_tokens, temperature=temperature,
                     top_p=top_p, seed=seed)
        ro.rewards, ro.correct = score(run.score_fn, ro.tasks, ro.texts, samples)
        rewards, correct, lengths = ro.rewards, ro.correct, [len(t) for t in ro.token_ids]
    else:
        mine = list(tasks[slice_for(len(tasks), run.world, run.rank)])
        part: tuple[Any, ...] = (np.zeros((0, samples)), np.zeros((0, samples), bool), [])
        if mine:
            ro = rollout(run.engine, run.tokenizer, mine, k=samples,
                         max_new_tokens=run.params.max_new_tokens, temperature=temperature,
                         top_p=top_p, seed=seed + RANK_SEED * run.rank)
            ro.rewards, ro.correct = score(run.score_fn, ro.tasks, ro.texts, samples)
            part = (ro.rewards, ro.correct, [len(t) for t in ro.token_ids])
        parts = gather(part, run.world)
        rewards, correct = (np.concatenate([x[i] for x in parts]) for i in (0, 1))
        lengths = [n for x in parts for n in x[2]]
    per_task = correct.mean(axis=1)
    acc, se = mean_se(per_task)
    out = {f"{prefix}accuracy": acc, f"{prefix}accuracy_se": se,
           f"{prefix}reward": float(rewards.mean()),
           f"{prefix}response_len": float(np.mean(lengths))}
    domains = np.array([str(t["domain"]) for t in tasks])
    for d in sorted(set(domains)):
        out[f"{prefix}accuracy_{d}"] = float(per_task[domains == d].mean())
    return out, [float(x) for x in per_task]


def evaluate_all(run: RLRun, val_tasks: Sequence[Mapping[str, Any]]
                 ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Held-out tasks (``eval_*`` decoding) and the held-back slice of the pool (the rollout
    decoding): metrics and per-task scores keyed ``eval`` / ``holdout``."""
    p = run.params
    ev, ev_items = evaluate(run, val_tasks, prefix="eval_", samples=p.eval_samples,
                            temperature=p.eval_temperature, top_p=p.eval_top_p)
    ho, ho_items = evaluate(run, run.holdout, prefix="holdout_", samples=p.holdout_samples,
                            temperature=p.temperature, top_p=p.top_p)
    items = {k: v for k, v in (("eval", ev_items), ("holdout", ho_items)) if v}
    return {**ev, **ho}, items


@dataclass
class History:
    """What the loop produced: one metrics row per step and one per evaluation."""

    steps: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    # per evaluation: {"step": s, "eval": [per-task score], "holdout": [...]} (paired CIs)
    items: list[dict[str, Any]] = field(default_factory=list)


def train(run: RLRun, val_tasks: Sequence[Mapping[str, Any]], resume_dir: Path | None,
          fingerprint: str, on_step: Callable[[int, dict[str, float]], None] = lambda s, m: None,
          ) -> History:
    """Run steps until ``params.steps``, resuming from ``resume_dir`` when it holds a state
    with the same ``fingerprint`` (params + seed + start model). ``on_step`` gets every
    metrics row (also the re-played rows of a resumed run) as it is produced."""
    p = run.params
    start, hist = 0, History()
    state = (checkpoint.load(resume_dir, run.updater, fingerprint, run.world, run.rank)
             if resume_dir else None)
    if state is not None:
        start = state.step
        hist = History(list(state.steps), list(state.evals), list(state.items))
        sync_engine(run)  # a vLLM engine holds its own copy
        if hist.steps:  # the prompt stream is a function of how many prompts were drawn
            run.stream.advance(int(hist.steps[-1]["prompt_cursor"]))
        replay = [e for e in hist.evals if e["step"] == 0] + hist.steps
        for row in replay:
            on_step(int(row["step"]), {k: v for k, v in row.items() if k != "step"})
    else:
        ev, items = evaluate_all(run, val_tasks)
        first = {"step": 0, **ev}
        hist.evals.append(first)
        hist.items.append({"step": 0, **items})
        on_step(0, {k: v for k, v in first.items() if k != "step"})
    kill_at = int(os.environ.get(FAULT_ENV, "-1"))
    for step in tqdm(range(start + 1, p.steps + 1), desc="rl", initial=start, total=p.steps,
                     disable=run.rank != 0):
        row = rl_step(run, step)
        if step % p.eval_every == 0 or step == p.steps:
            ev, items = evaluate_all(run, val_tasks)
            hist.evals.append({"step": step, **ev})
            hist.items.append({"step": step, **items})
            row.update(ev)
        hist.steps.append({"step": step, **row})
        on_step(step, row)
        if resume_dir and (step == p.steps or (p.checkpoint_every and
                                               step % p.checkpoint_every == 0)):
            checkpoint.save(resume_dir, run.updater, fingerprint, step, hist.steps, hist.evals,
                            hist.items, run.world, run.rank)
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    return hist

"""What SFT speed-ups that change float rounding would buy, side by side in one process.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/perf/sft_variants.py [--steps 60] [--rounds 4]

Arms, each a DeepSpeed engine on a copy of ``models/base`` (params.yaml's ``sft.optim``),
training on the same packed rows of ``data/distill/traces.parquet``:

- ``default``: the stage's step (:func:`pipeline.train.sft.train_step`);
- ``fused_adamw``: AdamW's fused CPU kernel instead of the foreach kernels;
- ``labelled_head``: the LM head and cross-entropy on labelled (response) positions only,
  instead of on every position with the prompt's labels ignored;
- ``both``;
- ``compiled_layers``: each decoder layer under ``torch.compile(dynamic=True)`` (inductor),
  the routed experts left eager (dynamo's fake-tensor check of ``grouped_mm`` rejects fp32,
  so a compiled experts call fails). Packed batches are trimmed to their longest row, so
  shapes vary from step to step: with static shapes every new width recompiles until dynamo's
  cache limit sends the layer back to eager.

Steps are split into ``--rounds`` blocks and the arms take turns block by block, so that a
slow stretch of a shared machine falls on all of them. Prints each arm's warm-up seconds (3
steps; compiling included), ms per step per round, the median, its speed-up over ``default``,
and the loss of its last step (the arms' losses agree to rounding: each arm computes the same
loss). Inductor keeps compiled kernels in an on-disk cache, so ``compiled_layers``' warm-up
is shorter when the script runs a second time.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import polars as pl
import torch
import torch.nn.functional as F

import pipeline.train.sft as sft
from pipeline.model import load_model
from pipeline.params import load_section
from pipeline.train.deepspeed_engine import init_engine
from pipeline.train.packing import pack, stack_rows

ARMS = ("default", "fused_adamw", "labelled_head", "both", "compiled_layers")


def compile_layers(model) -> None:
    """Compile each decoder layer of ``model`` in place, its routed experts excluded."""
    for layer in model.model.layers:
        experts = layer.mlp.experts
        experts.forward = torch.compiler.disable(experts.forward)
        layer.compile(dynamic=True)


def labelled_row_loss(model, row, aux_loss_coef: float = 0.0):
    """:func:`pipeline.train.sft.row_loss` with the LM head on labelled positions only."""
    from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func

    m = getattr(model, "module", model)
    dev = next(m.parameters()).device
    out = m.model(input_ids=row.input_ids.to(dev), position_ids=row.position_ids.to(dev),
                  attention_mask=None, output_router_logits=aux_loss_coef > 0, use_cache=False)
    labels = row.labels.to(dev).view(-1)
    keep = (labels != -100).nonzero().squeeze(1)
    hidden = out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])[keep]
    ce_sum = F.cross_entropy(m.lm_head(hidden).float(), labels[keep], reduction="sum")
    n = torch.tensor(keep.numel())
    loss = ce_sum / n.clamp(min=1)
    if aux_loss_coef > 0:
        loss = loss + aux_loss_coef * load_balancing_loss_func(
            out.router_logits, m.config.num_experts, m.config.num_experts_per_tok, None)
    return loss, ce_sum.detach(), n


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = load_section("sft", sft.SftParams, args.params)
    base, tok = load_model("models/base")
    base.train()
    traces = pl.read_parquet("data/distill/traces.parquet")
    samples, _ = sft.tokenize_traces(tok, traces["prompt"].to_list(),
                                     traces["response"].to_list(), p.max_seq_len)
    rows = pack(samples, p.row_tokens, seed=0)
    batches = [stack_rows(rows[i : i + p.micro_batch_rows], tok.pad_token_id)
               for i in range(0, len(rows), p.micro_batch_rows)][: args.steps + 3]
    engines = {}
    for arm in ARMS:
        model = copy.deepcopy(base)
        if arm == "compiled_layers":
            compile_layers(model)
        engine = init_engine(model, p.optim, total_steps=len(batches),
                             micro_batch_size=p.micro_batch_rows)
        if arm in ("fused_adamw", "both"):
            fused = torch.optim.AdamW(engine.optimizer.param_groups, lr=p.optim.lr,
                                      betas=tuple(p.optim.betas), eps=p.optim.eps, fused=True)
            engine.optimizer = engine.lr_scheduler.optimizer = fused
        engines[arm] = engine
    default_loss = sft.row_loss
    ms: dict[str, list[float]] = {a: [] for a in ARMS}
    last: dict[str, float] = {}
    warmup_s: dict[str, float] = {}
    per_round = max(1, args.steps // args.rounds)
    try:
        for arm, engine in engines.items():  # warm-up
            sft.row_loss = labelled_row_loss if arm in ("labelled_head", "both") else default_loss
            t = time.perf_counter()
            for b in batches[:3]:
                sft.train_step(engine, [b], p.aux_loss_coef)
            warmup_s[arm] = round(time.perf_counter() - t, 1)
        for r in range(args.rounds):
            block = batches[3 + r * per_round : 3 + (r + 1) * per_round]
            for arm, engine in engines.items():
                sft.row_loss = (labelled_row_loss if arm in ("labelled_head", "both")
                                else default_loss)
                t = time.perf_counter()
                for b in block:
                    last[arm] = sft.train_step(engine, [b], p.aux_loss_coef)["loss"]
                ms[arm].append(round(1e3 * (time.perf_counter() - t) / len(block), 1))
    finally:
        sft.row_loss = default_loss
    med = {a: statistics.median(v) for a, v in ms.items()}
    result = {a: {"warmup_s": warmup_s[a], "ms_per_step": ms[a], "median_ms": med[a],
                  "speedup": round(med["default"] / med[a], 3), "last_loss": round(last[a], 5)}
              for a in ARMS}
    for a, r in result.items():
        print(f"{a:15s} warm-up {r['warmup_s']:5.1f} s  {r['ms_per_step']}  median {r['median_ms']:.1f} ms  "
              f"x{r['speedup']:.3f}  last loss {r['last_loss']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

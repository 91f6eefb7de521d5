"""Where the time of an SFT step and of a rollout decode step goes, by phase and by op kind.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/perf/step_profile.py [--steps 30] [--json out.json]

SFT: the pipeline's base model and distilled traces (``models/base``,
``data/distill/traces.parquet``), packed as params.yaml's ``sft`` section packs them, through
a DeepSpeed engine built as the stage builds it. Each step is timed in its phases: forward
and loss (:func:`pipeline.train.sft.row_loss`), ``engine.backward``, ``engine.step``
(clipping, AdamW, schedule) and the rest (packing the rows, reading the metrics). Decode: the
torch engine on ``--model`` (default ``models/selected``) for RL reasoning prompts, params.yaml's
``rl_reasoning`` sampling (n, max_new_tokens, temperature, top_p), timed as prefill, decode
steps (:meth:`MoeDecoder.step`), sampling and bookkeeping.

Both are then profiled (``torch.profiler``, CPU) and the ops' self time is summed by kind:
dense matmuls, the experts' grouped matmuls, attention (the fused kernel in training, the
batched matmuls over the cache in decode; softmaxes count as elementwise), index ops (gathers,
scatters, sorts), optimizer and clipping kernels, and elementwise/other. Times are means over ``--steps`` steps after
warm-up; phases come from unprofiled steps, op kinds from profiled ones (the profiler adds
overhead, so they are reported as shares).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
import torch
from torch.profiler import ProfilerActivity, profile

KINDS = (
    ("grouped matmul (experts)", ("grouped_mm",)),
    ("attention", ("scaled_dot_product", "bmm")),
    ("dense matmul", ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear")),
    ("index (gather/scatter)", ("index", "scatter", "gather", "index_put", "sort", "histc",
                                "searchsorted", "topk", "argsort", "bincount")),
    ("optimizer and clipping", ("_foreach", "lerp", "addcdiv", "addcmul", "_fused_adam",
                                "linalg_vector_norm")),
)


def kind_of(name: str) -> str:
    for kind, keys in KINDS:
        if any(k in name for k in keys):
            return kind
    return "elementwise and other"


def op_shares(prof) -> dict[str, float]:
    """Self CPU time by op kind, as shares. On CPU ``_grouped_mm`` runs one ``mm`` per expert
    as child ops, so their time moves from the dense matmuls to the grouped ones."""
    total: dict[str, float] = defaultdict(float)
    for evt in prof.key_averages():
        if evt.key.startswith("aten::") or "Optimizer" in evt.key:
            total[kind_of(evt.key)] += evt.self_cpu_time_total
            if "grouped_mm" in evt.key:
                children = evt.cpu_time_total - evt.self_cpu_time_total
                total[kind_of(evt.key)] += children
                total["dense matmul"] -= children
    s = sum(total.values()) or 1.0
    return {k: round(v / s, 3) for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def sft_profile(steps: int, params_file: str) -> dict:
    from pipeline.model import load_model
    from pipeline.params import load_section
    from pipeline.train.deepspeed_engine import init_engine
    from pipeline.train.sft import SftParams, epoch_plans, row_loss, step_batches, tokenize_traces

    p = load_section("sft", SftParams, params_file)
    model, tok = load_model("models/base")
    model.train()
    traces = pl.read_parquet("data/distill/traces.parquet")
    samples, _ = tokenize_traces(tok, traces["prompt"].to_list(), traces["response"].to_list(),
                                 p.max_seq_len)
    plan = epoch_plans(samples, p, seed=0)[0]
    engine = init_engine(model, p.optim, total_steps=10_000, micro_batch_size=p.micro_batch_rows,
                         grad_accum=p.grad_accum)
    phases: dict[str, list[float]] = defaultdict(list)

    def one(step: int) -> None:
        t0 = time.perf_counter()
        rows = step_batches(samples, plan, step, p, 1, 0, tok.pad_token_id)
        t1 = time.perf_counter()
        fwd = bwd = 0.0
        for row in rows:
            a = time.perf_counter()
            loss, ce, n = row_loss(engine, row, p.aux_loss_coef)
            b = time.perf_counter()
            engine.backward(loss)
            c = time.perf_counter()
            fwd, bwd = fwd + b - a, bwd + c - b
        d = time.perf_counter()
        engine.step()
        e = time.perf_counter()
        float(ce), float(n)  # the loop reads its metrics back
        f = time.perf_counter()
        for k, v in (("pack rows", t1 - t0), ("forward + loss", fwd), ("backward", bwd),
                     ("optimizer step", e - d), ("metrics", f - e)):
            phases[k].append(v)
        phases["step"].append(f - t0)

    for s in range(5):
        one(s)
    phases.clear()
    for s in range(5, 5 + steps):
        one(s)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for s in range(5 + steps, 5 + steps + min(steps, 10)):
            one(s)
    ms = {k: round(1e3 * statistics.mean(v), 2) for k, v in phases.items()}
    tokens = p.micro_batch_rows * p.row_tokens
    return {"phases_ms": ms, "row_tokens_per_step": tokens, "op_shares": op_shares(prof)}


def decode_profile(steps: int, params_file: str, model_dir: str) -> dict:
    from pipeline.engines import fast_decode, torch_engine
    from pipeline.model import format_prompt, load_model
    from pipeline.params import load_section
    from pipeline.rl.params import RLParams

    rl = load_section("rl_reasoning", RLParams, params_file)
    model, tok = load_model(model_dir)
    prompts = pl.read_parquet("data/rl/reasoning.parquet")["prompt"].to_list()
    n = rl.samples_per_prompt
    batch = [format_prompt(tok, q) for q in prompts[: max(1, 256 // n)]]
    engine = torch_engine.TorchEngine(model=model, tokenizer=tok, batch_size=256)
    timers: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            out = fn(*a, **kw)
            timers[name] += time.perf_counter() - t
            counts[name] += 1
            return out
        return wrapper

    originals = (fast_decode.MoeDecoder.step, torch_engine.sample_next, model.forward)
    fast_decode.MoeDecoder.step = timed("decode steps", originals[0])
    torch_engine.sample_next = timed("sampling", originals[1])
    model.forward = timed("prefill", originals[2])
    kw = dict(n=n, max_new_tokens=rl.max_new_tokens, temperature=rl.temperature,
              top_p=rl.top_p)
    try:
        engine.generate(batch, seed=0, **kw)  # warm-up
        timers.clear()
        counts.clear()
        t = time.perf_counter()
        out = engine.generate(batch, seed=1, **kw)
        wall = time.perf_counter() - t
        timed_calls = dict(timers), dict(counts)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            engine.generate(batch, seed=1, **kw)
    finally:
        fast_decode.MoeDecoder.step, torch_engine.sample_next, model.forward = originals
    timers, counts = timed_calls
    tokens = sum(len(c.token_ids) for row in out for c in row)
    phases = {k: round(v, 3) for k, v in timers.items()}
    phases["bookkeeping"] = round(wall - sum(timers.values()), 3)
    steps = counts.get("decode steps", 0)
    return {"rows": len(batch) * n, "tokens": tokens, "seconds": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1), "phases_s": phases, "decode_steps": steps,
            "ms_per_decode_step": round(1e3 * timers.get("decode steps", 0.0) / max(1, steps), 2),
            "op_shares": op_shares(prof)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model", default="models/selected", help="model for the decode profile")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "sft": sft_profile(args.steps, args.params),
              "decode": decode_profile(args.steps, args.params, args.model)}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

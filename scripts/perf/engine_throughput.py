"""Generation throughput: vLLM engine vs torch engine vs plain ``model.generate``.

Same model (the default tiny MoE from ``pipeline.model``, untrained so responses run long),
same prompts, same sampling settings (temperature 1.0, top-p 1.0, ``--max-new-tokens``), one
completion per prompt, at each batch size (= number of prompts in one call). Prints generated
tokens per second of each path and its ratio to plain ``generate``; ``--json`` also writes the
table. Each measurement follows one untimed warm-up call of the same shape and covers at least
``--min-rows`` rows (batch 1: 16 calls), since sampled lengths vary (EOS can come early); it
is timed ``--repeats`` times, the paths taking turns at each batch size, and each path keeps
its best time (the machine may be shared: a slow stretch falls on every path).

    .venv/bin/python scripts/perf/engine_throughput.py                 # batches 1 16 64
    .venv/bin/python scripts/perf/engine_throughput.py --paths generate torch --batches 16
    .venv/bin/python scripts/perf/engine_throughput.py --device cuda --dtype bfloat16 \
        --batches 16 64 256

``--device cuda`` puts the model of ``generate`` and the torch engine on the GPU (vLLM runs its
own copy there); ``--dtype`` is every path's weights' dtype (default float32).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable

import torch

from pipeline.engines import make_engine
from pipeline.engines.fixtures import toy_examples
from pipeline.model import ModelParams, build_tiny_moe, format_prompt, save_checkpoint
from pipeline.model.tokenizer import train_tokenizer

PATHS = ("generate", "torch", "vllm")


def build_model(prompts: int = 128):
    """(model, tokenizer, prompts): the default tiny MoE (its tokenizer fitted on 128 toy
    examples) and ``prompts`` distinct chat prompts."""
    pairs = toy_examples(128)
    tok = train_tokenizer([p + " " + r for p, r in pairs], vocab_size=300)
    model = build_tiny_moe(ModelParams(), tok, seed=0).eval()
    texts = [format_prompt(tok, f"{p}, then explain step {i}")
             for i, (p, _) in enumerate(toy_examples(max(prompts, 128)))]
    return model, tok, texts[:prompts]


def prompts_needed(batches: list[int], min_rows: int) -> int:
    """Distinct prompts the measurements take: ``calls(b) * b`` for the largest batch."""
    return max(calls(b, min_rows) * b for b in batches)


def calls(batch: int, min_rows: int) -> int:
    """Calls per measurement: small batches make several, for steadier figures."""
    return max(1, min_rows // batch)


def hf_generate(model, tok, max_new_tokens: int) -> Callable[[list[str], int], int]:
    """Plain transformers ``generate`` on a left-padded batch; returns generated tokens."""
    device = next(model.parameters()).device

    def run(prompts: list[str], seed: int) -> int:
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {k: v.to(device) for k, v in batch.items()}
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                                 eos_token_id=tok.eos_token_id)
        new = out[:, batch["input_ids"].shape[1]:]
        # tokens up to and including the first EOS of each row (the rest is padding)
        ended = (new == tok.eos_token_id).int().cumsum(-1)
        return int(((ended == 0) | ((ended == 1) & (new == tok.eos_token_id))).sum())

    return run


def engine_runner(engine, max_new_tokens: int) -> Callable[[list[str], int], int]:
    def run(prompts: list[str], seed: int) -> int:
        out = engine.generate(prompts, n=1, max_new_tokens=max_new_tokens, temperature=1.0,
                              top_p=1.0, seed=seed)
        return sum(len(c.token_ids) for row in out for c in row)

    return run


def measure(
    run: Callable[[list[str], int], int], prompts: list[str], batch: int, n_calls: int,
) -> tuple[int, float]:
    """(generated tokens, seconds) of ``n_calls`` calls of ``batch`` distinct prompts each (the
    same seeds every time, so the same tokens)."""
    tokens, start = 0, time.perf_counter()
    for i in range(n_calls):
        tokens += run(prompts[i * batch : (i + 1) * batch], i + 1)
    return tokens, time.perf_counter() - start


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (generate and torch paths)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--min-rows", type=int, default=16, help="rows per measurement at least")
    ap.add_argument("--repeats", type=int, default=3, help="time each figure N times, keep the best")
    ap.add_argument("--json", help="also write the table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tok, prompts = build_model(prompts_needed(args.batches, args.min_rows))
    if "vllm" in args.paths:  # saved before the model moves, started after the others
        folder = save_checkpoint(model, tok, os.path.join(tempfile.mkdtemp(), "tiny_moe"))
    model = model.to(args.device, getattr(torch, args.dtype))
    runners: dict[str, Callable] = {}
    if "generate" in args.paths:
        runners["generate"] = hf_generate(model, tok, args.max_new_tokens)
    if "torch" in args.paths:
        engine = make_engine("torch", model=model, tokenizer=tok, batch_size=max(args.batches),
                             progress_min_rows=10**9)
        runners["torch"] = engine_runner(engine, args.max_new_tokens)
    if "vllm" in args.paths:  # started last: it may re-pin this process's threads
        runners["vllm"] = engine_runner(
            make_engine("vllm", model_path=str(folder), dtype=args.dtype),
            args.max_new_tokens)
    names = [p for p in PATHS if p in args.paths]
    rows: list[dict] = []
    for b in args.batches:
        n_calls = calls(b, args.min_rows)
        best: dict[str, tuple[int, float]] = {}
        for name in names:
            runners[name](prompts[:b], 0)  # warm-up
        for _ in range(args.repeats):  # paths take turns, so that load drift falls on all
            for name in names:
                tokens, secs = measure(runners[name], prompts, b, n_calls)
                if name not in best or secs < best[name][1]:
                    best[name] = (tokens, secs)
        for name in names:
            tokens, secs = best[name]
            rows.append({"path": name, "device": args.device, "dtype": args.dtype, "batch": b,
                         "tokens": tokens,
                         "seconds": round(secs, 3), "tokens_per_s": round(tokens / secs, 1)})
            print(f"{name:9s} batch {b:3d}: {tokens:6d} tokens in {secs:6.2f} s", flush=True)
    base = {r["batch"]: r["tokens_per_s"] for r in rows if r["path"] == "generate"}
    print("\n| path | batch | tokens/s | vs generate |\n|---|---|---|---|")
    for r in rows:
        ratio = r["tokens_per_s"] / base[r["batch"]] if r["batch"] in base else float("nan")
        r["ratio_vs_generate"] = round(ratio, 2)
        print(f"| {r['path']} | {r['batch']} | {r['tokens_per_s']:.0f} | {ratio:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()

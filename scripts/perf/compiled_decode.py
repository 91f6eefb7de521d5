"""A compiled decode step against the torch engine's eager one, per step, at fixed batch sizes.

    OMP_NUM_THREADS=2 TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) \\
        .venv/bin/python scripts/perf/compiled_decode.py [--model models/selected] \\
        [--batches 16 64 256] [--routed] [--json out.json]

The experiment behind "why not 5x" in docs/engines.md. A decode step of the default model is
~270 small torch ops, and on CPU each costs dispatch time whatever its size; inductor can fuse
them into a few C++ kernels, but only over a graph it can trace with static shapes. So the
compiled arm changes the step's form where the eager step's form cannot be traced:

- the routed experts run densely: every expert on every row (one batched matmul per
  projection), weighted by the router's top-k weights scattered into an (rows, experts)
  matrix, zeros elsewhere; ``F.grouped_mm`` and the argsort/bincount grouping it needs break
  the graph;
- attention covers the cache's whole width with the columns after the step's masked, and the
  step's keys and values are written with ``index_copy_`` at a column given as a tensor: one
  graph for every step instead of one per cache length.

Arms, each measured in a fresh process per round, the arms taking turns for ``--rounds``
rounds; each figure is the median over rounds of a process's median of 3 runs of ``--steps``
steps. (Measured side by side in one process, an arm's figure depended on which arms ran
beside it: with both compiled arms in one process, the dense one ran at the eager step's
speed, and the eager step's own time moved by 1.7x between such runs.)

- ``eager``: :meth:`pipeline.engines.fast_decode.MoeDecoder.step`, what the engine runs;
- ``dense``: the traceable step above, eager (what its extra arithmetic costs);
- ``compiled``: that step under ``torch.compile(fullgraph=True, dynamic=False)`` with
  inductor's C++ wrapper (compile time reported);
- ``compiled_routed``: the eager step's routed experts kept out of the graph
  (``torch.compiler.disable``), the rest compiled (``--routed`` adds it; it is slow).

Each arm's logits are compared with the eager step's on the same cache (they differ in float
rounding: the dense experts sum eight terms where the routed ones sum two). The cache holds
random keys and values; the step's cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.engines.fast_decode import MoeDecoder


def dense_experts(dec: MoeDecoder, h: torch.Tensor, logits: torch.Tensor,
                  w: dict[str, Any]) -> torch.Tensor:
    """The routed experts' output with every expert run on every row, weighted by the
    router's (normalised) top-k probabilities and zero for the experts not chosen."""
    probs = torch.softmax(logits, dim=-1, dtype=torch.float)
    top_w, top_i = probs.topk(dec.top_k, dim=-1)
    if dec.norm_topk:
        top_w = top_w / top_w.sum(-1, keepdim=True)
    weights = torch.zeros_like(probs).scatter(1, top_i, top_w)  # (rows, experts)
    gate, up = torch.einsum("bh,ehf->ebf", h, w["gate_up"]).chunk(2, dim=-1)
    y = torch.bmm(F.silu(gate) * up, w["down"])  # (experts, rows, hidden)
    return (y * weights.t()[:, :, None].to(y.dtype)).sum(0)


def traceable_step(dec: MoeDecoder, routed: bool = False):
    """A decode step with static shapes: ``step(tokens, positions, column, keys, values, mask,
    cos, sin)``, ``column`` a 0-d long tensor, attention over the cache's whole width."""

    @torch.compiler.disable
    def routed_experts(h, logits, w):
        return dec._experts(h, logits, w)

    def step(tokens, positions, column, keys, values, mask, cos_t, sin_t):
        x = dec.embed[tokens]
        rows, nh, nkv, hd = x.shape[0], dec.heads, dec.kv_heads, dec.head_dim
        cos, sin = cos_t[positions][:, None], sin_t[positions][:, None]
        cols = torch.arange(mask.shape[1], device=mask.device)
        later = torch.where(cols > column, float("-inf"), 0.0)
        attn_mask = (mask + later)[:, None, None, :]
        at = column.view(1)
        for i, w in enumerate(dec.layers):
            h = dec._rms(x, w["ln1"])
            qkv = h @ w["qkv"] if w["qkv_bias"] is None else torch.addmm(w["qkv_bias"], h, w["qkv"])
            qk = dec._rope(qkv[:, : (nh + nkv) * hd].view(rows, nh + nkv, hd), cos, sin)
            keys[i].index_copy_(3, at, qk[:, nh:, :, None])
            values[i].index_copy_(2, at, qkv[:, (nh + nkv) * hd :].view(rows, nkv, 1, hd))
            q = qk[:, :nh].reshape(rows, nkv, nh // nkv, hd)
            scores = torch.matmul(q, keys[i])
            probs = torch.softmax(scores * dec.scale + attn_mask, dim=-1, dtype=torch.float32)
            att = torch.matmul(probs.to(values[i].dtype), values[i])
            x = x + att.reshape(rows, nh * hd) @ w["o"]
            h = dec._rms(x, w["ln2"])
            router = h @ w["router"]
            gate, up = (h @ w["shared_gate_up"]).chunk(2, dim=-1)
            shared = torch.sigmoid(router[:, -1:]) * ((F.silu(gate) * up) @ w["shared_down"])
            experts = (routed_experts(h, router[:, :-1], w) if routed
                       else dense_experts(dec, h, router[:, :-1], w))
            x = x + experts + shared
        return dec._rms(x, dec.norm) @ dec.head

    return step


def step_inputs(dec: MoeDecoder, rows: int, width: int, column: int, seed: int = 0) -> dict:
    """A cache of ``width`` columns with random keys and values, the step at ``column``."""
    g = torch.Generator().manual_seed(seed)
    nkv, hd = dec.kv_heads, dec.head_dim
    vocab = dec.embed.shape[0]
    return {
        "tokens": torch.randint(0, vocab, (rows,), generator=g),
        "positions": torch.full((rows,), column),
        "column": column,
        "keys": [torch.randn(rows, nkv, hd, width, generator=g) for _ in dec.layers],
        "values": [torch.randn(rows, nkv, width, hd, generator=g) for _ in dec.layers],
        "mask": torch.zeros(rows, width),
        "rope": dec.rope_table(width, dec.embed.device),
    }


def arm(dec: MoeDecoder, inp: dict, name: str) -> tuple[Any, float | None]:
    """A callable running arm ``name`` over ``inp``, and its first call's seconds when
    compiled."""
    col_t = torch.tensor(inp["column"])
    cos, sin = inp["rope"]
    args = (inp["tokens"], inp["positions"], col_t, inp["keys"], inp["values"], inp["mask"],
            cos, sin)
    if name == "eager":
        return (lambda: dec.step(inp["tokens"], inp["positions"], inp["column"], inp["keys"],
                                 inp["values"], inp["mask"], inp["rope"])), None
    if name == "dense":
        f = traceable_step(dec)
        return (lambda: f(*args)), None
    routed = name == "compiled_routed"
    f = torch.compile(traceable_step(dec, routed), fullgraph=not routed, dynamic=False,
                      options={"cpp_wrapper": True})
    t0 = time.perf_counter()
    f(*args)
    return (lambda: f(*args)), round(time.perf_counter() - t0, 1)


def measure_one(model_path: str, name: str, rows: int, width: int, column: int,
                steps: int) -> dict:
    """One arm in this process: ms per step (median of 3 runs of ``steps``), compile
    seconds, and the largest logit difference from the eager step on the same inputs."""
    from pipeline.model import load_model

    model, _ = load_model(model_path)
    dec = MoeDecoder(model.eval())
    inp = step_inputs(dec, rows, width, column)
    with torch.inference_mode():
        ref = dec.step(inp["tokens"], inp["positions"], inp["column"],
                       [k.clone() for k in inp["keys"]], [v.clone() for v in inp["values"]],
                       inp["mask"], inp["rope"])
        f, compile_s = arm(dec, inp, name)
        diff = float((f() - ref).abs().max())
        for _ in range(3):
            f()
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(steps):
                f()
            runs.append((time.perf_counter() - t0) / steps * 1000)
    return {"ms": statistics.median(runs), "compile_s": compile_s, "diff": diff}


def measure(args: argparse.Namespace, rows: int, names: list[str]) -> dict:
    """Every arm at ``rows``, each in a fresh process, the arms taking turns for ``--rounds``
    rounds."""
    runs: dict[str, list[dict]] = {k: [] for k in names}
    for _ in range(args.rounds):
        for name in names:
            cmd = [sys.executable, __file__, "--one", name, "--model", args.model,
                   "--batches", str(rows), "--width", str(args.width),
                   "--column", str(args.column), "--steps", str(args.steps)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    ms = {k: round(statistics.median(r["ms"] for r in v), 3) for k, v in runs.items()}
    return {
        "rows": rows, "width": args.width, "column": args.column,
        "ms_per_step": ms,
        "speedup_vs_eager": {k: round(ms["eager"] / v, 3) for k, v in ms.items() if k != "eager"},
        # the first round compiles from inductor's on-disk cache as it found it (empty on a
        # fresh TORCHINDUCTOR_CACHE_DIR), later rounds reuse what it cached
        "compile_s_first": {k: v[0]["compile_s"] for k, v in runs.items()
                            if v[0]["compile_s"] is not None},
        "compile_s": {k: statistics.median(r["compile_s"] for r in v)
                      for k, v in runs.items() if v[0]["compile_s"] is not None},
        "max_abs_logit_diff_vs_eager": {k: max(r["diff"] for r in v)
                                        for k, v in runs.items() if k != "eager"},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/selected")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--width", type=int, default=192, help="cache columns (prompt + new tokens)")
    ap.add_argument("--column", type=int, default=128, help="the step's cache column")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3, help="processes per arm and batch")
    ap.add_argument("--routed", action="store_true", help="add the compiled_routed arm")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this arm, print JSON
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    if args.one:
        res = measure_one(args.model, args.one, args.batches[0], args.width, args.column,
                          args.steps)
        print(json.dumps(res))
        return res
    names = ["eager", "dense", "compiled"] + (["compiled_routed"] if args.routed else [])
    result = {"model": args.model, "threads": torch.get_num_threads(),
              "torch": torch.__version__,
              "batches": [measure(args, b, names) for b in args.batches]}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

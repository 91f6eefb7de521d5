"""A compiled decode step against the torch engine's eager one, per step, at fixed batch sizes.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/perf/compiled_decode.py \\
        [--model models/selected] [--batches 16 64 256] [--json out.json]

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

Arms, each timed as the median of ``--rounds`` rounds of ``--steps`` steps, taking turns:

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
            experts = (routed_experts if routed else
                       lambda a, b, c: dense_experts(dec, a, b, c))(h, router[:, :-1], w)
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


def arms(dec: MoeDecoder, inp: dict, names: list[str]) -> tuple[dict, dict]:
    """Callables per arm over ``inp``, and each compiled arm's first-call seconds."""
    col_t = torch.tensor(inp["column"])
    cos, sin = inp["rope"]
    args = (inp["tokens"], inp["positions"], col_t, inp["keys"], inp["values"], inp["mask"],
            cos, sin)
    fns: dict[str, Any] = {}
    compile_s: dict[str, float] = {}
    for name in names:
        if name == "eager":
            fns[name] = lambda: dec.step(inp["tokens"], inp["positions"], inp["column"],
                                         inp["keys"], inp["values"], inp["mask"], inp["rope"])
        elif name == "dense":
            f = traceable_step(dec)
            fns[name] = lambda f=f: f(*args)
        else:
            routed = name == "compiled_routed"
            f = torch.compile(traceable_step(dec, routed), fullgraph=not routed, dynamic=False,
                              options={"cpp_wrapper": True})
            t0 = time.perf_counter()
            f(*args)
            compile_s[name] = round(time.perf_counter() - t0, 1)
            fns[name] = lambda f=f: f(*args)
    return fns, compile_s


def measure(dec: MoeDecoder, rows: int, width: int, column: int, names: list[str],
            steps: int, rounds: int) -> dict:
    inp = step_inputs(dec, rows, width, column)
    with torch.inference_mode():
        fns, compile_s = arms(dec, inp, names)
        ref = fns["eager"]()
        diff = {k: float((f() - ref).abs().max()) for k, f in fns.items() if k != "eager"}
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for k, f in fns.items():  # the arms take turns, so drift hits all alike
                for _ in range(3):
                    f()
                t0 = time.perf_counter()
                for _ in range(steps):
                    f()
                times[k].append((time.perf_counter() - t0) / steps * 1000)
    ms = {k: round(statistics.median(v), 3) for k, v in times.items()}
    return {
        "rows": rows, "width": width, "column": column,
        "ms_per_step": ms,
        "speedup_vs_eager": {k: round(ms["eager"] / v, 3) for k, v in ms.items() if k != "eager"},
        "compile_s": compile_s,
        "max_abs_logit_diff_vs_eager": diff,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/selected")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--width", type=int, default=192, help="cache columns (prompt + new tokens)")
    ap.add_argument("--column", type=int, default=128, help="the step's cache column")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--routed", action="store_true", help="add the compiled_routed arm")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    from pipeline.model import load_model

    model, _ = load_model(args.model)
    model.eval()
    dec = MoeDecoder(model)
    names = ["eager", "dense", "compiled"] + (["compiled_routed"] if args.routed else [])
    result = {"model": args.model, "threads": torch.get_num_threads(),
              "torch": torch.__version__,
              "batches": [measure(dec, b, args.width, args.column, names, args.steps,
                                  args.rounds) for b in args.batches]}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

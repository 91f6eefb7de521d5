"""Balance of C3PO steps on N data-parallel ranks: tokens trained and busy time per rank.

    .venv/bin/python -m scripts.perf.rl_ranks [--ranks 2] [--steps 4] [--toy]
    .venv/bin/python -m scripts.perf.rl_ranks --model models/selected --tasks data/rl/reasoning.parquet

Run from the repository root: the script re-runs itself under torchrun with ``--ranks`` gloo
ranks (the launcher of the stages, :mod:`pipeline.train.launch`). Each rank rolls out its share
of every step's L prompts x K samples and trains its share of the global Φ selection
(:mod:`pipeline.rl.trainer`). By default L, K, max new tokens and Φ are params.yaml's
rl_reasoning values and the model is ``--model`` (an HF folder, prompts from ``--tasks``);
``--toy`` uses the engines' toy fixture (``tiny_trained_moe``) with L=8, K=8, 64 new tokens,
Φ=512. The reward is the parity of the response's length: every group has variance, so every
step fills Φ and the figures measure the split, not the learning. The first step is a warm-up
and not counted.

Per rank it prints the mean tokens trained per optimizer step and the busy seconds (the rank's
own work, which never waits for another rank: sampling, scoring, reference scoring and the
update's forwards; the backward is left out, as DeepSpeed's gradient all-reduce waits inside
it); then the balance: the larger rank's tokens over the smaller's and the spread of busy time,
(max - min) / max, which the target keeps within 10%.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipeline.train.deepspeed_engine import launched  # noqa: E402
from pipeline.train.launch import Rendezvous, relaunch  # noqa: E402


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up)")
    ap.add_argument("--toy", action="store_true", help="the toy fixture model and prompts")
    ap.add_argument("--model", default="models/selected")
    ap.add_argument("--tasks", default="data/rl/reasoning.parquet")
    ap.add_argument("--zero-stage", type=int, default=1)
    return ap.parse_args(argv)


def length_parity(tasks, texts):
    from pipeline.verify.result import Score

    return [Score(float(len(x) % 2), bool(len(x) % 2), "") for x in texts]


def setup(args) -> tuple:
    """(model, tokenizer, tasks, L, K, max new tokens, Φ)."""
    if args.toy:
        from pipeline.engines.fixtures import tiny_trained_moe, toy_examples

        model, tok = tiny_trained_moe()
        tasks = [{"id": str(i), "domain": "math", "prompt": p}
                 for i, (p, _) in enumerate(toy_examples())]
        return model, tok, tasks, 8, 8, 64, 512
    import polars as pl

    from pipeline.model.checkpoint import load_model

    model, tok = load_model(args.model)
    tasks = pl.read_parquet(args.tasks).select("id", "domain", "prompt").to_dicts()
    rl = yaml.safe_load((REPO / "params.yaml").read_text())["rl_reasoning"]
    return (model, tok, tasks, rl["prompts_per_step"], rl["samples_per_prompt"],
            rl["max_new_tokens"], rl["token_budget"])


def main(argv: list[str]) -> None:
    args = parse(argv)
    if not launched():
        relaunch("scripts.perf.rl_ranks", argv, Rendezvous(args.ranks))
    torch.set_num_threads(1)
    from pipeline.engines import make_engine
    from pipeline.rl.optim import make_updater
    from pipeline.rl.params import RLOptim, RLParams
    from pipeline.rl.trainer import RLRun, rl_step
    from pipeline.train.determinism import set_deterministic

    torch.manual_seed(0)
    model, tok, tasks, L, K, max_new, phi = setup(args)
    p = RLParams(steps=args.steps + 1, prompts_per_step=L, samples_per_prompt=K,
                 max_new_tokens=max_new, token_budget=phi, max_rollout_rounds=3,
                 optim=RLOptim(lr=1e-5, zero_stage=args.zero_stage, warmup_ratio=0.0))
    set_deterministic(p.deterministic)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    upd = make_updater(model, p.optim, p.steps, True)
    engine = make_engine("torch", model=upd.local, tokenizer=tok)
    run = RLRun(p, 0, tok, upd, ref, engine, tasks, length_parity)
    rl_step(run, 0)  # warm-up
    rows = [rl_step(run, s) for s in range(1, args.steps + 1)]
    if run.rank == 0:
        report(rows, run.world, phi)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def report(rows: list[dict], world: int, phi: int) -> None:
    print(f"{world} ranks, {len(rows)} timed steps, Φ = {phi} tokens per optimizer step")
    for i, r in enumerate(rows, 1):
        shares = [r[f"tokens_trained_rank{k}"] for k in range(world)]
        busy = [r[f"time_busy_s_rank{k}"] for k in range(world)]
        print(f"step {i}: tokens {r['tokens_trained']:.0f} = "
              f"{' + '.join(f'{s:.0f}' for s in shares)}, busy s "
              f"{' / '.join(f'{b:.2f}' for b in busy)}, step {r['time_step_s']:.2f} s, "
              f"{r['tokens_per_s']:.0f} tokens/s, mean response {r['response_len']:.0f}")
    tokens = np.array([[r[f"tokens_trained_rank{k}"] for k in range(world)] for r in rows])
    busy = np.array([[r[f"time_busy_s_rank{k}"] for k in range(world)] for r in rows])
    for k in range(world):
        print(f"rank {k}: {tokens[:, k].mean():.1f} tokens per step, busy {busy[:, k].sum():.2f} s")
    total = busy.sum(axis=0)
    print(f"tokens per step summed over ranks: {sorted(set(tokens.sum(axis=1).tolist()))}")
    ratio = (tokens.max(axis=1) / np.maximum(tokens.min(axis=1), 1)).max()
    print(f"token share: larger / smaller = {ratio:.3f} (worst step)")
    print(f"busy-time spread (max - min) / max: {(total.max() - total.min()) / total.max():.1%} "
          f"over the timed steps (target <= 10%)")


if __name__ == "__main__":
    os.environ.setdefault("RINGLITE_TRACKING", "off")
    main(sys.argv[1:])

"""RL throughput: our C3PO step vs TRL's GRPOTrainer, side by side, same model/prompts/CPU.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/perf/rl_throughput.py [--steps 4]
    OMP_NUM_THREADS=2 .venv/bin/python scripts/perf/rl_throughput.py --toy

Both sides: the same tiny qwen2_moe, by default the pipeline's selected SFT checkpoint
(``models/selected``) on the pipeline's RL reasoning prompts with ``params.yaml``'s
rl_reasoning L, K, max new tokens and Φ (``--toy``: the engines' toy fixture
``tiny_trained_moe``, L=8, K=8, 64 new tokens, Φ=512, answers of ~14 tokens). The same
prompts at each step on both sides, K samples each at temperature 1.0, one optimizer step per
rollout batch, the same toy reward (``\boxed{answer}`` in the text), the same threads, the same
learning rate (``--lr``, default 0: the optimizer steps run but the policy stays fixed, so both
sides sample responses from the same distribution; with lr > 0 each side's policy drifts its
own way and the response lengths, hence tokens/s, drift with it). The first step of each side
is a warm-up and not timed. Prints response tokens/s for both and the ratio (target >= 3x),
our step's rollout/train split, then the coefficient of variation (std/mean) of tokens per
optimizer step and of step time for C3PO (``normaliser=budget``) vs ``token_mean`` on our loop.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.engines import make_engine  # noqa: E402
from pipeline.engines.fixtures import save_model, tiny_trained_moe, toy_examples  # noqa: E402
from pipeline.model.chat import format_prompt  # noqa: E402
from pipeline.rl.optim import make_updater  # noqa: E402
from pipeline.rl.params import RLOptim, RLParams  # noqa: E402
from pipeline.rl.rollout import sample_tasks  # noqa: E402
from pipeline.rl.trainer import RLRun, rl_step  # noqa: E402
from pipeline.train.determinism import set_deterministic  # noqa: E402
from pipeline.verify.result import Score  # noqa: E402


def toy_tasks() -> list[dict]:
    return [{"id": str(i), "domain": "math", "prompt": p, "answer": r.split("boxed{")[1][:-1]}
            for i, (p, r) in enumerate(toy_examples())]


def setup(args) -> tuple:
    """(model, tokenizer, tasks): the toy fixture, or ``--model`` (an HF folder such as
    models/selected) with the prompts of ``--tasks`` (a curated parquet; its ``reference``
    is the toy reward's answer)."""
    if not args.model:
        model, tok = tiny_trained_moe()
        return model, tok, toy_tasks()
    import polars as pl

    from pipeline.model import load_model

    model, tok = load_model(args.model)
    frame = pl.read_parquet(args.tasks)
    tasks = [{"id": r["id"], "domain": r["domain"], "prompt": r["prompt"],
              "answer": str(r["reference"])} for r in frame.iter_rows(named=True)]
    return model, tok, tasks


def toy_score(tasks, texts):
    hits = [f"\\boxed{{{t['answer']}}}" in x for t, x in zip(tasks, texts, strict=True)]
    return [Score(float(h), h, "") for h in hits]


def ours(args, normaliser: str = "budget") -> dict:
    """Timed steps of our loop; returns tokens/s and per-step tokens/time lists."""
    p = RLParams(steps=args.steps + 1, prompts_per_step=args.prompts, samples_per_prompt=args.k,
                 max_new_tokens=args.max_new_tokens, token_budget=args.budget,
                 normaliser=normaliser, drop_zero_variance=False, deepspeed=args.deepspeed,
                 updates_per_rollout=1,
                 optim=RLOptim(lr=args.lr))
    set_deterministic(p.deterministic)  # as the RL stages run (pipeline.rl.stage.build_run)
    torch.manual_seed(0)
    model, tok, tasks = setup(args)
    ref = copy.deepcopy(model).eval().requires_grad_(False)
    model.train()
    upd = make_updater(model, p.optim, p.steps, p.deepspeed)
    if args.engine == "vllm":  # rollouts from vLLM, synced to the live policy after each step
        folder = save_model(model, tok, str(Path(args.tmp) / "ours_model"))
        engine = make_engine("vllm", model_path=folder, model=upd.module)
    else:
        engine = make_engine("torch", model=upd.module, tokenizer=tok)
    run = RLRun(p, 0, tok, upd, ref, engine, tasks, toy_score)
    rl_step(run, 0)  # warm-up
    rows = [rl_step(run, s) for s in range(1, args.steps + 1)]
    engine.close()
    set_deterministic(False)  # TRL's side runs with torch's defaults
    gen = sum(r["tokens_generated"] for r in rows)
    secs = sum(r["time_step_s"] for r in rows)
    n_resp = args.steps * args.prompts * args.k
    return {"tokens_per_s": gen / secs, "mean_len": gen / n_resp, "tokens_trained": [r["tokens_trained"] for r in rows],
            "train_s": [r["time_train_s"] for r in rows], "step_s": [r["time_step_s"] for r in rows],
            "rollout_s": [r["time_rollout_s"] for r in rows]}


def trl(args) -> dict:
    """Timed GRPOTrainer steps (after one warm-up step) on the same setup."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    model, tok, tasks = setup(args)
    # the prompts our loop draws at each step (rl_step's seeding, run seed 0), in step order:
    # TRL walks the unshuffled dataset L prompts per step, so both sides see the same prompts
    rows = [t for s in range(args.steps + 1)
            for t in sample_tasks(tasks, args.prompts, {}, np.random.default_rng([0, s]))]
    ds = Dataset.from_list([{"prompt": format_prompt(tok, t["prompt"]), "answer": t["answer"]}
                            for t in rows])

    def reward(prompts, completions, answer, **_):
        return [float(f"\\boxed{{{a}}}" in c) for c, a in zip(completions, answer, strict=True)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.starts, self.ends = [], []

        def on_step_begin(self, *a, **k):
            self.starts.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            self.ends.append(time.perf_counter())

    cfg = GRPOConfig(
        output_dir=str(Path(args.tmp) / "trl"), use_cpu=True, report_to="none",
        per_device_train_batch_size=args.prompts * args.k, num_generations=args.k,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0,
        learning_rate=args.lr, max_steps=args.steps + 1, logging_steps=1, save_strategy="no",
        beta=0.0, bf16=False, shuffle_dataset=False, seed=0, dataloader_num_workers=0,
    )
    clock = Clock()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds,
                          processing_class=tok, callbacks=[clock])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    lengths = [h["completions/mean_length"] * args.prompts * args.k for h in logs][1:]
    secs = [e - s for s, e in zip(clock.starts, clock.ends, strict=True)][1:]
    return {"tokens_per_s": sum(lengths) / sum(secs), "step_s": secs,
            "mean_len": sum(lengths) / (len(lengths) * args.prompts * args.k)}


def cv(xs) -> float:
    xs = np.asarray(xs, dtype=np.float64)
    return float(xs.std() / xs.mean()) if xs.mean() else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--toy", action="store_true",
                    help="the engines' toy fixture (answers of ~14 tokens) instead of --model")
    ap.add_argument("--model", default="models/selected",
                    help="HF model folder (default: the pipeline's selected SFT checkpoint)")
    ap.add_argument("--tasks", default="data/rl/reasoning.parquet",
                    help="prompts for --model (default: the pipeline's RL reasoning prompts)")
    ap.add_argument("--params", default="params.yaml",
                    help="L, K, max new tokens and Φ default to this file's rl_reasoning")
    ap.add_argument("--prompts", type=int, help="L")
    ap.add_argument("--k", type=int, help="K")
    ap.add_argument("--max-new-tokens", type=int)
    ap.add_argument("--budget", type=int, help="Φ")
    ap.add_argument("--lr", type=float, default=0.0,
                    help="both sides' learning rate; 0 keeps the policy fixed, so both sample "
                         "responses of the same length distribution and the ratio measures the "
                         "loops, not where training moved each policy")
    ap.add_argument("--deepspeed", action="store_true", help="our side through DeepSpeed")
    ap.add_argument("--engine", choices=["torch", "vllm"], default="torch",
                    help="our side's rollout engine (TRL always uses transformers generate)")
    ap.add_argument("--tmp", default=".cache/perf")
    args = ap.parse_args()
    defaults = {"prompts": 8, "k": 8, "max_new_tokens": 64, "budget": 512}  # --toy
    if args.toy:
        args.model = ""
    else:
        for path in (args.model, args.tasks):
            if not Path(path).exists():
                sys.exit(f"rl_throughput: {path} not found: run `make run` (or `dvc repro "
                         f"difficulty`) first, or pass --toy, --model and --tasks")
        rl = yaml.safe_load(Path(args.params).read_text())["rl_reasoning"]
        defaults = {"prompts": rl["prompts_per_step"], "k": rl["samples_per_prompt"],
                    "max_new_tokens": rl["max_new_tokens"], "budget": rl["token_budget"]}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    logging.disable(logging.WARNING)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    c3po, dapo, other = ours(args, "budget"), ours(args, "token_mean"), trl(args)
    print(f"setup: L={args.prompts} K={args.k} max_new_tokens={args.max_new_tokens} "
          f"Φ={args.budget} steps={args.steps} threads={torch.get_num_threads()} "
          f"lr={args.lr} our engine={args.engine} model={args.model or 'toy fixture'}")
    print(f"ours (C3PO) response tokens/s: {c3po['tokens_per_s']:.0f} "
          f"(mean response {c3po['mean_len']:.1f} tokens)")
    print(f"  our step split: rollout {np.mean(c3po['rollout_s']):.2f} s, "
          f"train {np.mean(c3po['train_s']):.2f} s of {np.mean(c3po['step_s']):.2f} s; "
          f"TRL step {np.mean(other['step_s']):.2f} s")
    print(f"TRL GRPOTrainer response tokens/s: {other['tokens_per_s']:.0f} "
          f"(mean response {other['mean_len']:.1f} tokens)")
    print(f"ratio ours/TRL: {c3po['tokens_per_s'] / other['tokens_per_s']:.2f}x (target >= 3x)")
    print("coefficient of variation          C3PO (budget)   token_mean")
    print(f"  tokens per optimizer step       {cv(c3po['tokens_trained']):13.3f}   "
          f"{cv(dapo['tokens_trained']):10.3f}")
    print(f"  train time per step             {cv(c3po['train_s']):13.3f}   {cv(dapo['train_s']):10.3f}")
    print(f"  whole step time                 {cv(c3po['step_s']):13.3f}   {cv(dapo['step_s']):10.3f}")


if __name__ == "__main__":
    main()

"""What deterministic mode costs an RL step, and whether its memory fill can go.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/perf/determinism_cost.py [--steps 3] [--rounds 2]

With ``torch.use_deterministic_algorithms(True)`` torch also fills every new ``torch.empty``
tensor with NaN (or the integer maximum), so that a kernel that reads memory it never wrote
gives the same answer every time (``torch.utils.deterministic.fill_uninitialized_memory``).
The RL stages run deterministic (pipeline/train/determinism.py), and an RL step allocates a
great deal: the KV cache, the MoE layers' per-expert buffers, every backward.

This script runs the first steps of the ``rl_reasoning`` stage (params.yaml's section, the
pipeline's selected SFT model and RL prompts, the real verifiers) in a fresh process per arm:

- ``fill``: deterministic algorithms and the fill (torch's default in deterministic mode);
- ``nofill``: deterministic algorithms, no fill.

Arms alternate (fill, nofill, fill, nofill, ...) so that a slow stretch of a shared machine
falls on both. It prints each arm's rollout, train and step seconds (means over the runs'
steps after the first) and the ratio, and whether the two arms' step metrics (loss, grad norm,
rewards, tokens) and final weights are bit-identical: dropping the fill is only safe if no
kernel reads uninitialised memory, and identical results across arms are the evidence.
``--json`` writes the figures to a file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TIMES = ("time_rollout_s", "time_reward_s", "time_train_s", "time_step_s")


def child(args: argparse.Namespace) -> None:
    """One arm: ``args.steps`` RL steps; prints one JSON line with the rows and a weight hash."""
    import torch

    from pipeline.params import load_section, load_seed
    from pipeline.rl.params import RLParams
    from pipeline.rl.stage import build_run, default_score_fn, read_tasks
    from pipeline.rl.trainer import rl_step

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    params = load_section("rl_reasoning", RLParams, args.params)
    seed = load_seed(args.params)
    run = build_run(params, seed, args.model, read_tasks(args.tasks), default_score_fn(params))
    # build_run switched deterministic mode on; the arm decides the fill after it
    torch.utils.deterministic.fill_uninitialized_memory = args.arm == "fill"
    rows = [rl_step(run, s) for s in range(args.steps)]
    run.engine.close()
    h = hashlib.sha256()
    for name, t in sorted(run.updater.module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    print("RESULT " + json.dumps({"rows": rows, "weights": h.hexdigest()}))


def run_arm(arm: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", arm, "--steps", str(args.steps),
           "--model", args.model, "--tasks", args.tasks, "--params", args.params]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode:
        sys.exit(f"determinism_cost: arm {arm} failed:\n{out.stderr[-3000:]}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    res["wall_s"] = time.perf_counter() - t0
    return res


def strip(rows: list[dict]) -> list[dict]:
    """Step rows without the timing columns (what must agree across arms)."""
    return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "tokens_per_s"}
            for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="RL steps per run (the first is not timed)")
    ap.add_argument("--rounds", type=int, default=2, help="runs per arm, alternating")
    ap.add_argument("--model", default="models/selected")
    ap.add_argument("--tasks", default="data/rl/reasoning.parquet")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--child", choices=["fill", "nofill"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.arm = args.child
        return child(args)
    for path in (args.model, args.tasks):
        if not Path(path).exists():
            sys.exit(f"determinism_cost: {path} not found: run `make run` (or `dvc repro "
                     "difficulty`) first, or pass --model and --tasks")
    results: dict[str, list[dict]] = {"fill": [], "nofill": []}
    for i in range(args.rounds):
        for arm in ("fill", "nofill"):
            results[arm].append(run_arm(arm, args))
            r = results[arm][-1]["rows"]
            print(f"round {i + 1} {arm}: step {sum(x['time_step_s'] for x in r[1:]):.1f} s "
                  f"over {len(r) - 1} timed steps", flush=True)
    ref = results["fill"][0]
    identical = all(strip(r["rows"]) == strip(ref["rows"]) and r["weights"] == ref["weights"]
                    for arm in results for r in results[arm])
    means = {arm: {k: sum(x[k] for r in runs for x in r["rows"][1:])
                   / sum(len(r["rows"]) - 1 for r in runs) for k in TIMES}
             for arm, runs in results.items()}
    print(f"{'seconds per step':18s} {'fill':>8s} {'nofill':>8s} {'fill/nofill':>12s}")
    for k in TIMES:
        f, n = means["fill"][k], means["nofill"][k]
        print(f"{k:18s} {f:8.2f} {n:8.2f} {f / n if n else float('nan'):12.2f}")
    print(f"step metrics and final weights bit-identical across all runs: {identical}")
    if args.json:
        from pipeline.atomic import write_json

        write_json(args.json, {"steps": args.steps, "rounds": args.rounds, "means": means,
                               "ratio_step": means["fill"]["time_step_s"] / means["nofill"]["time_step_s"],
                               "identical": identical, "threads": os.environ.get("OMP_NUM_THREADS"),
                               "load_avg_1m": os.getloadavg()[0]})


if __name__ == "__main__":
    main()

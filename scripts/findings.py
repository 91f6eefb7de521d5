"""The Ring-lite paper's three findings in miniature: the RL arms (what findings/dvc.yaml's stages run).

Each arm is a stage of ``findings/dvc.yaml`` (DVC caches it, names it and tracks its params)
that runs one or two RL stages from a start model with params.yaml's RL section plus the
``findings.rl`` overrides:

- ``normalisers``: C3PO's fixed token budget (``budget``) against DAPO's token mean and GRPO's
  per-sequence mean, same start model and data, several seeds (``findings.normalisers``
  overrides ``findings.rl`` for these arms);
- ``entropy_band``: RL with the same settings from several SFT epochs;
- ``two_stage``: rl_reasoning then rl_general against one run on the mixed pool with the same
  number of steps.

    python scripts/findings.py arm normalisers budget 1   # one arm (what a DVC stage runs)

Its outputs: ``models/findings/<finding>/<arm>/<run>/`` and
``reports/findings/<finding>/arms/<arm>/<run>/``. ``scripts/findings_report.py`` scores the
arms on fresh problems and writes the verdicts; ``make findings`` / ``make finding-<name>`` run
both through ``flows/findings.py``. Kept apart so that a change to the scoring or the verdicts
reruns only the cheap report stages, never the arms.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.atomic import write_json, write_parquet, write_text  # noqa: E402
from pipeline.params import build  # noqa: E402
from pipeline.rl.params import RLParams  # noqa: E402
from pipeline.tracking import RUN_NAME_ENV, git_commit  # noqa: E402

FINDINGS = ("normalisers", "entropy_band", "two_stage")
MODELS = Path("models/findings")
REPORTS = Path("reports/findings")


# --- arms ------------------------------------------------------------------------------------
def section(params: dict, stage: str, overrides: dict[str, Any]) -> dict:
    """``params[stage]`` with ``overrides`` (dotted keys), checked by the stage's loader."""
    out = copy.deepcopy(params[stage])
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    build(RLParams, out, f"findings: {stage}")  # an unknown key or a bad value fails here
    return out


def arm_runs(params: dict, finding: str, arm: str, seed: str | None = None
             ) -> list[dict[str, Any]]:
    """The RL runs of one arm, in order: ``{stage, start, tasks, section, seed, name}``. A run's
    ``start`` of ``"<previous>"`` is the model of the run before it."""
    f = params["findings"]
    rl = dict(f["rl"])
    base_seed = int(params["seed"])
    if finding == "normalisers":
        if seed is None:
            raise SystemExit("normalisers arm: give the normaliser and the seed")
        over = {**rl, **(f.get("normalisers") or {}), "normaliser": arm}
        return [{"name": "rl_reasoning", "stage": "rl_reasoning", "start": "models/selected",
                 "tasks": "data/rl/reasoning.parquet", "seed": base_seed + int(seed),
                 "section": section(params, "rl_reasoning", over)}]
    if finding == "entropy_band":
        return [{"name": "rl_reasoning", "stage": "rl_reasoning",
                 "start": f"models/sft/epoch_{int(arm)}", "tasks": "data/rl/reasoning.parquet",
                 "seed": base_seed, "section": section(params, "rl_reasoning", rl)}]
    if finding == "two_stage":
        t = f["two_stage"]
        if arm == "two_stage":
            return [{"name": "rl_reasoning", "stage": "rl_reasoning", "start": "models/selected",
                     "tasks": "data/rl/reasoning.parquet", "seed": base_seed,
                     "section": section(params, "rl_reasoning",
                                        {**rl, "steps": t["reasoning_steps"]})},
                    {"name": "rl_general", "stage": "rl_general", "start": "<previous>",
                     "tasks": "data/rl/general.parquet", "seed": base_seed,
                     "section": section(params, "rl_general",
                                        {**rl, "steps": t["general_steps"],
                                         **(t.get("general") or {})})}]
        if arm == "joint":
            mix = dict(params["rl_reasoning"].get("domain_mix") or {})
            if mix:  # the general domains join the mix at the weight of one reasoning domain
                mix.update({d: max(mix.values()) for d in ("ifeval", "open_qa")})
            steps = t["reasoning_steps"] + t["general_steps"]
            # equal tokens: the two stages' Φ differ, so the joint arm's Φ is the two-stage
            # arm's budget over all its updates spread evenly over the joint arm's steps
            two = [r["section"] for r in arm_runs(params, "two_stage", "two_stage")]
            total = sum(s["steps"] * s["token_budget"] * s["updates_per_rollout"] for s in two)
            over = {**rl, "steps": steps, "domain_mix": mix, "updates_per_rollout": 1,
                    "token_budget": round(total / steps)}
            return [{"name": "rl_joint", "stage": "rl_reasoning", "start": "models/selected",
                     "tasks": "<joint pool>", "seed": base_seed,
                     "section": section(params, "rl_reasoning", over)}]
        raise SystemExit(f"two_stage arm {arm!r}: choose two_stage or joint")
    raise SystemExit(f"unknown finding {finding!r}; choose from {FINDINGS}")


def arm_name(finding: str, arm: str, seed: str | None = None) -> str:
    if finding == "normalisers":
        return f"{arm}-s{seed}"
    if finding == "entropy_band":
        return f"epoch{int(arm)}"
    return arm


def joint_pool(out: Path) -> str:
    """The rl_reasoning and rl_general prompt files as one task file (the joint arm's pool)."""
    frames = [pl.read_parquet(p) for p in ("data/rl/reasoning.parquet",
                                           "data/rl/general.parquet")]
    path = out / "pool.parquet"
    write_parquet(path, pl.concat(frames, how="diagonal_relaxed"))
    return str(path)


def run_arm(finding: str, arm: str, seed: str | None, params_path: Path) -> Path:
    """Run one arm's RL stage(s): ``models/findings/<finding>/<arm>/<run>/`` and
    ``reports/findings/<finding>/arms/<arm>/<run>/`` (params.yaml, metrics.json, steps.csv,
    reward_curve.png, wall.json: wall and CPU seconds, the load average as the run ended)."""
    params = yaml.safe_load(params_path.read_text())
    name = arm_name(finding, arm, seed)
    model_root, report_root = MODELS / finding / name, REPORTS / finding / "arms" / name
    model_root.mkdir(parents=True, exist_ok=True)
    prev = None
    for run in arm_runs(params, finding, arm, seed):
        start = str(prev) if run["start"] == "<previous>" else run["start"]
        tasks = joint_pool(model_root) if run["tasks"] == "<joint pool>" else run["tasks"]
        rep = report_root / run["name"]
        rep.mkdir(parents=True, exist_ok=True)
        arm_params = copy.deepcopy(params)
        arm_params[run["stage"]] = run["section"]
        arm_params["seed"] = run["seed"]
        arm_params.pop("findings", None)
        pfile = rep / "params.yaml"
        write_text(pfile, yaml.safe_dump(arm_params, sort_keys=False))
        out = model_root / run["name"]
        cmd = [sys.executable, "-m", f"pipeline.stages.{run['stage']}", "--model", start,
               "--tasks", tasks, "--val", "data/curated/val.parquet", "--out", str(out),
               "--report-dir", str(rep), "--params", str(pfile)]
        env = dict(os.environ)
        env[RUN_NAME_ENV] = f"{finding}/{name}/{run['name']}"
        print(f"findings: {finding} arm {name}: {run['stage']} from {start}", flush=True)
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        # wait4: the exit status and the CPU seconds of the run's whole process tree
        _, status, usage = os.wait4(proc.pid, 0)
        rc = proc.returncode = os.waitstatus_to_exitcode(status)
        if rc:
            raise SystemExit(f"findings: {finding} arm {name}: {run['stage']} failed (exit {rc})")
        # the load average as the run ends tells an idle machine (about the cores the run used)
        # from a shared one, whose other work inflated the wall seconds
        write_json(rep / "wall.json", {"wall_s": round(time.time() - t0, 1),
                                       "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                                       "load_avg": [round(x, 2) for x in os.getloadavg()],
                                       "cpu_count": os.cpu_count(),
                                       "commit": git_commit(REPO)})
        prev = out
    return report_root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("arm", help="run one arm (a findings/dvc.yaml stage runs this)")
    a.add_argument("finding", choices=FINDINGS)
    a.add_argument("arm", help="normaliser | SFT epoch | two_stage or joint")
    a.add_argument("seed", nargs="?", default=None, help="normalisers: the seed offset")
    a.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    run_arm(args.finding, args.arm, args.seed, Path(args.params))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

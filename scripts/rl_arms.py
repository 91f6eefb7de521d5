"""RL arms from one start model, scored on fresh problems: the placebo control and sweeps.

Each ``--arm NAME[:key=value,key=value...]`` runs the RL stage (``--stage``) from ``--start``
with the stage's params.yaml section plus the overrides (dotted keys inside the section, values
parsed as YAML; the reserved key ``tasks`` gives the arm its own RL prompt file instead of
``--tasks``), then every arm's model and the start model are scored on ``--per-domain``
freshly generated problems per domain (``scripts/heldout_probe.py``: none in any curated split
or in any arm's prompt file), and each arm is compared with the start problem by problem
(paired bootstrap 95% CI). The default arms are the placebo control:

    .venv/bin/python scripts/rl_arms.py --stage rl_reasoning --start models/selected \
        --tasks data/rl/reasoning.parquet --out-dir reports/placebo

runs ``real`` (the params as they are) and ``placebo`` (``placebo=true``: rewards shuffled
within each group, so the expected gradient is zero). A gain is the reward's only if the real
arm beats the start and the placebo arm does not. A sweep:

    .venv/bin/python scripts/rl_arms.py --stage rl_reasoning --start models/selected \
        --tasks data/rl/reasoning.parquet --arm base --arm lr2x:optim.lr=2e-4 \
        --arm k2:kl_estimator=k2 --out-dir reports/arms/lr_kl

Writes ``<out-dir>/<arm>/{params.yaml,model/,reports/}``, ``<out-dir>/probe/`` (the probe's
tasks, samples, ``gains.json``, ``gains.md``; with two or more arms ``gains.md`` also compares
every arm with the first one on the same problems) and ``<out-dir>/arms.json`` (per arm: the
overrides, the stage's metrics.json and the fresh-problem comparison). An arm whose
``reports/metrics.json`` exists with the same params is not rerun. Under MLflow every arm's
stage run nests under one parent run named ``rl_arms``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import heldout_probe as probe  # noqa: E402

from pipeline.atomic import write_json, write_parquet, write_text  # noqa: E402
from pipeline.params import build  # noqa: E402
from pipeline.rl.params import RLParams  # noqa: E402
from pipeline.tracking import PARENT_ENV, git_commit, stage_run  # noqa: E402

GROUPS = {"rl_reasoning": ["math", "countdown", "sudoku", "knights_knaves", "code"],
          "rl_general": ["ifeval"]}  # fresh-problem domains scored per stage
POOL_DOMAINS = {"rl_reasoning": GROUPS["rl_reasoning"], "rl_general": ["ifeval", "open_qa"]}


def parse_arm(spec: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,key=value`` -> (name, {dotted key: YAML value})."""
    name, _, rest = spec.partition(":")
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise SystemExit(f"--arm {spec!r}: the name must be letters, digits, - or _")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SystemExit(f"--arm {spec!r}: {item!r} is not key=value")
        overrides[key.strip()] = _value(value)
    return name, overrides


def _value(text: str) -> Any:
    """A YAML value; numbers YAML 1.1 leaves as strings (``2e-4``) become floats."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def with_overrides(params: dict, section: str, overrides: dict[str, Any]) -> dict:
    """A copy of ``params`` with ``section.<dotted key>`` set, checked by the stage's strict
    params loader (an unknown key or a wrong type fails here, naming it)."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        node = out[section]
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SystemExit(f"{section}.{key}: {part} is not a section")
        node[parts[-1]] = value
    try:
        build(RLParams, out[section], section)
    except ValueError as e:  # ParamsError, or a value the dataclass rejects
        raise SystemExit(f"--arm: {e}") from None
    return out


def digest(model_dir: str) -> str:
    """sha256 of a model folder's weight files (which start model an experiment used)."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def sys_argv(argv: list[str] | None) -> list[str]:
    return list(argv) if argv is not None else sys.argv[1:]


PATH_FLAGS = ("--start", "--tasks", "--val", "--params", "--curated")


def shown(path: str, out_dir: Path, root: Path = REPO) -> str:
    """``path`` as a record shows it: under the out-dir as ``<out-dir>/...``, inside the
    checkout relative to it, anything else as given."""
    p = Path(path)
    if not p.is_absolute():
        return path
    for base, prefix in ((out_dir.resolve(), "<out-dir>"), (root, "")):
        try:
            rel = p.resolve().relative_to(base)
        except ValueError:
            continue
        return f"{prefix}/{rel}" if prefix else str(rel)
    return path


def rerun_command(argv: list[str], root: Path = REPO) -> str:
    """The command a record keeps, rerunnable from any checkout: path arguments relative to
    the checkout, the scratch out-dir under ``runs/`` and the record under
    ``reports/experiments/``, both named after the record (or the out-dir)."""
    args, flags = [], {}
    for a in argv:  # --flag=value -> --flag value
        args += a.split("=", 1) if a.startswith("--") and "=" in a else [a]
    for flag, value in zip(args, args[1:], strict=False):
        flags.setdefault(flag, value)
    name = Path(flags.get("--record") or flags.get("--out-dir", "arms")).name
    out = Path(flags.get("--out-dir", "."))
    fixed = {"--out-dir": f"runs/{name}", "--record": f"reports/experiments/{name}"}
    words = ["scripts/rl_arms.py"]
    for i, a in enumerate(args):
        prev = args[i - 1] if i else ""
        if prev in fixed:
            a = fixed[prev]
        elif prev in PATH_FLAGS:
            a = shown(a, out, root)
        words.append(a)
    return shlex.join(words)


def make_pool(params: dict, domains: list[str], per_domain: int, seed: int, curated: Path,
              path: Path) -> None:
    """``per_domain`` fresh tasks per domain (none in any curated split) as an RL task file."""
    pool = probe.fresh_tasks(params, domains, per_domain, seed, probe.seen_prompts(curated))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(path, pool.with_columns(pl.lit("rl").alias("split")))


def run_arm(stage: str, start: str, tasks: str, val: str, arm_dir: Path, params: dict,
            env: dict[str, str]) -> dict[str, Any]:
    """The stage from ``start`` with ``params``; returns its metrics.json (skips a finished
    arm with the same params)."""
    metrics = arm_dir / "reports" / "metrics.json"
    pfile = arm_dir / "params.yaml"
    text = yaml.safe_dump(params, sort_keys=False)
    timing = arm_dir / "wall.json"
    if metrics.exists() and pfile.exists() and pfile.read_text() == text:
        print(f"{arm_dir.name}: already run with these params; kept")
        out = json.loads(metrics.read_text())
        if timing.exists():
            out.update(json.loads(timing.read_text()))
        return out
    arm_dir.mkdir(parents=True, exist_ok=True)
    write_text(pfile, text)
    cmd = [sys.executable, "-m", f"pipeline.stages.{stage}", "--model", start, "--tasks", tasks,
           "--val", val, "--out", str(arm_dir / "model"), "--report-dir",
           str(arm_dir / "reports"), "--params", str(pfile)]
    t0 = time.time()
    rc = subprocess.call(cmd, cwd=REPO, env=env)
    if rc:
        raise SystemExit(f"{arm_dir.name}: the {stage} stage failed (exit {rc})")
    out = json.loads(metrics.read_text())
    extra = {"wall_s": time.time() - t0, "commit": git_commit(REPO)}
    write_json(timing, extra)
    return {**out, **extra}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=sorted(GROUPS), default="rl_reasoning")
    ap.add_argument("--start", required=True, help="start model (HF folder)")
    ap.add_argument("--tasks", default=None, help="RL prompts (task parquet)")
    ap.add_argument("--fresh-pool", type=int, default=0, metavar="PER_DOMAIN",
                    help="instead of --tasks: generate PER_DOMAIN fresh tasks per domain of the "
                         "stage's group (curate's generator knobs, --pool-seed, none in any "
                         "curated split) into <out-dir>/pool.parquet")
    ap.add_argument("--pool-seed", type=int, default=5151)
    ap.add_argument("--val", default=str(REPO / "data/curated/val.parquet"))
    ap.add_argument("--arm", action="append", default=None,
                    help="NAME[:key=value,...] (default: real and placebo:placebo=true)")
    ap.add_argument("--domains", nargs="+", default=None,
                    help="fresh-problem domains (default: the stage's domain group; ifeval for "
                         "rl_general)")
    ap.add_argument("--per-domain", type=int, default=150)
    ap.add_argument("--probe-seed", type=int, default=31337)
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--curated", default=str(REPO / "data/curated"))
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--record", default=None,
                    help="also copy arms.json and the fresh-problem gains.md to this folder "
                         "(e.g. reports/experiments/<name>, which git tracks)")
    ap.add_argument("--note", default="", help="what the experiment varies and why (kept in "
                    "arms.json and shown by scripts/experiments_page.py)")
    args = ap.parse_args(argv)

    base = yaml.safe_load(Path(args.params).read_text())
    arms = [parse_arm(a) for a in (args.arm or ["real", "placebo:placebo=true"])]
    if len({n for n, _ in arms}) != len(arms) or "start" in {n for n, _ in arms}:
        raise SystemExit("arm names must be distinct and not 'start'")
    out = Path(args.out_dir)
    if bool(args.tasks) == bool(args.fresh_pool):
        raise SystemExit("give either --tasks or --fresh-pool")
    if args.fresh_pool:
        args.tasks = str(out / "pool.parquet")
        make_pool(base, POOL_DOMAINS[args.stage], args.fresh_pool, args.pool_seed,
                  Path(args.curated), Path(args.tasks))
    results: dict[str, Any] = {}
    with stage_run("rl_arms", {"stage": args.stage, "start": args.start, "tasks": args.tasks,
                               "arms": {n: o for n, o in arms}}, run_name="rl_arms") as parent:
        env = dict(os.environ)
        if parent.run_id:
            env[PARENT_ENV] = parent.run_id
        task_files = []
        for name, overrides in arms:
            tasks = str(overrides.pop("tasks", args.tasks))
            task_files.append(tasks)
            params = with_overrides(base, args.stage, overrides)
            results[name] = {"overrides": overrides, "tasks": tasks,
                             "metrics": run_arm(args.stage, args.start, tasks, args.val,
                                                out / name, params, env)}
        seen = probe.seen_prompts(Path(args.curated), sorted(set(task_files)))
        domains = args.domains or GROUPS[args.stage]
        fresh = probe.fresh_tasks(base, domains, args.per_domain, args.probe_seed, seen)
        probe_dir = out / "probe"
        probe_dir.mkdir(parents=True, exist_ok=True)
        fresh.write_parquet(probe_dir / "tasks.parquet")
        models = [f"start={args.start}"] + [f"{n}={out / n / 'model'}" for n, _ in arms]
        if probe.run_bench(base, probe_dir / "tasks.parquet", models, probe_dir):
            raise SystemExit("the fresh-problem bench failed")
        samples = pl.read_parquet(probe_dir / "samples.parquet")
        g = probe.gains(samples, "start")
        md = probe.gains_markdown(g, "start")
        write_json(probe_dir / "gains.json", {"baseline": "start", "seed": args.probe_seed,
                                              "models": g})
        for name, _ in arms:
            results[name]["fresh"] = g[name]
        results["start"] = {"fresh": g["start"]}
        if len(arms) > 1:  # the other arms against the first, problem by problem
            first = arms[0][0]
            vs = probe.gains(samples, first)
            md += (f"\n\nThe same problems, paired against the arm `{first}`:\n\n"
                   + probe.gains_markdown({n: vs[n] for n, _ in arms}, first))
            for name, _ in arms[1:]:
                results[name][f"fresh_vs_{first}"] = vs[name]
        write_text(probe_dir / "gains.md", md)
        write_json(out / "arms.json", {
            "note": args.note, "date": time.strftime("%Y-%m-%d %H:%M"), "stage": args.stage,
            "start": shown(args.start, out),
            "start_digest": digest(args.start),
            "tasks": shown(args.tasks, out), "probe_seed": args.probe_seed,
            "per_domain": args.per_domain, "commit": git_commit(REPO),
            "command": rerun_command(sys_argv(argv)),
            "arms": {n: {**r, "tasks": shown(r["tasks"], out)} if "tasks" in r else r
                     for n, r in results.items()}})
        if args.record:
            rec = Path(args.record)
            rec.mkdir(parents=True, exist_ok=True)
            write_text(rec / "arms.json", (out / "arms.json").read_text())
            write_text(rec / "gains.md", md)
        parent.text(md, "gains.md")
        parent.tags({"mlflow.note.content": md})
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

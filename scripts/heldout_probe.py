"""Score models on fresh generated problems, with paired 95% CIs of each model against a baseline.

The pipeline's bench draws 40 problems per domain, so two models within ~3 points of each
other on it are not told apart. This script generates ``--per-domain`` new tasks per domain
with the curate params' generator knobs and another seed, drops every prompt that appears in
any curated split (sft, rl, val, bench) or in the ``--exclude`` files (normalised text, the
curate stage's normalisation), runs the bench stage on them (all problems, the bench params'
decoding) for the given models, and compares every model with ``--baseline`` problem by
problem (paired bootstrap over problems):

    .venv/bin/python scripts/heldout_probe.py --model sft=models/selected \
        --model rl_reasoning=models/rl_reasoning --model rl_general=models/rl_general \
        --domains math countdown sudoku knights_knaves code --per-domain 150 \
        --baseline sft --out-dir reports/probe

``--per-domain`` takes one count for every domain and ``domain=N`` overrides (``150
ifeval=600``: a domain whose problems vary more gets more of them).

Writes ``<out-dir>/tasks.parquet``, the bench outputs (``table.md``, ``metrics.json``,
``samples.parquet``, ...) and ``gains.json`` / ``gains.md`` (per model: avg@k on all reasoning
domains pooled, on ifeval, per domain, and the paired difference to the baseline with its CI;
``gains.json`` also holds, under ``versus``, the same comparison against each other model).
Tracking follows ``RINGLITE_TRACKING`` like every stage; registration is off.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.atomic import write_json, write_parquet, write_text  # noqa: E402
from pipeline.bench.metrics import paired_bootstrap  # noqa: E402
from pipeline.curation.normalize import normalize  # noqa: E402
from pipeline.schema import REASONING_DOMAINS  # noqa: E402
from pipeline.tasks import generate  # noqa: E402

SPLITS = ("sft", "rl", "val", "bench")


def seen_prompts(curated: Path, extra: Sequence[str | Path] = ()) -> set[str]:
    """Normalised prompts of every curated split and of the ``extra`` task files."""
    files = [curated / f"{s}.parquet" for s in SPLITS] + [Path(e) for e in extra]
    seen: set[str] = set()
    for f in files:
        if not f.exists():
            raise SystemExit(f"{f}: missing (the curated splits come from `dvc repro curate`)")
        seen |= set(normalize(pl.read_parquet(f, columns=["prompt"])["prompt"].to_list()))
    return seen


def parse_counts(items: Sequence[str], domains: Sequence[str]) -> dict[str, int]:
    """``--per-domain`` entries: ``N`` for every domain, ``domain=N`` for one
    (``150 ifeval=600``)."""
    default, counts = 150, {}
    for item in items:
        name, _, n = item.rpartition("=")
        try:
            value = int(n)
        except ValueError:
            raise SystemExit(f"--per-domain {item!r}: expected N or domain=N") from None
        if value < 1:
            raise SystemExit(f"--per-domain {item!r}: the count must be at least 1")
        if not name:
            default = value
        elif name not in domains:
            raise SystemExit(f"--per-domain {item!r}: {name!r} is not one of --domains "
                             f"({', '.join(domains)})")
        else:
            counts[name] = value
    return {d: counts.get(d, default) for d in domains}


def fresh_tasks(params: dict, domains: list[str], per_domain: int | dict[str, int], seed: int,
                seen: set[str]) -> pl.DataFrame:
    """``per_domain`` new tasks per domain (one count, or one per domain) whose normalised
    prompts are not in ``seen``."""
    gens = params["curate"]["generators"]
    frames = []
    for d in domains:
        if d not in gens:
            raise SystemExit(f"domain {d!r} has no generator in params.yaml curate.generators")
        n = per_domain[d] if isinstance(per_domain, dict) else per_domain
        rows = generate(d, n * 3, seed, **dict(gens[d].get("knobs") or {}))
        norm = normalize([r["prompt"] for r in rows])
        df = (pl.DataFrame(rows).with_columns(pl.Series("_norm", norm))
              .filter(~pl.col("_norm").is_in(list(seen)))
              .unique("_norm", keep="first", maintain_order=True).drop("_norm").head(n))
        if df.height < n:
            print(f"{d}: only {df.height} fresh prompts (of {n} asked)", file=sys.stderr)
        frames.append(df)
    return pl.concat(frames).with_columns(pl.lit("bench").alias("split"))


def run_bench(params: dict, tasks_path: Path, models: Sequence[str], out: Path) -> int:
    """The bench stage on ``tasks_path`` (every problem) for ``models`` (``name=folder``)."""
    params = json.loads(json.dumps(params))
    params["bench"]["max_problems"] = 0
    params["bench"]["files"] = []
    params["bench"]["register"]["enabled"] = False
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(params, f)
    cmd = [sys.executable, "-m", "pipeline.stages.bench", "--bench", str(tasks_path),
           "--out-dir", str(out), "--params", f.name]
    for m in models:
        cmd += ["--model", m]
    try:
        return subprocess.call(cmd, cwd=REPO)
    finally:
        os.unlink(f.name)


def per_problem(samples: pl.DataFrame) -> pl.DataFrame:
    """(model, task_id, domain, score): each problem's avg@k (mean correctness of its samples)."""
    return (samples.group_by("model", "task_id", "domain")
            .agg(pl.col("correct").cast(pl.Float64).mean().alias("score"))
            .sort("model", "task_id"))


def gains(samples: pl.DataFrame, baseline: str, seed: int = 0) -> dict[str, dict]:
    """Per model and group (``all_reasoning``, ``ifeval``, each domain): avg@k in points and,
    for models other than ``baseline``, the paired difference to it with a 95% bootstrap CI."""
    pp = per_problem(samples)
    models = pp["model"].unique(maintain_order=True).to_list()
    if baseline not in models:
        raise SystemExit(f"--baseline {baseline!r} is not one of the models ({models})")
    domains = sorted(pp["domain"].unique().to_list())
    groups = {"all_reasoning": [d for d in domains if d in REASONING_DOMAINS]}
    groups.update({d: [d] for d in domains})
    out: dict[str, dict] = {}
    for m in models:
        out[m] = {}
        for g, ds in groups.items():
            if not ds:
                continue
            mine = pp.filter((pl.col("model") == m) & pl.col("domain").is_in(ds)).sort("task_id")
            base = pp.filter((pl.col("model") == baseline) & pl.col("domain").is_in(ds)
                             ).sort("task_id")
            if mine["task_id"].to_list() != base["task_id"].to_list():
                raise SystemExit(f"{m} and {baseline} were not scored on the same problems")
            row = {"problems": mine.height, "avg": 100 * float(mine["score"].mean())}
            if m != baseline:
                d, lo, hi = paired_bootstrap(base["score"].to_list(), mine["score"].to_list(),
                                             seed=seed)
                row.update(diff=100 * d, ci_low=100 * lo, ci_high=100 * hi)
            out[m][g] = row
    return out


def gains_markdown(g: dict[str, dict], baseline: str) -> str:
    groups = list(next(iter(g.values())))
    lines = [f"avg@k in points; in brackets the paired difference to `{baseline}` and its 95% "
             "bootstrap CI over problems", "",
             "| model | " + " | ".join(groups) + " |", "|---|" + "---:|" * len(groups)]
    for m, rows in g.items():
        cells = []
        for grp in groups:
            r = rows[grp]
            cell = f"{r['avg']:.1f}"
            if "diff" in r:
                cell += f" ({r['diff']:+.1f}, {r['ci_low']:+.1f} to {r['ci_high']:+.1f})"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    n = {grp: next(iter(g.values()))[grp]["problems"] for grp in groups}
    lines += ["", "problems: " + ", ".join(f"{k} {v}" for k, v in n.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="name=HF folder")
    ap.add_argument("--domains", nargs="+",
                    default=["math", "countdown", "sudoku", "knights_knaves", "code"])
    ap.add_argument("--per-domain", nargs="+", default=["150"],
                    help="tasks per domain: N for every domain, domain=N for one "
                         "(e.g. 150 ifeval=600)")
    ap.add_argument("--seed", type=int, default=90909)
    ap.add_argument("--baseline", default=None,
                    help="model the others are compared with (default: the first --model)")
    ap.add_argument("--exclude", action="append", default=[],
                    help="a task file whose prompts count as seen (e.g. an RL pool kept outside "
                         "the curated splits); repeatable")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--curated", default=str(REPO / "data/curated"))
    ap.add_argument("--out-dir", default=str(REPO / "reports/probe"))
    args = ap.parse_args(argv)

    params = yaml.safe_load(Path(args.params).read_text())
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen = seen_prompts(Path(args.curated), args.exclude)
    tasks = fresh_tasks(params, args.domains, parse_counts(args.per_domain, args.domains),
                        args.seed, seen)
    write_parquet(out / "tasks.parquet", tasks)
    rc = run_bench(params, out / "tasks.parquet", args.model, out)
    if rc:
        return rc
    baseline = args.baseline or args.model[0].split("=", 1)[0]
    samples = pl.read_parquet(out / "samples.parquet")
    g = gains(samples, baseline)
    # every other model as the baseline too: e.g. rl_general against rl_reasoning, paired
    versus = {b: gains(samples, b) for b in g if b != baseline}
    command = " ".join([".venv/bin/python scripts/heldout_probe.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    write_json(out / "gains.json", {"baseline": baseline, "seed": args.seed, "models": g,
                                    "versus": versus, "command": command})
    md = gains_markdown(g, baseline)
    write_text(out / "gains.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

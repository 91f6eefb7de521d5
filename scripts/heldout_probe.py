"""A larger held-out check than the pipeline's bench: fresh generated tasks, then ``bench``.

The pipeline's bench draws 40 problems per domain, so two models within ~3 points of each
other on it are not told apart. This script generates ``--per-domain`` new tasks per domain
with the curate params' generator knobs and another seed, drops every prompt that appears in
any curated split (sft, rl, val, bench), and runs the bench stage on them (all problems, the
bench params' decoding) for the given models:

    .venv/bin/python scripts/heldout_probe.py --model sft=models/selected \
        --model rl_reasoning=models/rl_reasoning --model rl_general=models/rl_general \
        --domains math countdown sudoku knights_knaves code --per-domain 150 --out-dir reports/probe

Writes ``<out-dir>/tasks.parquet`` and the bench outputs (``table.md``, ``metrics.json``, ...)
there. Tracking follows ``RINGLITE_TRACKING`` like every stage; registration is off.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.atomic import write_parquet  # noqa: E402
from pipeline.tasks import generate  # noqa: E402

SPLITS = ("sft", "rl", "val", "bench")


def fresh_tasks(params: dict, domains: list[str], per_domain: int, seed: int,
                curated: Path) -> pl.DataFrame:
    """``per_domain`` new tasks per domain whose prompts are in no curated split."""
    gens = params["curate"]["generators"]
    seen: set[str] = set()
    for split in SPLITS:
        f = curated / f"{split}.parquet"
        if not f.exists():
            raise SystemExit(f"{f}: missing; run `dvc repro curate` first")
        seen |= set(pl.read_parquet(f)["prompt"].to_list())
    frames = []
    for d in domains:
        if d not in gens:
            raise SystemExit(f"domain {d!r} has no generator in params.yaml curate.generators")
        rows = generate(d, per_domain * 2, seed, **dict(gens[d].get("knobs") or {}))
        df = (pl.DataFrame(rows).filter(~pl.col("prompt").is_in(list(seen)))
              .unique("prompt", keep="first", maintain_order=True).head(per_domain))
        if df.height < per_domain:
            print(f"{d}: only {df.height} fresh prompts (of {per_domain} asked)", file=sys.stderr)
        frames.append(df)
    return pl.concat(frames).with_columns(pl.lit("bench").alias("split"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="name=HF folder")
    ap.add_argument("--domains", nargs="+",
                    default=["math", "countdown", "sudoku", "knights_knaves", "code"])
    ap.add_argument("--per-domain", type=int, default=150)
    ap.add_argument("--seed", type=int, default=90909)
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--curated", default=str(REPO / "data/curated"))
    ap.add_argument("--out-dir", default=str(REPO / "reports/probe"))
    args = ap.parse_args(argv)

    params = yaml.safe_load(Path(args.params).read_text())
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = fresh_tasks(params, args.domains, args.per_domain, args.seed, Path(args.curated))
    write_parquet(out / "tasks.parquet", tasks)
    params["bench"]["max_problems"] = 0
    params["bench"]["files"] = []
    params["bench"]["register"]["enabled"] = False
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(params, f)
    cmd = [sys.executable, "-m", "pipeline.stages.bench", "--bench", str(out / "tasks.parquet"),
           "--out-dir", str(out), "--params", f.name]
    for m in args.model:
        cmd += ["--model", m]
    try:
        return subprocess.call(cmd, cwd=REPO)
    finally:
        os.unlink(f.name)


if __name__ == "__main__":
    raise SystemExit(main())

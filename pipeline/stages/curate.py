"""Stage ``curate`` (first DVC stage): task sources -> curated, deduplicated, decontaminated splits.

Reads the built-in generators (``pipeline.tasks.generate``, counts and knobs per domain) and
the user files named in ``params.yaml`` (section ``curate``); writes to ``--out-dir``:
``sft.parquet``, ``rl.parquet``, ``val.parquet``, ``bench.parquet`` (TASK schema),
``quarantine.parquet`` (QUARANTINE), ``dropped.parquet`` (TASK + origin, reason, matched_id,
similarity) and ``stats.json`` (counts by origin, domain, split and reason; balanced).

Run::

    python -m pipeline.stages.curate --out-dir data/curated     # or: dvc repro curate
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json, write_parquet
from pipeline.curation.config import CurateParams
from pipeline.curation.core import CurateResult, check_bad_share, curate
from pipeline.curation.ingest import file_candidates, generator_candidates, user_frame_for_logging
from pipeline.headline import write_headline
from pipeline.params import load_section, load_seed
from pipeline.tracking import StageRun, rows_of, stage_run

__all__ = ["CurateParams", "main", "gather_candidates"]
OUTPUTS = ("sft", "rl", "val", "bench", "quarantine", "dropped")


def gather_candidates(
    params: CurateParams, seed: int, root: Path = Path(".")
) -> list[dict[str, Any]]:
    """Candidate rows from every generator (train and bench draws) and every user file."""
    candidates: list[dict[str, Any]] = []
    if params.generators:
        from pipeline.tasks import generate  # imported lazily: user-file-only runs do not need it

        for domain, spec in params.generators.items():
            candidates += generator_candidates(generate, domain, spec, seed, "train")
            if spec.bench_n:
                bench_seed = seed + params.bench_seed_offset
                candidates += generator_candidates(generate, domain, spec, bench_seed, "bench")
    for spec in params.user_files:
        candidates += file_candidates(spec, root)
    return candidates


def _metric_safe(stats: dict[str, Any]) -> dict[str, Any]:
    """Stats with keys MLflow accepts (origins are file paths / ``gen:x``)."""
    if not isinstance(stats, dict):
        return stats
    return {re.sub(r"[^\w\-./ ]", "_", str(k)): _metric_safe(v) for k, v in stats.items()}


def headline(stats: dict[str, Any]) -> dict[str, Any]:
    """The curate run's MLflow metrics: totals, split sizes, drop and quarantine reasons, rows
    kept per domain. Counts per origin and per domain and split go to tables."""
    kept_by_domain = {d: sum(c.values()) for d, c in stats["by_domain_split"].items()}
    keys = ("rows_in", "kept", "dropped", "quarantined", "balanced", "by_split",
            "dropped_by_reason", "quarantined_by_reason")
    return {**{k: stats[k] for k in keys if k in stats}, "kept_by_domain": kept_by_domain}


def tables(stats: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Detail tables: per origin (in / kept / dropped / quarantined) and per domain (kept per
    split, dropped per reason)."""
    domains = sorted(set(stats["by_domain_split"]) | set(stats["dropped_by_domain_reason"]))
    per_domain = [{"domain": d,
                   **{f"kept.{k}": v for k, v in stats["by_domain_split"].get(d, {}).items()},
                   **{f"dropped.{k}": v
                      for k, v in stats["dropped_by_domain_reason"].get(d, {}).items()}}
                  for d in domains]
    return {"tables/by_origin.json": rows_of(stats["by_origin"], "origin"),
            "tables/by_domain.json": per_domain}


def _log(run: StageRun, params: CurateParams, result: CurateResult, out_dir: Path) -> None:
    for spec in params.user_files:
        run.dataset(
            user_frame_for_logging(spec), name=spec.path, source=str(Path(spec.path).resolve())
        )
    for name in ("sft", "rl", "val", "bench"):
        run.dataset(
            result.frames[name],
            name=f"curated/{name}",
            source=str(out_dir / f"{name}.parquet"),
            context="output",
        )
    run.metrics(headline(_metric_safe(result.stats)))
    run.metrics(result.perf, prefix="perf/")
    for name, rows in tables(result.stats).items():
        if rows:
            run.table(rows, name)
    if result.pairs.height:
        run.table(result.pairs, "dropped_pairs.json")
    run.artifact(out_dir / "stats.json")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--report-dir", type=Path, default=None,
                    help="where headline.json goes (default: --out-dir)")
    ap.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    args = ap.parse_args(argv)
    params = load_section("curate", CurateParams, args.params)
    seed = load_seed(args.params)
    with stage_run("curate", params) as run:
        candidates = gather_candidates(params, seed)
        result = curate(candidates, params, seed)
        out = args.out_dir
        write_parquet(out / "quarantine.parquet", result.frames["quarantine"])
        check_bad_share(
            result.frames["quarantine"],
            {o: c["in"] for o, c in result.stats["by_origin"].items()},
            params.validation.max_bad_share,
        )
        for name in OUTPUTS:
            write_parquet(out / f"{name}.parquet", result.frames[name])
        write_json(out / "stats.json", result.stats)
        write_headline("curate", result.stats, args.report_dir or out)
        _log(run, params, result, out)
        s = result.stats
        print(
            f"curate: {s['rows_in']} rows in -> kept {s['kept']} {s['by_split']}, "
            f"dropped {s['dropped']} {s['dropped_by_reason']}, quarantined {s['quarantined']} "
            f"{s['quarantined_by_reason']}"
        )
        pf = result.perf
        print(f"curate: {pf['rows_per_s']:.0f} rows/s, near-dup dedup "
              f"{pf['near_dedup_docs_per_s']:.0f} docs/s ({params.dedup.engine}), "
              f"peak RSS {pf['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()

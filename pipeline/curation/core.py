"""The curate core: candidates in, curated frames + stats out (no file I/O, no tracking).

Steps (each counted in ``stats``):

1. validate every candidate -> tasks | quarantine (file/origin, row, field, reason, raw);
2. normalise prompts (``normalize``) and exact-dedup inside each role (train pool, bench);
3. MinHash + LSH near-dup dedup inside each role;
4. decontaminate the training pool against the benchmark set (exact, n-gram, near-dup);
5. split the training pool per domain into sft / rl / val; the benchmark rows get ``bench``.

``balance(stats)`` checks rows in = kept + dropped + quarantined, overall and per origin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from pipeline.curation import stream
from pipeline.curation.config import CurateParams
from pipeline.curation.decontam import decontaminate
from pipeline.curation.dedup import DROPPED, exact_dedup, near_dedup, near_dedup_stream, sketch
from pipeline.curation.normalize import normalize_series, numbers_key_expr
from pipeline.curation.split import split_pool
from pipeline.curation.validate import Rejection, check_task
from pipeline.schema import QUARANTINE, TASK, make_task

SPLITS = ("sft", "rl", "val", "bench")
_QCOLS = {**QUARANTINE, "domain": pl.String}


class CurateError(ValueError):
    """Curation cannot go on (too many bad rows, unbalanced counts)."""


@dataclass
class CurateResult:
    frames: dict[str, pl.DataFrame]  # sft, rl, val, bench (TASK), quarantine (QUARANTINE), dropped
    stats: dict[str, Any]
    pairs: pl.DataFrame  # sample of dropped rows next to what they matched (for MLflow)
    # throughput and memory (MLflow metrics, not stats.json: they differ from run to run)
    perf: dict[str, float] = field(default_factory=dict)


def validate_candidates(
    candidates: Iterable[dict[str, Any]], params: CurateParams
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Tasks frame (TASK + origin, role), quarantine frame and rows-in per origin."""
    v = params.validation
    tasks, bad, rows_in = [], [], {}
    for c in tqdm(candidates, desc="curate: validate", unit="row", mininterval=1.0):
        rows_in[c["origin"]] = rows_in.get(c["origin"], 0) + 1
        rej = c.get("rejection") or check_task(
            c["domain"], c["prompt"], c["reference"], v.max_prompt_chars, v.drop_choice_items
        )
        if isinstance(rej, Rejection):
            dom = c.get("domain")
            bad.append(
                {
                    "source_file": c["origin"],
                    "row": c["row"],
                    "field": rej.field,
                    "reason": rej.reason,
                    "raw": c["raw"],
                    "domain": dom if isinstance(dom, str) else "unknown",
                }
            )
            continue
        task = make_task(c["domain"], c["prompt"], c["reference"], c["source"], c.get("meta"))
        tasks.append({**task, "origin": c["origin"], "role": c["role"]})
    schema = {**TASK, "origin": pl.String, "role": pl.String}
    tasks_df = pl.DataFrame(tasks, schema=schema) if tasks else pl.DataFrame(schema=schema)
    q = pl.DataFrame(bad, schema=_QCOLS) if bad else pl.DataFrame(schema=_QCOLS)
    return tasks_df, q, rows_in


def check_bad_share(quarantine: pl.DataFrame, rows_in: dict[str, int], max_share: float) -> None:
    """Raise naming the source, its share and its first bad rows when it passes ``max_share``."""
    for origin, n in sorted(rows_in.items()):
        q = quarantine.filter(pl.col("source_file") == origin)
        if n and q.height / n > max_share:
            first = "; ".join(
                f"row {r['row']} field {r['field'] or '-'}: {r['reason']}"
                for r in q.head(3).iter_rows(named=True)
            )
            raise CurateError(
                f"{origin}: {q.height} of {n} rows ({q.height / n:.0%}) rejected, above "
                f"curate.validation.max_bad_share={max_share:.0%} (first: {first}); "
                "see quarantine.parquet"
            )


def _dedup_and_decontam(
    tasks: pl.DataFrame, params: CurateParams
) -> tuple[pl.DataFrame, pl.DataFrame, list[pl.DataFrame], dict[str, float]]:
    steps = tqdm(total=3, desc="curate: dedup", unit="step")
    tasks = tasks.with_columns(norm=normalize_series(tasks["prompt"]))
    tasks = tasks.with_columns(numkey=numbers_key_expr("norm"))
    # Roles are deduplicated apart (a training copy of a benchmark item is decontamination's
    # business), so exact duplicates follow near-dup representatives within their own role:
    # ids are content hashes, and one id can be a representative in both roles.
    parts, dropped = {}, []
    perf = {"near_dedup_docs": 0, "near_dedup_seconds": 0.0}
    for role in ("train", "bench"):
        kept, exact_dropped = exact_dedup(tasks.filter(pl.col("role") == role))
        sub = kept.sort("id")
        t0 = time.perf_counter()
        if params.dedup.engine == "stream":
            sub_kept, near_dropped, ksig, kcnt = near_dedup_stream(sub, params.dedup)
            parts[role] = (sub_kept, ksig, kcnt)
        else:
            sig, counts = sketch(sub["norm"], params.dedup)
            sub_kept, near_dropped = near_dedup(sub, sig, counts, params.dedup)
            keep_idx = np.flatnonzero(np.isin(sub["id"].to_numpy(), sub_kept["id"].to_numpy()))
            parts[role] = (sub_kept, sig[keep_idx], counts[keep_idx])
        perf["near_dedup_docs"] += sub.height
        perf["near_dedup_seconds"] += time.perf_counter() - t0
        dropped += [_follow(exact_dropped, near_dropped), near_dropped]
        steps.update()
    (train, tsig, tcnt), (bench, bsig, bcnt) = parts["train"], parts["bench"]
    keep, contam = decontaminate(
        train, bench, tsig, bsig, tcnt, bcnt, params.decontam, params.dedup
    )
    dropped.append(contam)
    steps.update()
    steps.close()
    return train.filter(pl.Series(keep)), bench, dropped, perf


def _follow(exact: pl.DataFrame, near: pl.DataFrame) -> pl.DataFrame:
    """Point exact duplicates whose representative was then near-deduplicated at the
    near-dup cluster's representative (the row that is kept)."""
    hop = near.select(matched_id="id", _final="matched_id")
    return (
        exact.join(hop, on="matched_id", how="left")
        .with_columns(matched_id=pl.coalesce("_final", "matched_id"))
        .select(list(DROPPED))
    )


def _pairs_sample(dropped: pl.DataFrame, all_tasks: pl.DataFrame, n: int) -> pl.DataFrame:
    """Dropped prompts next to the prompt they matched (first n by reason, id)."""
    ref = all_tasks.select(matched_id="id", matched_prompt="prompt").unique("matched_id")
    return (
        dropped.sort("reason", "id")
        .group_by("reason", maintain_order=True)
        .head(n)
        .join(ref, on="matched_id", how="left")
        .select("reason", "similarity", "id", "prompt", "matched_id", "matched_prompt")
    )


def curate(candidates: list[dict[str, Any]], params: CurateParams, seed: int) -> CurateResult:
    """Run steps 1-5 on candidate rows (see module docstring)."""
    t0 = time.perf_counter()
    tasks, quarantine, rows_in = validate_candidates(candidates, params)
    train, bench, dropped_parts, perf = _dedup_and_decontam(tasks, params)
    present = set(train["domain"].unique().to_list())
    for domain in params.split_by_domain:
        if domain not in present:
            raise ValueError(f"curate.split_by_domain.{domain}: the training pool has no rows of "
                             f"domain {domain!r} (domains: {sorted(present)})")
    pool = split_pool(train.select(list(TASK)), params.split, seed, params.split_by_domain)
    frames = {
        s: pool.filter(pl.col("split") == s).sort("domain", "id") for s in ("sft", "rl", "val")
    }
    frames["bench"] = (
        bench.with_columns(split=pl.lit("bench")).select(list(TASK)).sort("domain", "id")
    )
    dropped = pl.concat([d.select(list(DROPPED)) for d in dropped_parts]).sort("reason", "id")
    stats = make_stats(rows_in, frames, dropped, quarantine, train_origin(train, bench))
    balance(stats)
    frames["quarantine"] = quarantine.select(list(QUARANTINE))
    frames["dropped"] = dropped
    secs = time.perf_counter() - t0
    perf = {
        "rows_per_s": stats["rows_in"] / max(secs, 1e-9),
        "near_dedup_docs_per_s": perf["near_dedup_docs"] / max(perf["near_dedup_seconds"], 1e-9),
        "peak_rss_mb": stream.peak_rss_mb(),
    }
    pairs = _pairs_sample(dropped, tasks, params.dropped_sample_rows)
    return CurateResult(frames, stats, pairs, perf)


def train_origin(train: pl.DataFrame, bench: pl.DataFrame) -> pl.DataFrame:
    """id -> origin of every kept row (to count kept rows per origin)."""
    return pl.concat([train.select("id", "origin"), bench.select("id", "origin")]).unique("id")


def _count(df: pl.DataFrame, *by: str) -> dict[str, Any]:
    """Nested {a: {b: n}} counts of ``df`` grouped by columns ``by``."""
    out: dict[str, Any] = {}
    for row in df.group_by(list(by)).agg(n=pl.len()).sort(list(by)).iter_rows():
        node = out
        for key in row[:-2]:
            node = node.setdefault(str(key), {})
        node[str(row[-2])] = int(row[-1])
    return out


def make_stats(
    rows_in: dict[str, int],
    frames: dict[str, pl.DataFrame],
    dropped: pl.DataFrame,
    quarantine: pl.DataFrame,
    origins: pl.DataFrame,
) -> dict[str, Any]:
    """Counts by origin, domain, split and reason (the stage's stats.json)."""
    kept = pl.concat([frames[s].select("id", "domain", "split") for s in SPLITS])
    kept = kept.join(origins, on="id", how="left")
    per_origin = {
        o: {
            "in": n,
            "kept": kept.filter(pl.col("origin") == o).height,
            "dropped": dropped.filter(pl.col("origin") == o).height,
            "quarantined": quarantine.filter(pl.col("source_file") == o).height,
        }
        for o, n in sorted(rows_in.items())
    }
    return {
        "rows_in": int(sum(rows_in.values())),
        "kept": kept.height,
        "dropped": dropped.height,
        "quarantined": quarantine.height,
        "by_split": {s: frames[s].height for s in SPLITS},
        "by_origin": per_origin,
        "by_domain_split": _count(kept, "domain", "split"),
        "dropped_by_reason": _count(dropped, "reason"),
        "quarantined_by_reason": _count(quarantine, "reason"),
        "dropped_by_domain_reason": _count(dropped, "domain", "reason"),
        "quarantined_by_origin_reason": _count(quarantine, "source_file", "reason"),
    }


def balance(stats: dict[str, Any]) -> None:
    """Raise ``CurateError`` unless rows in = kept + dropped + quarantined (total, per origin,
    and the by-reason sums); on success set ``stats["balanced"] = True``."""
    problems = []
    total = stats["kept"] + stats["dropped"] + stats["quarantined"]
    if stats["rows_in"] != total:
        problems.append(f"total: in {stats['rows_in']} != kept+dropped+quarantined {total}")
    if sum(stats["dropped_by_reason"].values()) != stats["dropped"]:
        problems.append("dropped by reason does not sum to dropped")
    if sum(stats["quarantined_by_reason"].values()) != stats["quarantined"]:
        problems.append("quarantined by reason does not sum to quarantined")
    if sum(stats["by_split"].values()) != stats["kept"]:
        problems.append("kept by split does not sum to kept")
    for o, c in stats["by_origin"].items():
        if c["in"] != c["kept"] + c["dropped"] + c["quarantined"]:
            problems.append(f"{o}: in {c['in']} != {c['kept']}+{c['dropped']}+{c['quarantined']}")
    if problems:
        raise CurateError("curate counts do not balance: " + "; ".join(problems))
    stats["balanced"] = True


def stats_json(stats: dict[str, Any]) -> str:
    return json.dumps(stats, indent=2, sort_keys=True)

"""Deterministic per-domain split of the curated training pool into sft / rl / val."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import polars as pl

from pipeline.curation.config import SplitParams


def _rank_key(task_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{task_id}".encode()).hexdigest()


def split_pool(pool: pl.DataFrame, shares: SplitParams, seed: int,
               by_domain: Mapping[str, SplitParams] | None = None) -> pl.DataFrame:
    """Set ``split`` per row: inside each domain rows are shuffled by a seeded hash of their id
    (stable across runs and polars versions); the first round(val*n) go to val, the next
    round(rl*n) to rl, the rest to sft. ``by_domain`` replaces ``shares`` for the domains it
    names."""
    by_domain = dict(by_domain or {})

    def share(name: str) -> pl.Expr:
        expr = pl.lit(getattr(shares, name))
        for domain, sp in by_domain.items():
            expr = pl.when(pl.col("domain") == domain).then(pl.lit(getattr(sp, name))).otherwise(expr)
        return expr

    keyed = pool.with_columns(
        _key=pl.col("id").map_elements(lambda i: _rank_key(i, seed), return_dtype=pl.String)
    ).sort("domain", "_key")
    rank = pl.int_range(pl.len()).over("domain")
    n = pl.len().over("domain")
    n_val = (n * share("val")).round()
    n_rl = (n * share("rl")).round()
    split = (
        pl.when(rank < n_val)
        .then(pl.lit("val"))
        .when(rank < n_val + n_rl)
        .then(pl.lit("rl"))
        .otherwise(pl.lit("sft"))
    )
    return keyed.with_columns(split=split).drop("_key")

"""Decontamination: drop training items that overlap a benchmark item.

Checked in order, first hit wins (the ``reason`` of the dropped row):

1. ``bench_exact``: the same normalised prompt as a benchmark item;
2. ``bench_ngram``: shares a word n-gram (``ngram`` words, default 13) with a benchmark item
   (with ``dedup.same_numbers``, only one with the same numbers and operators: a problem whose
   numbers changed is a different problem).
   N-grams found in more than ``ngram_max_docs`` documents (training + benchmark, after dedup)
   are template text that every generated prompt carries (e.g. "Please reason step by step,
   and put your final answer within \\boxed{}"), not contamination, and are ignored;
3. ``bench_near_duplicate``: a verified MinHash/LSH near-duplicate of a benchmark item (same
   threshold and numbers rule as dedup).

``matched_id`` is the benchmark item matched (the smallest id, or the most similar one).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.curation import minhash as mh
from pipeline.curation.config import DecontamParams, DedupParams
from pipeline.curation.dedup import DROPPED, drop_rows, numbers_keys


def ngram_frame(norm: pl.Series, n: int) -> pl.DataFrame:
    """(doc, gram) pairs, unique: the n-gram hashes of each normalised text."""
    words, lengths = mh.word_hashes(norm)
    grams, counts = mh.shingle_hashes(words, lengths, n, whole_short=False)
    doc = np.repeat(np.arange(len(lengths)), counts)
    return pl.DataFrame({"doc": doc, "gram": grams}).unique()


def ngram_hits(
    train_norm: pl.Series, bench_norm: pl.Series, p: DecontamParams, keys: np.ndarray | None = None
) -> pl.DataFrame:
    """Per contaminated training doc: ``doc`` (position) and ``bench`` (smallest bench position).

    ``keys`` (bench rows first, then train rows), when given, must agree for a hit to count.
    """
    tr = ngram_frame(train_norm, p.ngram)
    be = ngram_frame(bench_norm, p.ngram)
    df = pl.concat([tr, be.with_columns(pl.col("doc") + len(train_norm))])
    freq = df.group_by("gram").agg(docs=pl.len())
    common = freq.filter(pl.col("docs") > p.ngram_max_docs).select("gram")
    be = be.join(common, on="gram", how="anti").rename({"doc": "bench"})
    pairs = tr.join(be, on="gram").select("doc", "bench").unique()
    if keys is not None and pairs.height:
        nb = len(bench_norm)
        same = keys[pairs["doc"].to_numpy() + nb] == keys[pairs["bench"].to_numpy()]
        pairs = pairs.filter(pl.Series(same))
    return pairs.group_by("doc").agg(pl.col("bench").min()).sort("doc")


def near_hits(
    train_sig: np.ndarray,
    bench_sig: np.ndarray,
    train_counts: np.ndarray,
    bench_counts: np.ndarray,
    keys: np.ndarray | None,
    p: DedupParams,
) -> pl.DataFrame:
    """Per training doc near a benchmark item: ``doc``, ``bench`` (most similar), ``sim``."""
    nb = len(bench_sig)
    sig = np.concatenate([bench_sig, train_sig])
    counts = np.concatenate([bench_counts, train_counts])
    pairs = mh.candidate_pairs(sig, p.bands, p.rows, valid=counts > 0)
    pairs, sims = mh.verify_pairs(sig, pairs, p.threshold, keys)
    cross = (pairs[:, 0] < nb) & (pairs[:, 1] >= nb)  # i < j: bench first, then train
    hits = pl.DataFrame({"doc": pairs[cross, 1] - nb, "bench": pairs[cross, 0], "sim": sims[cross]})
    return (
        hits.sort("sim", "bench", descending=[True, False])
        .group_by("doc", maintain_order=True)
        .first()
    )


def decontaminate(
    train: pl.DataFrame,
    bench: pl.DataFrame,
    train_sig: np.ndarray,
    bench_sig: np.ndarray,
    train_counts: np.ndarray,
    bench_counts: np.ndarray,
    p: DecontamParams,
    dp: DedupParams,
) -> tuple[np.ndarray, pl.DataFrame]:
    """Boolean keep-mask over ``train`` and the dropped rows (with reason and benchmark id)."""
    keep = np.ones(train.height, dtype=bool)
    if bench.height == 0 or train.height == 0:
        return keep, pl.DataFrame(schema=DROPPED)
    bench_ids = bench["id"]
    dropped = []
    first = bench.with_row_index("bench").group_by("norm").agg(pl.col("bench").min())
    exact = train.with_row_index("doc").join(first, on="norm").select("doc", "bench").sort("doc")
    keys = numbers_keys(pl.concat([bench.select("numkey"), train.select("numkey")]))
    grams = ngram_hits(train["norm"], bench["norm"], p, keys if dp.same_numbers else None)
    hits = [("bench_exact", exact, None), ("bench_ngram", grams, None)]
    if p.near_dup:
        keys = keys if dp.same_numbers else None
        near = near_hits(train_sig, bench_sig, train_counts, bench_counts, keys, dp)
        hits.append(("bench_near_duplicate", near, "sim"))
    for reason, frame, sim_col in hits:
        frame = frame.filter(pl.Series(keep[frame["doc"].to_numpy()])) if frame.height else frame
        if frame.height == 0:
            continue
        doc = frame["doc"].to_numpy()
        sims = frame[sim_col].to_numpy() if sim_col else np.full(len(doc), np.nan)
        if reason == "bench_exact":
            sims = np.ones(len(doc))
        dropped.append(drop_rows(train[doc], reason, bench_ids.gather(frame["bench"]), sims))
        keep[doc] = False
    out = pl.concat(dropped) if dropped else pl.DataFrame(schema=DROPPED)
    return keep, out

"""Exact and near-duplicate dedup of task frames (polars + vectorised MinHash/LSH).

Input frames carry the task columns plus ``origin``, ``role``, ``norm`` (normalised prompt),
``numkey`` (numbers and operators of ``norm``) and ``_i`` (row position, ascending with id inside
a role). Dedup runs inside each role (training pool, benchmark set) separately; the
representative of a group/cluster is its smallest id, so results do not depend on input order.
Dropped rows carry ``reason`` (``exact_duplicate`` | ``near_duplicate``), ``matched_id`` (the kept
representative) and ``similarity`` (estimated Jaccard to it; 1.0 for exact duplicates).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from pipeline.curation import minhash as mh
from pipeline.curation import stream
from pipeline.curation.config import DedupParams
from pipeline.schema import TASK

DROPPED = {
    **TASK,
    "origin": pl.String,  # the source file or generator the row came from
    "reason": pl.String,  # exact_duplicate | near_duplicate | bench_exact | bench_ngram | bench_near_duplicate
    "matched_id": pl.String,  # the kept representative / the benchmark item it matched
    "similarity": pl.Float64,  # estimated Jaccard (1.0 exact)
}


def drop_rows(
    df: pl.DataFrame, reason: str, matched: list[str] | pl.Series, sim: np.ndarray | list
) -> pl.DataFrame:
    """Rows of ``df`` as dropped records."""
    return df.with_columns(
        reason=pl.lit(reason),
        matched_id=pl.Series(list(matched), dtype=pl.String),
        similarity=pl.Series(np.asarray(sim, dtype=np.float64)),
    ).select(list(DROPPED))


def exact_dedup(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the smallest-id row of each (role, normalised prompt) group."""
    df = df.sort("role", "id").with_row_index("_pos")
    rep = pl.col("_pos").min().over("role", "norm")
    df = df.with_columns(
        _rep=rep, _rep_id=pl.col("id").sort_by("_pos").first().over("role", "norm")
    )
    kept = df.filter(pl.col("_pos") == pl.col("_rep")).drop("_pos", "_rep", "_rep_id")
    gone = df.filter(pl.col("_pos") != pl.col("_rep"))
    dropped = drop_rows(gone, "exact_duplicate", gone["_rep_id"], np.ones(gone.height))
    return kept, dropped


def sketch(norm: pl.Series, p: DedupParams) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures (D, num_perm) and shingle counts of normalised texts."""
    words, lengths = mh.word_hashes(norm)
    shingles, counts = mh.shingle_hashes(words, lengths, p.shingle_size, whole_short=True)
    return mh.signatures(shingles, counts, p.num_perm, p.seed), counts


def numbers_keys(df: pl.DataFrame) -> np.ndarray:
    """One uint64 per row identifying its numbers/operators sequence."""
    return df["numkey"].hash(seed=7).to_numpy()


def near_clusters(
    sig: np.ndarray, counts: np.ndarray, keys: np.ndarray | None, p: DedupParams
) -> tuple[np.ndarray, np.ndarray]:
    """Representative index of each row and the verified near-duplicate pairs (i < j)."""
    pairs = mh.candidate_pairs(sig, p.bands, p.rows, valid=counts > 0)
    pairs, _ = mh.verify_pairs(sig, pairs, p.threshold, keys)
    return mh.components(len(sig), pairs), pairs


def near_dedup(
    df: pl.DataFrame, sig: np.ndarray, counts: np.ndarray, p: DedupParams
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Near-dup dedup of ``df`` (one role, sorted by id; ``sig``/``counts`` aligned with it)."""
    keys = numbers_keys(df) if p.same_numbers else None
    rep, _ = near_clusters(sig, counts, keys, p)
    gone = np.flatnonzero(rep != np.arange(len(rep)))
    sims = (sig[gone] == sig[rep[gone]]).mean(axis=1) if len(gone) else np.zeros(0)
    ids = df["id"]
    dropped = drop_rows(df[gone], "near_duplicate", ids.gather(rep[gone]), sims)
    keep = np.flatnonzero(rep == np.arange(len(rep)))
    return df[keep], dropped


def near_dedup_stream(
    df: pl.DataFrame, p: DedupParams
) -> tuple[pl.DataFrame, pl.DataFrame, np.ndarray, np.ndarray]:
    """``near_dedup`` through ``pipeline.curation.stream`` (``engine: stream``): signatures and
    buckets in a temp directory, ``p.chunk_docs`` documents at a time. The same kept and
    dropped rows; also returns the kept rows' signatures and shingle counts (decontamination
    compares them with the benchmark's)."""
    with tempfile.TemporaryDirectory(prefix="curate-dedup-") as tmp:
        work = Path(tmp)
        chunks = stream.chunks_of_frame(df["norm"], df["numkey"], p.chunk_docs)
        rep, sims, _ = stream.near_clusters_stream(chunks, p, work / "w", p.partitions, p.workers)
        keep = np.flatnonzero(rep == np.arange(len(rep)))
        if len(keep):
            store = stream.SignatureStore(work / "w")
            ksig, kcnt = store.signatures(keep), store.counts(keep)
        else:
            ksig, kcnt = np.zeros((0, p.num_perm), np.uint32), np.zeros(0, np.int64)
    gone = np.flatnonzero(rep != np.arange(len(rep)))
    dropped = drop_rows(df[gone], "near_duplicate", df["id"].gather(rep[gone]), sims[gone])
    return df[keep], dropped, ksig, kcnt

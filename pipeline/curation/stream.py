"""Near-duplicate dedup with bounded memory: signatures and LSH buckets on disk.

The same clusters as the in-memory path (``dedup.near_clusters``) on the same documents in the
same order, computed in three steps whose memory does not grow with the corpus:

1. **signatures** (``sketch_chunk``), one chunk of documents at a time: normalised text ->
   MinHash signatures (``minhash``), written to ``sig/<start>.npy`` (uint32, docs x num_perm;
   ``<start>`` is the global index of the chunk's first document), with the numbers key of
   each document in ``key/<start>.npy`` and its shingle count in ``count/<start>.npy``; the
   LSH band keys of the documents that have shingles go to ``band/<part>/<start>.parquet``
   (columns ``band``, ``key``, ``doc``). A band key goes to partition
   ``(key >> 40) % partitions``, so every LSH bucket lies in one partition.
2. **buckets** (``bucket_partition``), one partition at a time: the partition's band keys are
   grouped by (band, key) with polars' streaming engine; every document of a bucket is paired
   with the bucket's smallest document (as ``minhash.candidate_pairs`` does), the pairs are
   verified against the signatures read back from disk in small batches (estimated Jaccard >=
   ``threshold``, numbers keys equal with ``same_numbers``) and written to
   ``pair/<part>.parquet`` (``i``, ``j``, ``sim``; i < j).
3. **clusters** (``resolve``): connected components of all verified pairs; the representative
   of a cluster is its smallest document index. Memory: one int64 per document (the output)
   and the verified pairs.

Chunks and partitions are independent units of work: ``run_local`` runs them in this process
or in a local process pool; ``pipeline.curation.distributed`` runs the same functions as
datatrove executor tasks (several machines sharing the work directory).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.atomic import atomic_path, write_json, write_parquet
from pipeline.curation import minhash as mh
from pipeline.curation.config import DedupParams
from pipeline.curation.normalize import normalize_series, numbers_key_expr

GATHER_ROWS = 1 << 13  # signature rows read back per batch (bounds mapped pages: 8k x 4 KiB)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: ``VmHWM`` of /proc/self/status
    (``getrusage``'s ``ru_maxrss`` where there is none; on Linux it keeps the peak of the
    process that started this one across ``exec``, so it is not used first)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def numbers_key_hashes(numkey: pl.Series) -> np.ndarray:
    """uint64 per document identifying its numbers/operators sequence (as ``dedup.numbers_keys``)."""
    return numkey.hash(seed=7).to_numpy()


def part_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The bucket partition of each band key."""
    return ((keys >> np.uint64(40)) % np.uint64(partitions)).astype(np.int64)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def sketch_chunk(
    start: int,
    norm: pl.Series,
    numkey: pl.Series | None,
    p: DedupParams,
    work: Path,
    partitions: int,
) -> int:
    """Step 1 for one chunk: documents ``start .. start+len(norm)-1`` (normalised texts, and
    their numbers keys when ``same_numbers``). Returns the number of documents."""
    words, lengths = mh.word_hashes(norm)
    shingles, counts = mh.shingle_hashes(words, lengths, p.shingle_size, whole_short=True)
    del words
    sig = mh.signatures(shingles, counts, p.num_perm, p.seed)
    del shingles
    name = f"{start:012d}"
    _save_npy(work / "sig" / f"{name}.npy", sig)
    _save_npy(work / "count" / f"{name}.npy", counts.astype(np.int32))
    if numkey is not None:
        _save_npy(work / "key" / f"{name}.npy", numbers_key_hashes(numkey))
    valid = np.flatnonzero(counts > 0)
    keys = mh.band_keys(sig[valid], p.bands, p.rows)
    bands = np.broadcast_to(np.arange(p.bands, dtype=np.uint16), keys.shape)
    docs = np.broadcast_to((valid + start).astype(np.int64)[:, None], keys.shape)
    frame = pl.DataFrame(
        {"band": bands.ravel(), "key": keys.ravel(), "doc": docs.ravel(),
         "part": part_of(keys.ravel(), partitions)}
    )
    for (part,), sub in frame.partition_by("part", as_dict=True).items():
        # scratch files read once: lz4 costs less CPU than the default zstd
        with atomic_path(work / "band" / f"{part:04d}" / f"{name}.parquet") as tmp:
            sub.drop("part").write_parquet(tmp, compression="lz4")
    return len(norm)


class SignatureStore:
    """Read signatures (and numbers keys) of given global document indices back from disk.

    Rows are read through a memory map opened per batch of at most ``GATHER_ROWS`` rows and
    closed after it, so resident memory stays bounded whatever the corpus size.
    """

    def __init__(self, work: Path):
        self.files = sorted((work / "sig").glob("*.npy"))
        if not self.files:
            raise FileNotFoundError(f"{work / 'sig'}: no signature chunks (run the signature step)")
        self.starts = np.array([int(f.stem) for f in self.files], dtype=np.int64)
        self.work = work

    def _gather(self, sub: str, idx: np.ndarray, width: int | None) -> np.ndarray:
        chunk = np.searchsorted(self.starts, idx, side="right") - 1
        out = None
        for c in np.unique(chunk):
            sel = np.flatnonzero(chunk == c)
            arr = np.load(self.work / sub / self.files[c].name, mmap_mode="r")
            rows = np.asarray(arr[idx[sel] - self.starts[c]])
            if out is None:
                out = np.empty((len(idx),) + rows.shape[1:], dtype=rows.dtype)
            out[sel] = rows
            del arr
        if out is None:
            out = np.empty((0, width) if width else (0,), dtype=np.uint32)
        return out

    def signatures(self, idx: np.ndarray) -> np.ndarray:
        return self._gather("sig", np.asarray(idx, dtype=np.int64), 1)

    def keys(self, idx: np.ndarray) -> np.ndarray:
        return self._gather("key", np.asarray(idx, dtype=np.int64), None)

    def counts(self, idx: np.ndarray) -> np.ndarray:
        """Shingles per document (0: the document takes no part in LSH)."""
        return self._gather("count", np.asarray(idx, dtype=np.int64), None).astype(np.int64)

    def similarity(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Estimated Jaccard (share of equal signature slots) of pairs (i[k], j[k])."""
        out = np.empty(len(i), dtype=np.float64)
        for s in range(0, len(i), GATHER_ROWS // 2):
            a = self.signatures(i[s : s + GATHER_ROWS // 2])
            b = self.signatures(j[s : s + GATHER_ROWS // 2])
            out[s : s + len(a)] = (a == b).mean(axis=1)
        return out


def bucket_pairs(files: list[Path]) -> pl.DataFrame:
    """Candidate pairs (i, j), i < j, unique, of band-key files: each document of a (band,
    key) bucket paired with the bucket's smallest document."""
    if not files:
        return pl.DataFrame(schema={"i": pl.Int64, "j": pl.Int64})
    return (
        pl.scan_parquet(files)
        # a window, not group_by + list + explode: the same pairs in less than half the time
        .with_columns(i=pl.col("doc").min().over("band", "key"))
        .filter(pl.col("doc") != pl.col("i"))
        .select("i", j="doc")
        .unique()
        .sort("i", "j")
        .collect(engine="streaming")
    )


def bucket_partition(part: int, p: DedupParams, work: Path) -> int:
    """Step 2 for one partition: candidate pairs verified and written to ``pair/<part>``.
    Returns the number of verified pairs."""
    files = sorted((work / "band" / f"{part:04d}").glob("*.parquet"))
    cand = bucket_pairs(files)
    store = SignatureStore(work)
    i, j = cand["i"].to_numpy(), cand["j"].to_numpy()
    sims = store.similarity(i, j) if len(i) else np.zeros(0)
    ok = sims >= p.threshold
    if p.same_numbers and len(i):
        for s in range(0, len(i), GATHER_ROWS):
            sl = slice(s, s + GATHER_ROWS)
            ok[sl] &= store.keys(i[sl]) == store.keys(j[sl])
    out = pl.DataFrame({"i": i[ok], "j": j[ok], "sim": sims[ok]})
    write_parquet(work / "pair" / f"{part:04d}.parquet", out)
    return out.height


def resolve(work: Path, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: the representative of every document (smallest index of its cluster) and the
    estimated Jaccard of each document to its representative (1.0 for representatives)."""
    files = sorted((work / "pair").glob("*.parquet"))
    pairs = pl.read_parquet(files).select("i", "j").unique() if files else None
    arr = pairs.to_numpy() if pairs is not None and pairs.height else np.zeros((0, 2), np.int64)
    rep = mh.components(n_docs, arr)
    gone = np.flatnonzero(rep != np.arange(n_docs))
    sims = np.ones(n_docs)
    if len(gone):
        sims[gone] = SignatureStore(work).similarity(gone, rep[gone])
    return rep, sims


@dataclass
class StreamReport:
    """What a streaming dedup did: counts, time and this process's peak memory."""

    docs: int
    chunks: int
    partitions: int
    verified_pairs: int
    dropped: int
    seconds: float
    peak_rss_mb: float
    step_seconds: dict[str, float]  # signatures (with reading the input), buckets, clusters

    @property
    def docs_per_s(self) -> float:
        return self.docs / max(self.seconds, 1e-9)

    def as_dict(self) -> dict[str, float]:
        return {**self.__dict__, "docs_per_s": self.docs_per_s}


def _map(fn, args: list[tuple], workers: int, desc: str) -> list:
    """Run ``fn(*a)`` for every ``a``, in this process or in a local process pool."""
    bar = tqdm(total=len(args), desc=desc, unit="task", mininterval=1.0)
    out = []
    if workers <= 1:
        for a in args:
            out.append(fn(*a))
            bar.update()
    else:
        # spawn: forking a process that runs polars' thread pool can deadlock the child
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for r in pool.map(fn, *zip(*args, strict=True)):
                out.append(r)
                bar.update()
    bar.close()
    return out


def chunks_of_frame(
    norm: pl.Series, numkey: pl.Series | None, chunk_docs: int
) -> Iterator[tuple[int, pl.Series, pl.Series | None]]:
    """(start, norm, numkey) slices of in-memory columns."""
    for s in range(0, len(norm), chunk_docs):
        yield s, norm.slice(s, chunk_docs), None if numkey is None else numkey.slice(s, chunk_docs)


def near_clusters_stream(
    chunks: Iterable[tuple[int, pl.Series, pl.Series | None]],
    p: DedupParams,
    work: Path,
    partitions: int,
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray, StreamReport]:
    """Representative and similarity-to-representative of every document, from chunks of
    ``(start, normalised texts, numbers keys or None)`` in document order (see module doc).
    ``work`` must be an empty (or missing) directory."""
    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise FileExistsError(f"{work}: the work directory of a streaming dedup must be empty")
    n_docs, n_chunks = 0, 0
    bar = tqdm(desc="dedup: signatures", unit="doc", unit_scale=True, mininterval=1.0)
    for start, norm, numkey in chunks:
        if start != n_docs:
            raise ValueError(f"chunk starts at document {start}, expected {n_docs}")
        n_docs += sketch_chunk(start, norm, numkey if p.same_numbers else None, p, work,
                               partitions)
        n_chunks += 1
        bar.update(len(norm))
    bar.close()
    t1 = time.perf_counter()
    verified = sum(_map(bucket_partition, [(q, p, work) for q in range(partitions)], workers,
                        "dedup: buckets"))
    t2 = time.perf_counter()
    rep, sims = resolve(work, n_docs) if n_docs else (np.zeros(0, np.int64), np.zeros(0))
    t3 = time.perf_counter()
    report = StreamReport(n_docs, n_chunks, partitions, int(verified),
                          int((rep != np.arange(n_docs)).sum()), t3 - t0, peak_rss_mb(),
                          {"signatures": t1 - t0, "buckets": t2 - t1, "clusters": t3 - t2})
    return rep, sims, report


def parquet_chunks(
    files: list[Path], text_col: str, chunk_docs: int
) -> Iterator[tuple[int, pl.Series, pl.Series]]:
    """(start, normalised text, numbers key) chunks of the ``text_col`` column of Parquet
    files, read ``chunk_docs`` rows at a time (documents numbered in file, then row order)."""
    start = 0
    for f in files:
        pf = pq.ParquetFile(f)
        if text_col not in pf.schema_arrow.names:
            raise KeyError(f"{f}: no column {text_col!r} (columns: {pf.schema_arrow.names})")
        for batch in pf.iter_batches(batch_size=chunk_docs, columns=[text_col]):
            norm, numkey = normalised_batch(batch, f, text_col)
            yield start, norm, numkey
            start += len(norm)


def normalised_batch(batch: Any, file: Path | str, text_col: str) -> tuple[pl.Series, pl.Series]:
    """(normalised texts, numbers keys) of a one-column Arrow record batch of ``file``."""
    texts = pl.from_arrow(batch.column(0))
    if texts.dtype != pl.String:
        raise TypeError(f"{file}: column {text_col!r} is {texts.dtype}, expected strings")
    norm = normalize_series(texts)
    return norm, pl.DataFrame({"n": norm}).select(numbers_key_expr("n"))["n"]


def write_dropped(out: Path, rep: np.ndarray, sims: np.ndarray, report: dict[str, Any]) -> None:
    """``out``: one row per dropped document (``doc``, its representative ``rep``,
    ``similarity``); ``<out>.report.json``: ``report``."""
    gone = np.flatnonzero(rep != np.arange(len(rep)))
    write_parquet(out, pl.DataFrame({"doc": gone, "rep": rep[gone], "similarity": sims[gone]}))
    write_json(out.with_suffix(".report.json"), report)


def dedup_parquet(
    files: list[Path],
    text_col: str,
    out: Path,
    work: Path,
    p: DedupParams,
    chunk_docs: int,
    partitions: int,
    workers: int = 1,
) -> StreamReport:
    """Near-dup dedup of a Parquet corpus with bounded memory; writes ``out`` (Parquet, one
    row per dropped document: ``doc`` (index in file-then-row order), ``rep`` (the kept
    representative), ``similarity``) and ``<out>.report.json``."""
    rep, sims, report = near_clusters_stream(
        parquet_chunks(files, text_col, chunk_docs), p, work, partitions, workers
    )
    write_dropped(out, rep, sims, report.as_dict())
    return report

"""Near-dup dedup of a Parquet corpus on datatrove's executors (several processes or machines).

The streaming dedup (``pipeline.curation.stream``) is three steps over independent units;
here each step is a datatrove job whose task ``rank`` of ``world_size`` takes every
``world_size``-th unit:

1. ``SignatureTask``: units are the row groups of the input files (``plan``); each is read
   ``chunk_docs`` rows at a time, normalised and sketched (``stream.sketch_chunk``);
2. ``BucketTask``: units are the LSH bucket partitions (``stream.bucket_partition``);
3. ``ClusterTask`` (one task): connected components, written to ``out`` (``doc``, ``rep``,
   ``similarity`` of every dropped document) and ``<out>.report.json``.

``dedup_executors`` chains the three jobs with ``depends=``; ``make_executor`` decides where
they run: datatrove's ``LocalPipelineExecutor`` (the default: processes on this machine) or
e.g. ``SlurmPipelineExecutor`` (tasks on a cluster). Every task reads and writes only
``work`` (and ``out``), which must be a directory all machines share (NFS, Lustre, ...).
datatrove marks finished tasks in ``logging_dir`` and skips them when a job is run again.
datatrove is an optional dependency (``pip install -e .[dev]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipeline.curation import stream
from pipeline.curation.config import DedupParams


@dataclass(frozen=True)
class Unit:
    """One row group of one input file; ``start`` is the global index of its first row."""

    file: str
    row_group: int
    start: int
    rows: int


def plan(files: list[Path], text_col: str) -> list[Unit]:
    """The row groups of ``files`` in order, with global document numbers (file, then row)."""
    units, start = [], 0
    for f in files:
        pf = pq.ParquetFile(f)
        if text_col not in pf.schema_arrow.names:
            raise KeyError(f"{f}: no column {text_col!r} (columns: {pf.schema_arrow.names})")
        for rg in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            units.append(Unit(str(f), rg, start, n))
            start += n
    return units


@dataclass
class SignatureTask:
    """datatrove pipeline step: sketch the row groups ``rank::world_size``."""

    units: list[Unit]
    text_col: str
    work: str
    params: DedupParams
    chunk_docs: int
    partitions: int

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        for u in self.units[rank::world_size]:
            pf = pq.ParquetFile(u.file)
            start = u.start
            for batch in pf.iter_batches(batch_size=self.chunk_docs, row_groups=[u.row_group],
                                         columns=[self.text_col]):
                norm, numkey = stream.normalised_batch(batch, u.file, self.text_col)
                stream.sketch_chunk(start, norm, numkey if self.params.same_numbers else None,
                                    self.params, Path(self.work), self.partitions)
                start += len(norm)


@dataclass
class BucketTask:
    """datatrove pipeline step: group and verify the partitions ``rank::world_size``."""

    work: str
    params: DedupParams
    partitions: int

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        for part in range(rank, self.partitions, world_size):
            stream.bucket_partition(part, self.params, Path(self.work))


@dataclass
class ClusterTask:
    """datatrove pipeline step (one task): clusters of all verified pairs -> ``out``."""

    work: str
    out: str
    n_docs: int

    def __call__(self, data: Any, rank: int = 0, world_size: int = 1) -> None:
        if world_size != 1:
            raise ValueError(f"the cluster step runs as one task, got world_size={world_size}")
        rep, sims = stream.resolve(Path(self.work), self.n_docs)
        dropped = int((rep != np.arange(len(rep))).sum())
        stream.write_dropped(Path(self.out), rep, sims, {
            "docs": self.n_docs, "dropped": dropped, "peak_rss_mb": stream.peak_rss_mb()})


def local_executor(pipeline: list, tasks: int, name: str, depends: Any, logging_dir: Path,
                   workers: int = 2) -> Any:
    """datatrove's LocalPipelineExecutor: ``tasks`` tasks on ``workers`` local processes."""
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=min(workers, tasks),
                                 logging_dir=str(logging_dir / name), depends=depends)


def dedup_executors(
    files: list[Path],
    text_col: str,
    out: Path,
    work: Path,
    p: DedupParams,
    chunk_docs: int,
    partitions: int,
    tasks: int,
    make_executor: Callable[..., Any] | None = None,
) -> Any:
    """The three chained datatrove jobs; ``.run()`` on the returned (last) one runs them all.

    ``make_executor(pipeline, tasks, name, depends, logging_dir)`` builds one job (default:
    ``local_executor``); the signature and bucket jobs get ``tasks`` tasks, the cluster job one.
    """
    make = make_executor or local_executor
    units = plan(files, text_col)
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    sig = make([SignatureTask(units, text_col, str(work), p, chunk_docs, partitions)],
               min(tasks, max(1, len(units))), "signatures", None, logs)
    buckets = make([BucketTask(str(work), p, partitions)], min(tasks, partitions), "buckets",
                   sig, logs)
    n_docs = sum(u.rows for u in units)
    return make([ClusterTask(str(work), str(out), n_docs)], 1, "clusters", buckets, logs)

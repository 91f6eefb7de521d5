"""Typed params of the curate stage (section ``curate`` of params.yaml).

Every field's comment is its contract; ``load_section("curate", CurateParams)`` builds it
strictly (unknown key or wrong type fails naming ``curate.<key>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class GeneratorSpec:
    """One built-in generator (``pipeline.tasks.generate``)."""

    n: int  # tasks drawn for the training pools (sft + rl + val), seed = params seed
    bench_n: int = 0  # held-out benchmark tasks, drawn with seed + curate.bench_seed_offset
    knobs: Mapping[str, Any] = field(default_factory=dict)  # difficulty knobs of the generator


@dataclass(frozen=True)
class UserFile:
    """A user JSONL/Parquet file mapped onto the task schema by field names."""

    path: str
    domain: str = ""  # the domain of every row, or ...
    domain_field: str = ""  # ... the field holding each row's domain
    prompt_field: str = "prompt"
    reference_field: str = ""  # a field holding the whole reference (object or JSON text), or
    reference_fields: Mapping[str, str] = field(default_factory=dict)  # reference key -> field
    meta_fields: tuple[str, ...] = ()  # fields copied into meta
    role: Literal["train", "bench"] = "train"  # training pools or a held-out benchmark set


@dataclass(frozen=True)
class ValidationParams:
    max_prompt_chars: int = 2000  # longer prompts are quarantined (prompt_too_long)
    drop_choice_items: bool = True  # quarantine multiple-choice / true-false / yes-no items
    max_bad_share: float = 0.2  # fail when a source's quarantined share exceeds this


@dataclass(frozen=True)
class DedupParams:
    """Exact dedup on normalised prompts, then MinHash + LSH near-dup dedup."""

    shingle_size: int = 3  # words per shingle (task prompts are short)
    num_perm: int = 128  # MinHash permutations (datasketch affine32 scheme)
    bands: int = 16  # LSH bands; bands * rows <= num_perm
    rows: int = 8  # rows per band: candidate threshold ~ (1/bands)^(1/rows) = 0.71
    threshold: float = 0.8  # estimated Jaccard at which a candidate pair is a near-duplicate
    same_numbers: bool = True  # near-dups must have the same numbers and operators
    seed: int = 1  # MinHash permutation seed
    # memory: the whole role's signatures in memory; stream: signatures and LSH buckets on disk,
    # chunk by chunk (pipeline.curation.stream): the same clusters, memory bounded by the chunk
    engine: Literal["memory", "stream"] = "memory"
    chunk_docs: int = 50_000  # stream: documents per signature chunk
    partitions: int = 16  # stream: LSH bucket partitions (each grouped and verified alone)
    workers: int = 1  # stream: local processes working on the bucket partitions


@dataclass(frozen=True)
class DecontamParams:
    """Drop training items that overlap a benchmark item."""

    ngram: int = 13  # word n-gram length for overlap
    ngram_max_docs: int = 10  # n-grams found in more documents are template text, ignored
    near_dup: bool = True  # also drop near-duplicates of benchmark items (dedup's MinHash/LSH)


@dataclass(frozen=True)
class SplitParams:
    """Per-domain shares of the deduplicated training pool (they must sum to 1)."""

    sft: float = 0.6
    rl: float = 0.3
    val: float = 0.1  # held out: periodic eval in RL, accuracy in select


@dataclass(frozen=True)
class CurateParams:
    generators: Mapping[str, GeneratorSpec] = field(default_factory=dict)  # domain -> spec
    user_files: tuple[UserFile, ...] = ()
    bench_seed_offset: int = 100_003  # benchmark generators use seed + this offset
    validation: ValidationParams = field(default_factory=ValidationParams)
    dedup: DedupParams = field(default_factory=DedupParams)
    decontam: DecontamParams = field(default_factory=DecontamParams)
    split: SplitParams = field(default_factory=SplitParams)
    # domain -> shares replacing ``split`` for that domain (e.g. more of a domain into RL)
    split_by_domain: Mapping[str, SplitParams] = field(default_factory=dict)
    dropped_sample_rows: int = 50  # dropped pairs logged to MLflow as a table

    def __post_init__(self) -> None:
        for where, sp in [("curate.split", self.split)] + [
                (f"curate.split_by_domain.{d}", sp) for d, sp in self.split_by_domain.items()]:
            total = sp.sft + sp.rl + sp.val
            if abs(total - 1.0) > 1e-6 or min(sp.sft, sp.rl, sp.val) < 0:
                raise ValueError(f"{where}: shares must be >= 0 and sum to 1, got "
                                 f"sft {sp.sft} + rl {sp.rl} + val {sp.val} = {total:g}")
        d = self.dedup
        if d.bands * d.rows > d.num_perm:
            raise ValueError(f"curate.dedup: bands*rows={d.bands * d.rows} > num_perm={d.num_perm}")
        for key in ("chunk_docs", "partitions", "workers"):
            if getattr(d, key) < 1:
                raise ValueError(f"curate.dedup.{key}: must be >= 1, got {getattr(d, key)}")
        for i, f in enumerate(self.user_files):
            if bool(f.domain) == bool(f.domain_field):
                raise ValueError(f"curate.user_files[{i}]: set exactly one of domain, domain_field")
            if bool(f.reference_field) == bool(f.reference_fields):
                raise ValueError(
                    f"curate.user_files[{i}]: set exactly one of reference_field, reference_fields"
                )

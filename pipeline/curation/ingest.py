"""Ingest: built-in generators and user files -> candidate rows -> tasks or quarantine.

A *candidate* is a plain dict: ``domain, prompt, reference`` (object), ``meta`` (object),
``source`` (task source), ``origin`` (what stats count by: ``gen:<domain>``,
``gen:<domain>:bench`` or the user file path), ``row`` (0-based row in the origin), ``role``
(``train`` | ``bench``), ``raw`` (the original row as JSON) and, for rows that could not be
mapped at all, ``rejection``.

User files are JSONL (one object per line; blank lines are skipped, the row number is the
0-based line number) or Parquet (read with polars). JSONL is split into lines and decoded per
line so one bad line (not UTF-8, not JSON) is quarantined instead of failing the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.curation.config import GeneratorSpec, UserFile
from pipeline.curation.validate import Rejection

_MISSING = object()


class IngestError(ValueError):
    """A user file that cannot be read at all (missing, unknown format)."""


def generator_candidates(
    generate: Callable[..., list[dict[str, Any]]],
    domain: str,
    spec: GeneratorSpec,
    seed: int,
    role: str,
) -> list[dict[str, Any]]:
    """Candidates from ``generate(domain, n, seed, **knobs)`` (n = spec.n or spec.bench_n)."""
    n = spec.bench_n if role == "bench" else spec.n
    origin = f"gen:{domain}:bench" if role == "bench" else f"gen:{domain}"
    out = []
    for i, task in enumerate(generate(domain, n, seed, **dict(spec.knobs))):
        out.append(
            {
                "domain": task["domain"],
                "prompt": task["prompt"],
                "reference": _maybe_json(task["reference"]),
                "meta": _maybe_json(task["meta"]),
                "source": task["source"],
                "origin": origin,
                "row": i,
                "role": role,
                "raw": json.dumps(task, sort_keys=True, default=str),
            }
        )
    return out


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, Rejection | None, str]]:
    """Yield ``(row, record, rejection, raw)`` for each row of a JSONL or Parquet file."""
    if not path.exists():
        raise IngestError(f"{path}: user file not found (curate.user_files)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        df = pl.read_parquet(path)
        for i, rec in enumerate(df.iter_rows(named=True)):
            yield i, rec, None, json.dumps(rec, default=str, ensure_ascii=False)
        return
    if suffix not in (".jsonl", ".ndjson", ".json"):
        raise IngestError(f"{path}: unknown format {suffix!r} (use .jsonl or .parquet)")
    for i, line in enumerate(path.read_bytes().split(b"\n")):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield i, None, Rejection("", "invalid_utf8", str(e)), line.decode("utf-8", "replace")
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError as e:
            yield i, None, Rejection("", "invalid_json", str(e)), text
            continue
        if not isinstance(rec, dict):
            yield i, None, Rejection("", "wrong_type", "row is not a JSON object"), text
            continue
        yield i, rec, None, text


def _reference(spec: UserFile, rec: dict[str, Any]) -> Any:
    """The reference object from the mapped field(s); ``Rejection`` when a field is absent."""
    if spec.reference_field:
        value = rec.get(spec.reference_field)
        if isinstance(value, str):
            parsed = _maybe_json(value)
            return parsed if isinstance(parsed, dict) else value
        return value
    ref = {}
    for key, src in spec.reference_fields.items():
        ref[key] = rec.get(src)
    return ref


def map_record(spec: UserFile, rec: dict[str, Any]) -> dict[str, Any] | Rejection:
    """Map one user record onto (domain, prompt, reference, meta) or reject it."""
    if spec.prompt_field not in rec:
        return Rejection(spec.prompt_field, "missing_field")
    if spec.domain_field and spec.domain_field not in rec:
        return Rejection(spec.domain_field, "missing_field")
    domain = rec[spec.domain_field] if spec.domain_field else spec.domain
    ref_fields = (
        [spec.reference_field] if spec.reference_field else list(spec.reference_fields.values())
    )
    for src in ref_fields:
        if rec.get(src, _MISSING) is _MISSING:
            return Rejection(src, "missing_field")
    meta = {f: rec.get(f) for f in spec.meta_fields}
    return {
        "domain": domain,
        "prompt": rec[spec.prompt_field],
        "reference": _reference(spec, rec),
        "meta": meta,
    }


def file_candidates(spec: UserFile, root: Path = Path(".")) -> list[dict[str, Any]]:
    """Candidates for every row of one user file (rows that cannot be mapped carry a rejection)."""
    path = root / spec.path
    out = []
    for row, rec, rejection, raw in read_records(path):
        base = {
            "origin": spec.path,
            "row": row,
            "role": spec.role,
            "raw": raw,
            "source": f"file:{spec.path}",
        }
        mapped = rejection if rejection else map_record(spec, rec)
        if isinstance(mapped, Rejection):
            out.append({**base, "rejection": mapped})
        else:
            out.append({**base, **mapped, "meta": {**mapped["meta"], "source_row": row}})
    return out


def user_frame_for_logging(spec: UserFile, root: Path = Path(".")) -> pl.DataFrame:
    """The user file as a polars frame (for MLflow dataset logging with a digest).

    Parquet and clean JSONL are read by polars; a JSONL file with bad lines is logged as its
    raw rows (``row``, ``raw``) so the digest still covers every line.
    """
    path = root / spec.path
    if path.suffix.lower() == ".parquet":
        return pl.read_parquet(path)
    try:
        return pl.read_ndjson(path, infer_schema_length=None)
    except Exception:  # noqa: BLE001 - polars rejects the whole file for one bad line
        rows = [(row, raw) for row, _, _, raw in read_records(path)]
        return pl.DataFrame(rows, schema={"row": pl.Int64, "raw": pl.String}, orient="row")

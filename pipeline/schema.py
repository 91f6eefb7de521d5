"""The record schemas stages hand off to each other (polars), in one place.

- task: one verifiable problem. ``reference`` and ``meta`` are JSON strings (answers, tests,
  constraints or reference text; generator knobs), so every domain fits one flat schema.
- trace: a teacher's verified long chain-of-thought for a task.
- sample: one model response to a task with its score (rollouts, difficulty, bench).
- quarantine: a rejected input row, kept with where it came from and why.

``validate(df, SCHEMA, what)`` checks a frame against a schema (names and dtypes) and returns it
with the schema's column order; ``write_parquet`` in :mod:`pipeline.atomic` writes it atomically.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl

TASK = {
    "id": pl.String,  # content hash of domain + prompt + reference (see task_id)
    "domain": pl.String,  # math, countdown, sudoku, knights_knaves, code, ifeval, open_qa, ...
    "prompt": pl.String,
    "reference": pl.String,  # JSON
    "source": pl.String,  # generator name or user file
    "split": pl.String,  # sft | rl | bench (set by curate), or "" before
    "meta": pl.String,  # JSON
}

TRACE = {
    "task_id": pl.String,
    "domain": pl.String,
    "prompt": pl.String,
    "response": pl.String,  # "<think>...</think>" then the final answer
    "teacher": pl.String,
    "verified": pl.Boolean,
    "prompt_tokens": pl.Int64,
    "response_tokens": pl.Int64,
}

SAMPLE = {
    "task_id": pl.String,
    "domain": pl.String,
    "model": pl.String,
    "sample_index": pl.Int64,
    "response": pl.String,
    "reward": pl.Float64,
    "correct": pl.Boolean,
    "reason": pl.String,
    "tokens": pl.Int64,
    "finish_reason": pl.String,
}

QUARANTINE = {
    "source_file": pl.String,
    "row": pl.Int64,  # 0-based row number in the source file
    "field": pl.String,  # the offending field, or "" for whole-row problems
    "reason": pl.String,
    "raw": pl.String,  # the original row as JSON (nothing is lost)
}

REASONING_DOMAINS = ("math", "countdown", "sudoku", "knights_knaves", "code")
GENERAL_DOMAINS = ("ifeval", "open_qa")


def domain_group(domain: str) -> str:
    """``reasoning`` or ``general``: which RL stage a domain belongs to."""
    return "general" if domain in GENERAL_DOMAINS else "reasoning"


def task_id(domain: str, prompt: str, reference: str) -> str:
    """Content hash: the same task from two sources gets the same id."""
    h = hashlib.sha256(f"{domain}\x00{prompt}\x00{reference}".encode())
    return h.hexdigest()[:16]


def make_task(
    domain: str, prompt: str, reference: Any, source: str, meta: Any = None, split: str = ""
) -> dict[str, str]:
    """A task record (dict) with its id; ``reference``/``meta`` may be objects (JSON-encoded)."""
    ref = reference if isinstance(reference, str) else json.dumps(reference, sort_keys=True)
    meta_s = meta if isinstance(meta, str) else json.dumps(meta or {}, sort_keys=True)
    return {
        "id": task_id(domain, prompt, ref),
        "domain": domain,
        "prompt": prompt,
        "reference": ref,
        "source": source,
        "split": split,
        "meta": meta_s,
    }


class SchemaError(ValueError):
    pass


def validate(df: pl.DataFrame, schema: dict[str, Any], what: str) -> pl.DataFrame:
    """Return ``df`` with exactly the schema's columns, in order; raise naming what is wrong."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise SchemaError(f"{what}: missing columns {missing}")
    wrong = [f"{c}: {df.schema[c]} (want {t})" for c, t in schema.items() if df.schema[c] != t]
    if wrong:
        raise SchemaError(f"{what}: wrong column types: {'; '.join(wrong)}")
    return df.select(list(schema))


def empty(schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def frame(rows: list[dict[str, Any]], schema: dict[str, Any]) -> pl.DataFrame:
    """Rows (dicts) -> a frame with exactly ``schema`` (extra keys are an error)."""
    if not rows:
        return empty(schema)
    return pl.DataFrame(rows, schema=schema, strict=True)

"""Benchmark files in their usual shapes -> task records (``schema.TASK``, split ``bench``).

Shapes (JSONL, JSON list or Parquet; one problem per row):

- ``aime``:    ``problem``, ``answer``                      -> math (final answer in \\boxed{})
- ``gsm8k``:   ``question``, ``answer`` ending "#### <n>"   -> math
- ``math500``: ``problem``, ``solution``, ``answer``          -> math
- ``ifeval``:  ``prompt``, ``instruction_id_list``, ``kwargs`` -> ifeval; each instruction id
  maps onto one of our rule-checker kinds (:data:`IFEVAL_KINDS`); a row with an id we cannot
  check is skipped and counted (``on_unknown="skip"``) or raises (``"error"``).
- ``code``:    ``prompt`` + ``entry_point`` + ``tests`` (list of assert lines), or MBPP's
  ``text`` + ``test_list``, or HumanEval's ``prompt`` + ``entry_point`` + ``test`` (a
  ``check(candidate)`` function)                            -> code

Bad input raises :class:`BenchFileError` naming the file, the row (0-based) and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.schema import make_task

MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_SUFFIX = (
    "Write the Python function `{entry}`. Put the complete program in one ```python block."
)
SHAPES = ("aime", "gsm8k", "math500", "ifeval", "code")


class BenchFileError(ValueError):
    """A benchmark row that does not fit its shape (message names file, row, field)."""


@dataclass
class Loaded:
    tasks: list[dict[str, str]]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows skipped


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl / .json (list) / .parquet file."""
    if not path.exists():
        raise BenchFileError(f"{path}: file not found")
    if path.suffix == ".parquet":
        yield from pl.read_parquet(path).to_dicts()
    elif path.suffix == ".json":
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise BenchFileError(f"{path}: a .json benchmark must be a list of rows")
        yield from data
    else:
        with path.open() as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise BenchFileError(f"{path}: row {i}: invalid JSON ({e.msg})") from e


def _field(row: dict[str, Any], name: str, where: str, kind: type = str) -> Any:
    if name not in row or row[name] is None:
        raise BenchFileError(f"{where}: field '{name}': missing")
    value = row[name]
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # AIME answers are often integers
    if not isinstance(value, kind):
        raise BenchFileError(f"{where}: field '{name}': expected {kind.__name__}, got {value!r}")
    if kind is str and not value.strip():
        raise BenchFileError(f"{where}: field '{name}': empty")
    return value


def _math(prompt: str, answer: str, name: str, meta: dict[str, Any]) -> dict[str, str]:
    return make_task("math", f"{prompt.strip()}\n{MATH_SUFFIX}", {"answer": answer.strip()},
                     f"bench:{name}", meta, split="bench")


def aime(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    return _math(_field(row, "problem", where), _field(row, "answer", where), name, {})


def math500(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    _field(row, "solution", where)
    meta = {k: row[k] for k in ("subject", "level", "unique_id") if k in row}
    return _math(_field(row, "problem", where), _field(row, "answer", where), name, meta)


def gsm8k(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    full = _field(row, "answer", where)
    m = re.search(r"####\s*(.+?)\s*$", full)
    if not m:
        raise BenchFileError(f"{where}: field 'answer': no '#### <answer>' line")
    return _math(_field(row, "question", where), m.group(1).replace(",", ""), name, {})


def code(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    if "test_list" in row:  # MBPP
        prompt = _field(row, "text", where)
        tests = _field(row, "test_list", where, list)
        m = re.match(r"\s*assert\s+(?:not\s+)?\(?\s*([A-Za-z_]\w*)\s*\(", tests[0] if tests else "")
        if not m:
            raise BenchFileError(f"{where}: field 'test_list': cannot find the function name")
        entry = m.group(1)
    else:
        prompt = _field(row, "prompt", where)
        entry = _field(row, "entry_point", where)
        if "tests" in row:
            tests = _field(row, "tests", where, list)
        else:  # HumanEval: one check(candidate) function
            tests = [_field(row, "test", where) + f"\ncheck({entry})\n"]
    if not tests or not all(isinstance(t, str) and t.strip() for t in tests):
        raise BenchFileError(f"{where}: field 'tests': need a non-empty list of test strings")
    text = f"{prompt.rstrip()}\n{CODE_SUFFIX.format(entry=entry)}"
    return make_task("code", text, {"entry_point": entry, "tests": list(tests)},
                     f"bench:{name}", {}, split="bench")


LOADERS: dict[str, Callable[[dict[str, Any], str, str], dict[str, str]]] = {
    "aime": aime, "gsm8k": gsm8k, "math500": math500, "code": code,
}


def load_benchmark(path: str | Path, shape: str, name: str, on_unknown: str = "skip") -> Loaded:
    """Read benchmark ``path`` of ``shape`` as task records (source ``bench:<name>``)."""
    from pipeline.bench.ifeval_map import UnknownInstruction, ifeval_task

    path = Path(path)
    if shape not in SHAPES:
        raise BenchFileError(f"{path}: unknown benchmark shape {shape!r} (known: {SHAPES})")
    if on_unknown not in ("skip", "error"):
        raise ValueError(f"on_unknown must be 'skip' or 'error', got {on_unknown!r}")
    out = Loaded([])
    for i, row in enumerate(read_rows(path)):
        where = f"{path}: row {i}"
        if not isinstance(row, dict):
            raise BenchFileError(f"{where}: expected an object, got {type(row).__name__}")
        if shape != "ifeval":
            out.tasks.append(LOADERS[shape](row, where, name))
            continue
        try:
            out.tasks.append(ifeval_task(row, where, name))
        except UnknownInstruction as e:
            if on_unknown == "error":
                raise BenchFileError(str(e)) from e
            key = f"unknown_instruction:{e.instruction_id}"
            out.skipped[key] = out.skipped.get(key, 0) + 1
        except ValueError as e:
            raise BenchFileError(str(e)) from e
    if not out.tasks:
        raise BenchFileError(f"{path}: no usable rows ({out.skipped or 'file is empty'})")
    return out

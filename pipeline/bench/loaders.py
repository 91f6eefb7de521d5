"""Benchmark files as published -> task records (``schema.TASK``, split ``bench``).

Files: ``.jsonl`` / ``.jsonl.gz`` (one JSON object per line; blank lines are not rows), ``.json``
(a list of rows, also ``.json.gz``) or ``.parquet``. Shapes (one problem per row):

- ``aime``:    ``problem``, ``answer``                      -> math (final answer in \\boxed{})
- ``gsm8k``:   ``question``, ``answer`` ending "#### <n>"   -> math
- ``math500``: ``problem``, ``solution``, ``answer``          -> math
- ``ifeval``:  ``prompt``, ``instruction_id_list``, ``kwargs`` -> ifeval (all 25 official ids,
  :mod:`pipeline.bench.ifeval_map`); a row with an id we cannot check is skipped and counted
  per id (``on_unknown="skip"``) or raises (``"error"``).
- ``code``, recognised by its fields:

  - HumanEval: ``prompt`` + ``entry_point`` + ``test`` (a ``check(candidate)`` function);
  - MBPP (full: ``text``, ``code``, ``test_list``, ``test_setup_code``; sanitized: ``prompt``,
    ``code``, ``test_list``, ``test_imports``): the entry point is the function of the reference
    solution (``code``) that the tests call; ``test_setup_code`` becomes the reference's
    ``setup`` and ``test_imports`` its ``imports``; the prompt lists the tests, as in the MBPP
    paper;
  - stdin/stdout (LiveCodeBench style): ``question_content`` (or ``prompt``) with test cases in
    ``public_test_cases`` / ``private_test_cases`` (a list or JSON text of ``{"input",
    "output", "testtype"}``; LiveCodeBench's compressed private cases, base64 of zlib of a
    pickled JSON string, are decoded with an unpickler that admits no globals). ``stdin`` cases
    -> an ``io`` reference; ``functional`` cases (``metadata.func_name``; the program defines
    ``class Solution``) -> calls ``Solution().<func_name>(*args)``;
  - plain: ``prompt`` + ``entry_point`` + ``tests`` (assert lines), or ``prompt`` + ``io``.

Code tasks carry ``BENCH_CODE_LIMITS`` (10 s CPU, 20 s wall) as their sandbox budget. Bad input
raises :class:`BenchFileError` naming the file, the row (0-based) and the field; nothing is
dropped silently.
"""

from __future__ import annotations

import ast
import base64
import gzip
import io
import json
import pickle
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.schema import make_task

MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
CODE_SUFFIX = (
    "Write the Python function `{entry}`. Put the complete program in one ```python block."
)
IO_SUFFIX = (
    "Write a Python program that reads the input from stdin and writes the answer to stdout. "
    "Put the complete program in one ```python block."
)
SHAPES = ("aime", "gsm8k", "math500", "ifeval", "code")
LCB_ENTRY = "_lcb_call"  # the helper a functional LiveCodeBench task's tests call
# Sandbox budget of a benchmark code task (the reference's "limits", see pipeline.verify.code):
# some reference solutions need several CPU seconds (MBPP 123: ~5 s here), more than the 2 s
# default that suits the pipeline's own one-line tasks.
BENCH_CODE_LIMITS = {"cpu_s": 10, "wall_s": 20.0}


class BenchFileError(ValueError):
    """A benchmark row that does not fit its shape (message names file, row, field)."""


@dataclass
class Loaded:
    tasks: list[dict[str, str]]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (see load_benchmark)


def _is_gz(path: Path) -> bool:
    return path.suffix == ".gz"


def _inner_suffix(path: Path) -> str:
    return Path(path.stem).suffix if _is_gz(path) else path.suffix


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl / .jsonl.gz / .json / .json.gz / .parquet file."""
    if not path.exists():
        raise BenchFileError(f"{path}: file not found")
    suffix = _inner_suffix(path)
    if suffix == ".parquet":
        import polars as pl

        yield from pl.read_parquet(path).to_dicts()
    elif suffix == ".json":
        try:
            raw = gzip.decompress(path.read_bytes()) if _is_gz(path) else path.read_bytes()
            data = json.loads(raw.decode("utf-8"))
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise BenchFileError(f"{path}: not a readable gzip file ({e})") from e
        except UnicodeDecodeError as e:
            raise BenchFileError(f"{path}: not UTF-8 text (byte {e.start})") from e
        except json.JSONDecodeError as e:
            raise BenchFileError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from e
        if not isinstance(data, list):
            raise BenchFileError(f"{path}: a .json benchmark must be a list of rows")
        yield from data
    else:
        yield from _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if _is_gz(path) else open
    row = 0
    try:
        with opener(path, "rb") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BenchFileError(f"{path}: row {row}: not UTF-8 text (byte {e.start})"
                                         + (" - a gzip file needs the .gz suffix"
                                            if line[:2] == b"\x1f\x8b" else "")) from e  # fmt: skip
                try:
                    yield json.loads(text)
                except json.JSONDecodeError as e:
                    raise BenchFileError(f"{path}: row {row}: invalid JSON ({e.msg})") from e
                row += 1
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise BenchFileError(f"{path}: row {row}: unreadable ({type(e).__name__}: {e})") from e


def _field(row: dict[str, Any], name: str, where: str, kind: type = str) -> Any:
    if name not in row or row[name] is None:
        raise BenchFileError(f"{where}: field '{name}': missing")
    value = row[name]
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # AIME answers are often integers
    if not isinstance(value, kind):
        raise BenchFileError(f"{where}: field '{name}': expected {kind.__name__}, got {value!r}"[:300])
    if kind is str and not value.strip():
        raise BenchFileError(f"{where}: field '{name}': empty")
    return value


def _str_list(row: dict[str, Any], name: str, where: str, allow_empty: bool = False) -> list[str]:
    value = _field(row, name, where, list)
    if not allow_empty and not value:
        raise BenchFileError(f"{where}: field '{name}': empty list")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise BenchFileError(f"{where}: field '{name}[{i}]': expected a non-empty string")
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


# ---- code -------------------------------------------------------------------------------------


def _code_task(text: str, ref: dict[str, Any], name: str, meta: dict[str, Any]) -> dict[str, str]:
    ref = {**ref, "limits": dict(BENCH_CODE_LIMITS)}
    return make_task("code", text, ref, f"bench:{name}", meta, split="bench")


def _called_names(tests: list[str]) -> list[str]:
    """Names called in the tests, in order of first appearance."""
    names: list[str] = []
    for t in tests:
        try:
            tree = ast.parse(t)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id not in names:  # fmt: skip
                names.append(node.func.id)
    return names


def _defined_functions(code: str) -> list[str]:
    """Top-level ``def``/``class`` names of a solution, in order."""
    try:
        return [n.name for n in ast.parse(code).body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    except SyntaxError:
        return re.findall(r"^(?:def|class)\s+([A-Za-z_]\w*)", code, re.MULTILINE)


def mbpp(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    """MBPP, full (``text``, ``test_setup_code``) or sanitized (``prompt``, ``test_imports``)."""
    text = _field(row, "text" if "text" in row else "prompt", where)
    code = _field(row, "code", where)
    tests = _str_list(row, "test_list", where)
    called = _called_names(tests)
    defined = _defined_functions(code)
    entry = next((d for d in defined if d in called), None)
    if entry is None:
        raise BenchFileError(f"{where}: field 'code': none of its functions {defined} is called "
                             f"by field 'test_list' (calls {called})")  # fmt: skip
    ref: dict[str, Any] = {"entry_point": entry, "tests": tests}
    setup = row.get("test_setup_code") or ""
    if not isinstance(setup, str):
        raise BenchFileError(f"{where}: field 'test_setup_code': expected a string")
    if setup.strip():
        ref["setup"] = setup
    imports = _str_list(row, "test_imports", where, True) if "test_imports" in row else []
    if imports:
        ref["imports"] = "\n".join(imports) + "\n"
    shown = "\n".join(tests)
    prompt = (f"{text.strip()}\nYour code should pass these tests:\n\n{shown}\n\n"
              f"{CODE_SUFFIX.format(entry=entry)}")  # fmt: skip
    meta = {k: row[k] for k in ("task_id",) if k in row}
    return _code_task(prompt, ref, name, meta)


def humaneval(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    prompt = _field(row, "prompt", where)
    entry = _field(row, "entry_point", where)
    if not entry.isidentifier():
        raise BenchFileError(f"{where}: field 'entry_point': not an identifier: {entry!r}")
    test = _field(row, "test", where)
    text = f"{prompt.rstrip()}\n{CODE_SUFFIX.format(entry=entry)}"
    meta = {k: row[k] for k in ("task_id",) if k in row}
    return _code_task(text, {"entry_point": entry, "tests": [f"{test}\ncheck({entry})\n"]},
                      name, meta)  # fmt: skip


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ARG002 - refuses every global
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _cases(row: dict[str, Any], name: str, where: str) -> list[dict[str, Any]]:
    """Test cases of a LiveCodeBench-style field (list, JSON text or compressed JSON text)."""
    value = row.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                raw = zlib.decompress(base64.b64decode(value.encode(), validate=False))
                value = json.loads(_NoGlobals(io.BytesIO(raw)).load())
            except (ValueError, TypeError, zlib.error, pickle.UnpicklingError, EOFError) as e:
                raise BenchFileError(f"{where}: field '{name}': neither JSON nor LiveCodeBench's "
                                     f"compressed form ({type(e).__name__})") from e  # fmt: skip
    if not isinstance(value, list):
        raise BenchFileError(f"{where}: field '{name}': expected a list of test cases")
    for i, case in enumerate(value):
        if not isinstance(case, dict) or not all(isinstance(case.get(k), str)
                                                  for k in ("input", "output")):  # fmt: skip
            raise BenchFileError(f"{where}: field '{name}[{i}]': need string 'input' and 'output'")
        if case.get("testtype", "stdin") not in ("stdin", "functional"):
            raise BenchFileError(f"{where}: field '{name}[{i}].testtype': "
                                 f"{case.get('testtype')!r} (want stdin or functional)")
    return value


def livecodebench(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    text = _field(row, "question_content" if "question_content" in row else "prompt", where)
    cases = _cases(row, "public_test_cases", where) + _cases(row, "private_test_cases", where)
    if not cases:
        raise BenchFileError(f"{where}: field 'public_test_cases': no test cases in the row")
    kinds = {c.get("testtype", "stdin") for c in cases}
    if len(kinds) != 1:
        raise BenchFileError(f"{where}: field 'public_test_cases': mixed test types {kinds}")
    meta = {k: row[k] for k in ("question_id", "platform", "difficulty", "contest_date")
            if k in row}  # fmt: skip
    if kinds == {"stdin"}:
        ref = {"io": [{"input": c["input"], "output": c["output"]} for c in cases]}
        return _code_task(f"{text.strip()}\n{IO_SUFFIX}", ref, name, meta)
    md = row.get("metadata") or {}
    if isinstance(md, str):
        try:
            md = json.loads(md)
        except json.JSONDecodeError as e:
            raise BenchFileError(f"{where}: field 'metadata': invalid JSON ({e.msg})") from e
    func = md.get("func_name") if isinstance(md, dict) else None
    if not isinstance(func, str) or not func.isidentifier():
        raise BenchFileError(f"{where}: field 'metadata.func_name': needed for functional tests")
    tests = []
    for i, c in enumerate(cases):
        try:
            args = [json.loads(line) for line in c["input"].split("\n") if line.strip()]
            want = json.loads(c["output"])
        except json.JSONDecodeError as e:
            raise BenchFileError(f"{where}: test case {i}: input/output not JSON ({e.msg})") from e
        tests.append(f"assert {LCB_ENTRY}(*{args!r}) == {want!r}")
    starter = row.get("starter_code") or ""
    setup = (f"def {LCB_ENTRY}(*args):\n"
             f"    return Solution().{func}(*args)\n")  # fmt: skip
    prompt = f"{text.strip()}\n\n{starter.strip()}\n".rstrip() + \
        "\nComplete class `Solution`. Put the complete program in one ```python block."
    return _code_task(prompt, {"entry_point": "Solution", "tests": tests, "setup": setup},
                      name, meta)  # fmt: skip


def code(row: dict[str, Any], where: str, name: str) -> dict[str, str]:
    """Dispatch a code row on its fields (see the module docstring)."""
    if "test_list" in row:
        return mbpp(row, where, name)
    if "public_test_cases" in row or "private_test_cases" in row:
        return livecodebench(row, where, name)
    if "test" in row and "entry_point" in row:
        return humaneval(row, where, name)
    if "io" in row:
        prompt = _field(row, "prompt", where)
        io_cases = _cases(row, "io", where)
        if not io_cases:
            raise BenchFileError(f"{where}: field 'io': empty")
        ref = {"io": [{"input": c["input"], "output": c["output"]} for c in io_cases]}
        return _code_task(f"{prompt.strip()}\n{IO_SUFFIX}", ref, name, {})
    if "tests" in row:
        prompt = _field(row, "prompt", where)
        entry = _field(row, "entry_point", where)
        tests = _str_list(row, "tests", where)
        text = f"{prompt.rstrip()}\n{CODE_SUFFIX.format(entry=entry)}"
        return _code_task(text, {"entry_point": entry, "tests": tests}, name, {})
    raise BenchFileError(f"{where}: not a code row: need 'test_list' (MBPP), 'test' + "
                         "'entry_point' (HumanEval), 'public_test_cases' (LiveCodeBench), "
                         f"'io' or 'tests'; got fields {sorted(row)}")  # fmt: skip


LOADERS: dict[str, Callable[[dict[str, Any], str, str], dict[str, str]]] = {
    "aime": aime, "gsm8k": gsm8k, "math500": math500, "code": code,
}  # fmt: skip


def load_benchmark(path: str | Path, shape: str, name: str, on_unknown: str = "skip") -> Loaded:
    """Read benchmark ``path`` of ``shape`` as task records (source ``bench:<name>``).

    ``Loaded.skipped`` (IFEval with ``on_unknown="skip"`` only) counts, per instruction id,
    every instance of an id we cannot check (``unknown_instruction:<id>``) and the rows left out
    for it (``rows``)."""
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
            for iid in e.instruction_ids:
                key = f"unknown_instruction:{iid}"
                out.skipped[key] = out.skipped.get(key, 0) + 1
            out.skipped["rows"] = out.skipped.get("rows", 0) + 1
        except ValueError as e:
            raise BenchFileError(str(e)) from e
    if not out.tasks:
        raise BenchFileError(f"{path}: no usable rows ({out.skipped or 'file is empty'})")
    return out

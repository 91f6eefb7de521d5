"""The verifiers against public benchmark files: gold solutions must score correct, deliberately
wrong ones must not; IFEval agreement with the official verdicts; the sandbox red team.

Every benchmark file is loaded through ``pipeline.bench.loaders`` (as ``bench`` does) and every
response is scored by ``pipeline.verify.score_batch`` (as RL and ``bench`` do). Responses:

- math (GSM8K, MATH-500, AIME): gold = the reference solution when the file has one (MATH-500's
  ``solution``; GSM8K's with its ``#### n`` line written as ``\\boxed{n}``), else
  ``\\boxed{answer}``; wrong = ``\\boxed{(answer)+1}`` (``x=(5)+1`` for an answer ``x=5``);
- code (HumanEval, MBPP full and sanitized): gold = the reference solution (HumanEval's prompt +
  ``canonical_solution``, MBPP's ``code``); wrong = the gold program followed by a redefinition of
  the entry point that returns ``None``.

The files are not part of the repository (docs/bench.md lists where each comes from); pass the
ones you have. Prints one line per benchmark and exits 1 if any gold response is rejected or any
wrong one accepted.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/verify_benchmarks.py --gsm8k test.jsonl \\
        --math500 math500.jsonl --aime aime24.jsonl aime25.jsonl --humaneval HumanEval.jsonl.gz \\
        --mbpp mbpp.jsonl --mbpp-sanitized sanitized-mbpp.json --redteam \\
        --ifeval-input input_data.jsonl --ifeval-responses input_response_data_gpt4_20231107_145030.jsonl \\
        --ifeval-official-dir DIR --ifeval-official-python PY
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench.loaders import load_benchmark, read_rows  # noqa: E402
from pipeline.verify import score_batch  # noqa: E402


def math_responses(path: Path, shape: str) -> tuple[list[dict], list[str], list[str]]:
    tasks = load_benchmark(path, shape, path.stem).tasks
    rows = list(read_rows(path))
    gold, wrong = [], []
    for task, row in zip(tasks, rows, strict=True):
        answer = json.loads(task["reference"])["answer"]
        if shape == "math500":
            gold.append(row["solution"])
        elif shape == "gsm8k":
            gold.append(re.sub(r"####\s*(.+?)\s*$", lambda m: f"\\boxed{{{m.group(1)}}}",
                               row["answer"]))  # fmt: skip
        else:
            gold.append(f"\\boxed{{{answer}}}")
        eq = re.fullmatch(r"\s*([A-Za-z]\w*)\s*=\s*(.+)", answer)  # "x=5" -> x=(5)+1
        wrong.append(f"\\boxed{{{eq.group(1)}=({eq.group(2)})+1}}" if eq
                     else f"\\boxed{{({answer})+1}}")  # fmt: skip
    return tasks, gold, wrong


def code_responses(path: Path) -> tuple[list[dict], list[str], list[str]]:
    tasks = load_benchmark(path, "code", path.name).tasks
    gold, wrong = [], []
    for task, row in zip(tasks, read_rows(path), strict=True):
        entry = json.loads(task["reference"])["entry_point"]
        program = row["prompt"] + row["canonical_solution"] if "canonical_solution" in row \
            else row["code"]  # fmt: skip
        gold.append(f"```python\n{program}\n```")
        wrong.append(f"```python\n{program}\n\ndef {entry}(*args, **kwargs):\n    return None\n```")
    return tasks, gold, wrong


def _name(task: dict) -> str:
    meta = json.loads(task["meta"])
    return str(meta.get("task_id", meta.get("unique_id", task["id"])))


def report(name: str, tasks: list[dict], gold: list[str], wrong: list[str], workers: int,
           timeout_s: float) -> bool:  # fmt: skip
    t0 = time.monotonic()
    g = score_batch(tasks, gold, workers=workers, timeout_s=timeout_s)
    w = score_batch(tasks, wrong, workers=workers, timeout_s=timeout_s)
    g_ok = sum(s.correct for s in g)
    w_ok = sum(s.correct for s in w)
    print(f"{name:<34}{len(tasks):>6}  gold correct {g_ok:>5}/{len(tasks)} "
          f"({g_ok / len(tasks):.1%})  wrong accepted {w_ok:>4}/{len(tasks)}  "
          f"[{time.monotonic() - t0:.0f} s]", flush=True)  # fmt: skip
    for task, s in zip(tasks, g, strict=True):
        if not s.correct:
            print(f"    gold rejected: {_name(task)}: "
                  f"{s.reason[:150]}")  # fmt: skip
    for task, s in zip(tasks, w, strict=True):
        if s.correct:
            print(f"    wrong accepted: {_name(task)}")
    return g_ok == len(tasks) and w_ok == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gsm8k", type=Path)
    ap.add_argument("--math500", type=Path)
    ap.add_argument("--aime", type=Path, nargs="*", default=[])
    ap.add_argument("--humaneval", type=Path)
    ap.add_argument("--mbpp", type=Path)
    ap.add_argument("--mbpp-sanitized", type=Path)
    ap.add_argument("--ifeval-input", type=Path)
    ap.add_argument("--ifeval-responses", type=Path)
    ap.add_argument("--ifeval-official-dir", type=Path)
    ap.add_argument("--ifeval-official-python", type=Path)
    ap.add_argument("--redteam", action="store_true", help="score the sandbox red-team programs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=60.0)
    args = ap.parse_args(argv)

    ok = True
    jobs = [(args.gsm8k, "gsm8k"), (args.math500, "math500"), *[(p, "aime") for p in args.aime]]
    for path, shape in jobs:
        if path:
            ok &= report(f"{shape}:{path.parent.name}/{path.name}", *math_responses(path, shape),
                         args.workers,
                         args.timeout_s)  # fmt: skip
    for path, label in ((args.humaneval, "humaneval"), (args.mbpp, "mbpp"),
                        (args.mbpp_sanitized, "mbpp-sanitized")):  # fmt: skip
        if path:
            ok &= report(f"{label}:{path.parent.name}/{path.name}", *code_responses(path),
                         args.workers,
                         args.timeout_s)  # fmt: skip
    if args.ifeval_input and args.ifeval_responses:
        spec = importlib.util.spec_from_file_location(
            "ifeval_agreement", Path(__file__).with_name("ifeval_agreement.py"))
        ifeval_agreement = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ifeval_agreement)
        extra = []
        if args.ifeval_official_dir and args.ifeval_official_python:
            extra = ["--official-dir", str(args.ifeval_official_dir),
                     "--official-python", str(args.ifeval_official_python)]  # fmt: skip
        print("ifeval agreement with the official implementation:", flush=True)
        ok &= ifeval_agreement.main(["--input-data", str(args.ifeval_input), "--responses",
                                     str(args.ifeval_responses), *extra]) == 0  # fmt: skip
    if args.redteam:
        from pipeline.verify.redteam import run_attacks

        results = run_attacks()
        print(f"red team: {sum(r > 0 for _, r, _ in results)} of {len(results)} attacks scored "
              "above 0")  # fmt: skip
        for name, reward, reason in results:
            print(f"    {name:<28}reward {reward:.1f}  {reason[:70]}")
        ok &= all(r == 0 for _, r, _ in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

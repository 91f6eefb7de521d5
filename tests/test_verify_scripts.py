"""scripts/ifeval_agreement.py and scripts/verify_benchmarks.py on small hand-made files."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def ifeval_files(tmp_path):
    rows = [
        {"key": 1, "prompt": "p1", "instruction_id_list": ["punctuation:no_comma",
                                                            "detectable_format:title"],
         "kwargs": [{}, {}]},
        {"key": 2, "prompt": "p2", "instruction_id_list": ["length_constraints:number_words"],
         "kwargs": [{"num_words": 3, "relation": "at least", "language": None}]},
    ]  # fmt: skip
    responses = [{"prompt": "p1", "response": "Hello world <<T>>"},
                 {"prompt": "p2", "response": "one two"}]  # fmt: skip
    # Our verdicts by hand: p1 no comma and a title -> [True, True]; p2 has 2 words -> [False]
    # in both modes. The "official" files below agree on p1 and, in strict mode only, claim p2
    # is followed: 2 of 3 strict verdicts agree, 3 of 3 loose.
    strict = [{"prompt": "p1", "follow_instruction_list": [True, True]},
              {"prompt": "p2", "follow_instruction_list": [True]}]  # fmt: skip
    loose = [{"prompt": "p1", "follow_instruction_list": [True, True]},
             {"prompt": "p2", "follow_instruction_list": [False]}]  # fmt: skip
    return [str(write_jsonl(tmp_path / n, r)) for n, r in (
        ("input.jsonl", rows), ("responses.jsonl", responses), ("strict.jsonl", strict),
        ("loose.jsonl", loose))]  # fmt: skip


def test_ifeval_agreement_counts_by_hand(ifeval_files, capsys):
    inp, resp, strict, loose = ifeval_files
    mod = load_script("ifeval_agreement")
    args = ["--input-data", inp, "--responses", resp, "--official-strict", strict,
            "--official-loose", loose]  # fmt: skip
    assert mod.main(args) == 1  # 66.7% < 99.5%
    out = capsys.readouterr().out
    assert "prompts scored: 2 of 2 (instructions: 3)" in out
    assert "strict: instruction-level agreement 2/3 = 66.6667%" in out
    assert "loose: instruction-level agreement 3/3 = 100.0000%" in out
    assert "length_constraints:number_words: 1 of 1 differ" in out
    assert "prompt-level accuracy ours 0.5000, official 1.0000" in out
    assert "pipeline path (loader -> score, strict): prompt-level verdicts agree on 1/2" in out
    assert mod.main([*args, "--min-agreement", "0.6"]) == 0


def test_verify_benchmarks_gold_and_wrong(tmp_path, capsys):
    gsm = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "2 + 3?", "answer": "2 + 3 = <<2+3=5>>5\n#### 5"},
        {"question": "Ten times 100?", "answer": "10 * 100 = 1000\n#### 1,000"},
    ])
    he = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(he, "wt") as f:
        f.write(json.dumps({
            "task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Sum.\"\"\"\n",
            "entry_point": "add", "canonical_solution": "    return a + b\n",
            "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"}) + "\n")
    mbpp = write_jsonl(tmp_path / "mbpp.jsonl", [{
        "task_id": 7, "text": "Square a number.", "code": "def sq(x):\r\n  return x * x",
        "test_setup_code": "", "test_list": ["assert sq(3) == 9", "assert sq(-2) == 4"],
        "challenge_test_list": []}])
    mod = load_script("verify_benchmarks")
    args = ["--gsm8k", str(gsm), "--humaneval", str(he), "--mbpp", str(mbpp), "--workers", "0"]
    assert mod.main(args) == 0
    out = capsys.readouterr().out
    assert "gold correct     2/2 (100.0%)  wrong accepted    0/2" in out
    assert out.count("gold correct     1/1 (100.0%)  wrong accepted    0/1") == 2
    # A broken reference solution is reported and fails the run.
    bad = write_jsonl(tmp_path / "bad_mbpp.jsonl", [{
        "task_id": 8, "text": "Square a number.", "code": "def sq(x):\n  return x + x",
        "test_setup_code": "", "test_list": ["assert sq(3) == 9"], "challenge_test_list": []}])
    assert mod.main(["--mbpp", str(bad), "--workers", "0"]) == 1
    assert "gold rejected: 8: tests_failed 1/1" in capsys.readouterr().out

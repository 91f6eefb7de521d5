"""Benchmark files in their usual shapes, written here as fixtures; the loaded tasks are then
scored by the shared verifier against hand-written right and wrong answers."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.bench.loaders import BenchFileError, load_benchmark
from pipeline.schema import TASK, frame, validate
from pipeline.verify import score


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def right_wrong(task: dict, right: str, wrong: str) -> tuple[bool, bool]:
    return score(task, right).correct, score(task, wrong).correct


def test_aime_jsonl(tmp_path):
    f = write_jsonl(tmp_path / "aime.jsonl", [
        {"problem": "Find the number of ...", "answer": 204, "id": "2024-I-1"},
        {"problem": "Compute x.", "answer": "033"},
    ])
    got = load_benchmark(f, "aime", "aime24")
    assert len(got.tasks) == 2 and got.skipped == {}
    t = got.tasks[0]
    assert (t["domain"], t["source"], t["split"]) == ("math", "bench:aime24", "bench")
    assert json.loads(t["reference"]) == {"answer": "204"}
    assert t["prompt"].endswith("within \\boxed{}.")
    validate(frame(got.tasks, TASK), TASK, "aime")
    assert right_wrong(t, "<think>...</think>\\boxed{204}", "<think></think>\\boxed{205}") == (
        True, False)


def test_gsm8k_hash_line(tmp_path):
    f = write_jsonl(tmp_path / "gsm8k.jsonl", [{
        "question": "Natalia sold clips to 48 of her friends ...",
        "answer": "She sold 48/2 = <<48/2=24>>24 in May.\n48+24 = <<48+24=72>>72\n#### 1,072",
    }])
    t = load_benchmark(f, "gsm8k", "gsm8k").tasks[0]
    assert json.loads(t["reference"]) == {"answer": "1072"}  # thousands separator dropped
    assert right_wrong(t, "\\boxed{1072}", "\\boxed{72}") == (True, False)
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(BenchFileError, match=r"bad.jsonl: row 0: field 'answer': no '####"):
        load_benchmark(bad, "gsm8k", "gsm8k")


def test_math500_parquet(tmp_path):
    f = tmp_path / "math500.parquet"
    pl.DataFrame({
        "problem": ["What is 1/2 + 0?"], "solution": ["It is $\\frac{1}{2}$."],
        "answer": ["\\frac{1}{2}"], "subject": ["Algebra"], "level": [1],
        "unique_id": ["test/algebra/1.json"],
    }).write_parquet(f)
    t = load_benchmark(f, "math500", "math500").tasks[0]
    assert json.loads(t["meta"]) == {"level": 1, "subject": "Algebra",
                                     "unique_id": "test/algebra/1.json"}
    assert right_wrong(t, "\\boxed{0.5}", "\\boxed{\\frac{1}{3}}") == (True, False)
    missing = tmp_path / "m.json"
    missing.write_text(json.dumps([{"problem": "p", "answer": "1"}]))
    with pytest.raises(BenchFileError, match=r"m.json: row 0: field 'solution': missing"):
        load_benchmark(missing, "math500", "math500")


def test_ifeval_maps_ids_and_skips_unknown(tmp_path):
    f = write_jsonl(tmp_path / "ifeval.jsonl", [
        {"key": 1, "prompt": "Write about cats in lowercase, no commas, under 20 words.",
         "instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma",
                                 "length_constraints:number_words"],
         "kwargs": [{}, {}, {"relation": "less than", "num_words": 20}]},
        {"key": 2, "prompt": "Mention sun and river; end with 'Is there anything else?'",
         "instruction_id_list": ["keywords:existence", "startend:end_checker"],
         "kwargs": [{"keywords": ["sun", "river"]}, {"end_phrase": "Is there anything else?"}]},
        {"key": 3, "prompt": "Answer in French.",
         "instruction_id_list": ["language:response_language"], "kwargs": [{"language": "fr"}]},
        {"key": 4, "prompt": "Two responses please.",
         "instruction_id_list": ["combination:two_responses"], "kwargs": [{}]},
    ])
    got = load_benchmark(f, "ifeval", "ifeval")
    assert len(got.tasks) == 2
    assert got.skipped == {"unknown_instruction:language:response_language": 1,
                           "unknown_instruction:combination:two_responses": 1}
    first, second = got.tasks
    assert json.loads(first["reference"])["constraints"] == [
        {"kind": "lowercase"}, {"kind": "forbidden_chars", "chars": [","]},
        {"kind": "word_count", "max": 19}]
    assert right_wrong(first, "cats sleep a lot and purr softly.",
                       "Cats sleep, purr and play.") == (True, False)
    assert right_wrong(second, "The sun shines on the river. Is there anything else?",
                       "The sun shines. Is there anything else?") == (True, False)
    with pytest.raises(BenchFileError, match="language:response_language"):
        load_benchmark(f, "ifeval", "ifeval", on_unknown="error")


def test_ifeval_bad_kwargs_names_row_and_field(tmp_path):
    f = write_jsonl(tmp_path / "if.jsonl", [
        {"prompt": "p", "instruction_id_list": ["keywords:existence"], "kwargs": [{}]}])
    with pytest.raises(BenchFileError, match=r"row 0: kwargs\[0\]: field 'kwargs': missing"):
        load_benchmark(f, "ifeval", "ifeval")


@pytest.mark.parametrize("shape", ["mbpp", "humaneval", "plain"])
def test_code_shapes(tmp_path, shape):
    rows = {
        "mbpp": {"text": "Write a function to add two numbers.",
                 "test_list": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]},
        "humaneval": {"prompt": "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n",
                      "entry_point": "add",
                      "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"},
        "plain": {"prompt": "Add two numbers.", "entry_point": "add",
                  "tests": ["assert add(2, 2) == 4"]},
    }[shape]
    f = write_jsonl(tmp_path / "code.jsonl", [rows])
    t = load_benchmark(f, "code", "code").tasks[0]
    ref = json.loads(t["reference"])
    assert t["domain"] == "code" and ref["entry_point"] == "add"
    good = "<think>add</think>\n```python\ndef add(a, b):\n    return a + b\n```"
    bad = "<think>add</think>\n```python\ndef add(a, b):\n    return a - b\n```"
    assert right_wrong(t, good, bad) == (True, False)


def test_file_level_errors(tmp_path):
    with pytest.raises(BenchFileError, match="file not found"):
        load_benchmark(tmp_path / "nope.jsonl", "aime", "x")
    f = tmp_path / "broken.jsonl"
    f.write_text('{"problem": "p", "answer": 1}\n{not json\n')
    with pytest.raises(BenchFileError, match=r"broken.jsonl: row 1: invalid JSON"):
        load_benchmark(f, "aime", "x")
    with pytest.raises(BenchFileError, match="unknown benchmark shape 'mmlu'"):
        load_benchmark(write_jsonl(tmp_path / "a.jsonl", [{}]), "mmlu", "x")
    with pytest.raises(BenchFileError, match=r"row 0: field 'answer': empty"):
        load_benchmark(write_jsonl(tmp_path / "e.jsonl", [{"problem": "p", "answer": " "}]),
                       "aime", "x")

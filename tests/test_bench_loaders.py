"""Benchmark files in their usual shapes, written here as fixtures; the loaded tasks are then
scored by the shared verifier against hand-written right and wrong answers."""

from __future__ import annotations

import base64
import gzip
import json
import pickle
import zlib
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


def test_ifeval_maps_all_ids_and_counts_unknown_ones(tmp_path):
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
        {"key": 4, "prompt": "Two responses please, in two made-up formats.",
         "instruction_id_list": ["combination:two_responses", "format:haiku", "format:sonnet"],
         "kwargs": [{}, {}, {}]},
        {"key": 5, "prompt": "A haiku.", "instruction_id_list": ["format:haiku"],
         "kwargs": [{"num_words": None}]},
    ])
    got = load_benchmark(f, "ifeval", "ifeval")
    assert len(got.tasks) == 3  # rows 3 and 4 name ids no one defines: skipped and counted
    assert got.skipped == {"unknown_instruction:format:haiku": 2,
                           "unknown_instruction:format:sonnet": 1, "rows": 2}
    first, second, french = got.tasks
    assert json.loads(first["reference"]) == {"mode": "strict", "constraints": [
        {"kind": "change_case:english_lowercase", "kwargs": {}},
        {"kind": "punctuation:no_comma", "kwargs": {}},
        {"kind": "length_constraints:number_words",
         "kwargs": {"relation": "less than", "num_words": 20}}]}
    assert right_wrong(first, "cats sleep a lot and purr softly in the warm sun.",
                       "Cats sleep, purr and play.") == (True, False)
    assert right_wrong(second, "The sun shines on the river. Is there anything else?",
                       "The sun shines. Is there anything else?") == (True, False)
    assert right_wrong(french, "Le chat dort sur le canapé depuis ce matin.",
                       "The cat has been asleep on the sofa since this morning.") == (True, False)
    with pytest.raises(BenchFileError, match="row 3: field 'instruction_id_list'.*format:haiku"):
        load_benchmark(f, "ifeval", "ifeval", on_unknown="error")


def test_ifeval_bad_kwargs_names_row_and_field(tmp_path):
    f = write_jsonl(tmp_path / "if.jsonl", [
        {"prompt": "p", "instruction_id_list": ["keywords:existence"], "kwargs": [{}]}])
    with pytest.raises(BenchFileError, match=r"row 0: kwargs\[0\]: field 'kwargs'.*keywords"):
        load_benchmark(f, "ifeval", "ifeval")
    f = write_jsonl(tmp_path / "if2.jsonl", [
        {"prompt": "p", "instruction_id_list": ["length_constraints:number_words"],
         "kwargs": [{"num_words": 5, "relation": "at most"}]}])
    with pytest.raises(BenchFileError, match=r"row 0: kwargs\[0\].*relation='at most'"):
        load_benchmark(f, "ifeval", "ifeval")


@pytest.mark.parametrize("shape", ["mbpp", "humaneval", "plain"])
def test_code_shapes(tmp_path, shape):
    rows = {
        "mbpp": {"text": "Write a function to add two numbers.",
                 "code": "def add(x, y):\n  return x + y",
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


GOOD_ADD = "<think>add</think>\n```python\ndef add(a, b):\n    return a + b\n```"
BAD_ADD = "<think>add</think>\n```python\ndef add(a, b):\n    return a - b\n```"


def test_jsonl_gz_as_published(tmp_path):
    rows = [{"task_id": "HumanEval/0", "prompt": "def add(a, b):\n    \"\"\"Add.\"\"\"\n",
             "entry_point": "add", "canonical_solution": "    return a + b\n",
             "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}]
    f = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as out:
        out.write("".join(json.dumps(r) + "\n" for r in rows))
    t = load_benchmark(f, "code", "humaneval").tasks[0]
    assert json.loads(t["meta"]) == {"task_id": "HumanEval/0"}
    assert right_wrong(t, GOOD_ADD, BAD_ADD) == (True, False)
    # The same bytes without the .gz suffix: an error naming the file and the row, not a bare
    # UnicodeDecodeError.
    plain = tmp_path / "HumanEval.jsonl"
    plain.write_bytes(f.read_bytes())
    with pytest.raises(BenchFileError, match=r"HumanEval.jsonl: row 0: not UTF-8.*\.gz suffix"):
        load_benchmark(plain, "code", "humaneval")
    broken = tmp_path / "cut.jsonl.gz"
    broken.write_bytes(f.read_bytes()[:30])
    with pytest.raises(BenchFileError, match=r"cut.jsonl.gz: row 0: unreadable"):
        load_benchmark(broken, "code", "humaneval")


def test_mbpp_full_setup_code_and_entry_from_the_solution(tmp_path):
    # Shaped like MBPP task 367: a Node class in the solution, trees built by test_setup_code.
    code = ("class Node:\n    def __init__(self, data):\n        self.data = data\n"
            "        self.left = self.right = None\n"
            "def height(node):\n    if node is None:\n        return 0\n"
            "    return 1 + max(height(node.left), height(node.right))\n")
    rows = [{"task_id": 927, "text": "Write a function to find the height of a tree.", "code": code,
             "test_setup_code": "root = Node(1)\r\nroot.left = Node(2)\r\nroot.left.left = Node(3)",
             "test_list": ["assert (height(root)) == 3", "assert height(None) == 0"],
             "challenge_test_list": []},
            # The first call in the tests is int(...), not the function (MBPP has such rows).
            {"task_id": 1, "text": "Double a number given as text.", "test_setup_code": "",
             "code": "def double(s):\n  return 2 * int(s)", "challenge_test_list": [],
             "test_list": ["assert int(double('4')) == 8", "assert double('0') == 0"]}]
    f = write_jsonl(tmp_path / "mbpp.jsonl", rows)
    tree, double = load_benchmark(f, "code", "mbpp").tasks
    ref = json.loads(tree["reference"])
    assert ref["entry_point"] == "height" and "root = Node(1)" in ref["setup"]
    assert "assert (height(root)) == 3" in tree["prompt"]  # MBPP's prompt lists the tests
    answer = "<think>.</think>\n```python\n" + code + "```"
    wrong = answer.replace("return 1 + max", "return 2 + max")
    assert right_wrong(tree, answer, wrong) == (True, False)
    assert json.loads(double["reference"])["entry_point"] == "double"
    fence = "<think>.</think>\n```python\ndef double(s):\n    return {}\n```"
    assert right_wrong(double, fence.format("2 * int(s)"), fence.format("int(s)")) == (True, False)


def test_mbpp_sanitized_json_with_test_imports(tmp_path):
    rows = [{"source_file": "x.ipynb", "task_id": 2, "prompt": "Write a function for a root.",
             "code": "import math\ndef root(x):\n    return math.sqrt(x)",
             "test_imports": ["import math"],
             "test_list": ["assert math.isclose(root(2), 1.41421356, rel_tol=1e-6)"]}]
    f = tmp_path / "sanitized-mbpp.json"
    f.write_text(json.dumps(rows, indent=4))
    t = load_benchmark(f, "code", "mbpp_sanitized").tasks[0]
    ref = json.loads(t["reference"])
    assert (ref["entry_point"], ref["imports"]) == ("root", "import math\n")
    ok = "```python\nimport math\ndef root(x):\n    return math.sqrt(x)\n```"
    assert right_wrong(t, ok, ok.replace("math.sqrt(x)", "x / 2")) == (True, False)


def _lcb_compress(cases: list[dict]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def test_livecodebench_stdin_and_functional(tmp_path):
    stdin_cases = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    private = [{"input": "10 -4\n", "output": "6\n", "testtype": "stdin"}]
    functional = [{"input": "[1, 2, 3]\n2", "output": "4", "testtype": "functional"}]
    rows = [{"question_title": "A+B", "question_content": "Read two integers, print the sum.",
             "platform": "atcoder", "question_id": "abc1", "starter_code": "",
             "public_test_cases": json.dumps(stdin_cases),
             "private_test_cases": _lcb_compress(private), "metadata": "{}"},
            {"question_title": "Sum minus", "question_content": "Sum of nums minus k.",
             "platform": "leetcode", "question_id": "lc1",
             "starter_code": "class Solution:\n    def solve(self, nums, k):\n        ",
             "public_test_cases": json.dumps(functional), "private_test_cases": "",
             "metadata": json.dumps({"func_name": "solve"})}]
    f = write_jsonl(tmp_path / "lcb.jsonl", rows)
    io_task, fn_task = load_benchmark(f, "code", "lcb").tasks
    assert json.loads(io_task["reference"]) == {"limits": {"cpu_s": 10, "wall_s": 20.0}, "io": [
        {"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"}]}
    prog = "<think>.</think>\n```python\na, b = map(int, input().split())\nprint({})\n```"
    assert right_wrong(io_task, prog.format("a + b"), prog.format("a * b")) == (True, False)
    sol = ("<think>.</think>\n```python\nclass Solution:\n    def solve(self, nums, k):\n"
           "        return {}\n```")
    assert right_wrong(fn_task, sol.format("sum(nums) - k"), sol.format("sum(nums)")) == (
        True, False)


def test_livecodebench_compressed_cases_admit_no_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    f = write_jsonl(tmp_path / "lcb.jsonl", [{"question_content": "q", "public_test_cases": "[]",
                                              "private_test_cases": payload}])
    with pytest.raises(BenchFileError, match=r"row 0: field 'private_test_cases'"):
        load_benchmark(f, "code", "lcb")


@pytest.mark.parametrize("row,message", [
    ({"text": "t", "code": "def f(x):\n  return x", "test_list": ["assert g(1) == 1"]},
     r"row 0: field 'code': none of its functions \['f'\] is called"),
    ({"text": "t", "code": "def f(x):\n  return x", "test_list": []},
     r"row 0: field 'test_list': empty list"),
    ({"text": "t", "test_list": ["assert f(1) == 1"]}, r"row 0: field 'code': missing"),
    ({"prompt": "p", "entry_point": "f", "test": ["x"]}, r"row 0: field 'test': expected str"),
    ({"question_content": "q", "public_test_cases": "[{\"input\": 1}]"},
     r"row 0: field 'public_test_cases\[0\]': need string 'input' and 'output'"),
    ({"question_content": "q", "public_test_cases": "[]"}, r"row 0: field 'public_test_cases'"),
    ({"question_content": "q", "public_test_cases": json.dumps(
        [{"input": "1", "output": "1", "testtype": "functional"}]), "metadata": "{}"},
     r"row 0: field 'metadata.func_name'"),
    ({"prompt": "p"}, r"row 0: not a code row"),
])  # fmt: skip
def test_malformed_code_rows_name_file_row_and_field(tmp_path, row, message):
    f = write_jsonl(tmp_path / "bad.jsonl", [row])
    with pytest.raises(BenchFileError, match=r"bad.jsonl: " + message):
        load_benchmark(f, "code", "x")

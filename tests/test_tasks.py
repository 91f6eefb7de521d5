"""Task generators and teachers: determinism, knobs, schema, and 100% teacher acceptance."""

from __future__ import annotations

import json
import re

import pytest

from pipeline import schema
from pipeline.tasks import DOMAINS, KNOBS, generate, open_qa, teacher_trace
from pipeline.tasks import code as code_tasks
from pipeline.verify import games, ifeval
from pipeline.verify import math as vmath
from pipeline.verify.answer import final_answer

CHECK = {"math": vmath.check, "ifeval": ifeval.check, **games.CHECKERS}

# (domain, knobs, n): the easy defaults many times, harder settings fewer times.
ACCEPTANCE = [
    ("math", {}, 600),
    ("math", {"kinds": ("word", "expr", "linear"), "ops": ("+", "-", "*"), "num_ops": 3,
              "max_operand": 99}, 300),
    ("countdown", {}, 1000),
    ("countdown", {"count": 5, "max_number": 25, "ops": ("+", "-", "*", "/")}, 150),
    ("sudoku", {}, 1000),
    ("sudoku", {"size": 6, "blanks": 18}, 150),
    ("sudoku", {"size": 9, "blanks": 45}, 40),
    ("knights_knaves", {}, 1000),
    ("knights_knaves", {"people": 4}, 200),
    ("ifeval", {}, 1000),
    ("ifeval", {"min_constraints": 2, "max_constraints": 3}, 1000),
]


def answer_of(trace: str) -> str:
    assert trace.startswith("<think>\n") and trace.count("</think>") == 1
    text, problem = final_answer(trace)
    assert problem is None
    return text


def test_domains_match_schema():
    assert set(DOMAINS) == set(schema.REASONING_DOMAINS) | set(schema.GENERAL_DOMAINS)
    assert set(KNOBS) == set(DOMAINS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_deterministic_per_seed_and_varied(domain):
    a, b = generate(domain, 20, seed=3), generate(domain, 20, seed=3)
    assert a == b
    other = generate(domain, 20, seed=4)
    assert [t["id"] for t in a] != [t["id"] for t in other]
    assert len({t["id"] for t in a}) >= 10  # not one task repeated
    assert generate(domain, 5, seed=3) == a[:5]  # n only truncates
    df = schema.frame(a, schema.TASK)  # schema-valid records
    assert df.height == 20 and set(df["source"]) == {f"gen:{domain}"}
    for t in a:
        assert t["id"] == schema.task_id(domain, t["prompt"], t["reference"])
        assert json.loads(t["meta"])["knobs"] == json.loads(json.dumps(dict(KNOBS[domain])))


@pytest.mark.parametrize("domain", DOMAINS)
def test_unknown_knob_is_an_error(domain):
    with pytest.raises(ValueError, match="no_such_knob"):
        generate(domain, 1, seed=0, no_such_knob=1)


@pytest.mark.parametrize("domain,knobs,name", [
    ("math", {"kinds": ("calculus",)}, "kinds"), ("math", {"max_operand": 1}, "max_operand"),
    ("countdown", {"count": 9}, "count"), ("sudoku", {"size": 5}, "size"),
    ("sudoku", {"blanks": 17}, "blanks"), ("knights_knaves", {"people": 7}, "people"),
    ("code", {"families": ("nope",)}, "families"), ("ifeval", {"kinds": ("haiku",)}, "kinds"),
    ("ifeval", {"max_constraints": 4}, "max_constraints"), ("sudoku", {"size": "4"}, "size"),
    ("countdown", {"count": True}, "count"), ("math", {"kinds": "word"}, "kinds"), ("open_qa", {"categories": ()},
                                                            "categories"),
])
def test_bad_knob_value_names_the_knob(domain, knobs, name):
    with pytest.raises(ValueError, match=name):
        generate(domain, 1, seed=0, **knobs)


def test_knobs_from_json_lists():
    assert generate("math", 3, seed=0, ops=["+"]) == generate("math", 3, seed=0, ops=("+",))


def test_unknown_domain():
    with pytest.raises(ValueError, match="chess"):
        generate("chess", 1, seed=0)


def test_knobs_change_the_tasks():
    big = generate("math", 50, seed=1, max_operand=1000, kinds=("expr",), ops=("*",))
    nums = [int(x) for t in big for x in re.findall(r"\d+", t["prompt"].split("\n")[0])]
    assert max(nums) > 100
    s9 = generate("sudoku", 3, seed=1, size=9, blanks=30)
    assert all(json.loads(t["reference"])["puzzle"].count("0") == 30 for t in s9)
    kk = generate("knights_knaves", 3, seed=1, people=4)
    assert all(len(json.loads(t["reference"])["names"]) == 4 for t in kk)
    cd = generate("countdown", 3, seed=1, count=5)
    assert all(len(json.loads(t["reference"])["numbers"]) == 5 for t in cd)


@pytest.mark.parametrize("domain,knobs,n", ACCEPTANCE)
def test_teacher_always_accepted(domain, knobs, n):
    for task in generate(domain, n, seed=11, **knobs):
        ref = json.loads(task["reference"])
        score = CHECK[domain](ref, answer_of(teacher_trace(task)))
        assert score.correct and score.reward == 1.0, (task["prompt"], teacher_trace(task), score)


def _easy_words(domain: str) -> int:
    return max(len(teacher_trace(t).split()) for t in generate(domain, 200, seed=5))


@pytest.mark.parametrize("domain", DOMAINS)
def test_easy_traces_are_short(domain):
    # whitespace words; our byte-level BPE makes roughly 1-3 tokens of each
    assert _easy_words(domain) <= 60


def test_math_reference_matches_hand_solution():
    # "Solve for x: a x + b = c": check x by substituting back, independently of the generator.
    for t in generate("math", 100, seed=2, kinds=("linear",), max_operand=30):
        a, sign, b, c = re.search(r"(\d+)x ([+-]) (\d+) = (-?\d+)", t["prompt"]).groups()
        x = int(json.loads(t["reference"])["answer"])
        assert int(a) * x + (int(b) if sign == "+" else -int(b)) == int(c)
    for t in generate("math", 100, seed=2, kinds=("expr",), ops=("+", "-", "*"), num_ops=3):
        expr = t["prompt"].split("\n")[0].removeprefix("Compute ").rstrip(".")
        assert eval(expr) == int(json.loads(t["reference"])["answer"])  # Python precedence


def test_word_problem_text():
    t = generate("math", 1, seed=0, ops=("+",))[0]
    a, b = map(int, re.findall(r"\d+", t["prompt"].split("\n")[0]))
    assert json.loads(t["reference"])["answer"] == str(a + b)
    assert t["prompt"].endswith("put your final answer within \\boxed{}.")


def test_countdown_has_a_solution_and_teacher_solves_user_tasks():
    assert teacher_trace({"domain": "countdown", "reference": {"numbers": [3, 5, 2],
                          "target": 16}}).endswith("}")
    with pytest.raises(ValueError, match="no solution"):
        teacher_trace({"domain": "countdown", "reference": {"numbers": [1, 1], "target": 7}})


def test_sudoku_teacher_uses_candidates():
    task = {"domain": "sudoku", "reference": {"puzzle": "1234341221434301", "size": 4}}
    trace = teacher_trace(task)
    # r4c3 must be 2: row 4 has 4 3 1, column 3 has 3 1 4.
    assert "r4c3: not 1 3 4 -> 2" in trace
    assert answer_of(trace).splitlines()[-1] == "4321"


def test_knights_unique_solution_by_brute_force():
    from pipeline.tasks.knights import holds

    for t in generate("knights_knaves", 100, seed=9, people=3):
        ref = json.loads(t["reference"])
        ok = []
        for mask in range(8):
            roles = tuple(bool(mask >> i & 1) for i in range(3))
            if all(holds(s["claim"], s["speaker"], roles) == roles[s["speaker"]]
                   for s in ref["statements"]):
                ok.append(roles)
        assert len(ok) == 1


def test_code_teacher_passes_its_tests():
    knobs = {"families": tuple(code_tasks.FAMILIES), "num_tests": 4}
    for task in generate("code", 400, seed=4, **knobs):
        ref = json.loads(task["reference"])
        program = re.findall(r"```python\n(.*?)```", teacher_trace(task), re.S)[-1]
        env: dict = {}
        exec(program, env)  # noqa: S102 - our own teacher's code
        for test in ref["tests"]:
            exec(test, env)  # noqa: S102
        assert ref["entry_point"] in env


def test_code_reference_values_by_hand():
    fam = code_tasks.FAMILIES
    assert fam["sum_parity"].ref([1, 2, 4, 7], {"r": 0}) == 6
    assert fam["sum_parity"].ref([1, 2, 4, 7], {"r": 1}) == 8
    assert fam["count_if"].ref([1, 5, 3, 9], {"cmp": "gt", "k": 3}) == 2
    assert fam["count_if"].ref([1, 5, 3, 9], {"cmp": "le", "k": 3}) == 2
    assert fam["keep_if"].ref([4, 1, 7, 4], {"cmp": "eq", "k": 4}) == [4, 4]
    assert fam["affine"].ref([0, 2], {"m": 3, "c": 1}) == [1, 7]
    assert fam["top_k"].ref([3, 9, 1, 5], {"j": 2}) == [9, 5]
    assert fam["first_if"].ref([1, 2], {"cmp": "ge", "k": 5}) == -1
    assert fam["replace_char"].ref("abca", {"ch": "a", "ch2": "z"}) == "zbcz"
    assert fam["last_k"].ref("ab", {"j": 3}) == "ab"
    assert fam["sum_multiples"].ref(10, {"d": 3}) == 18
    assert fam["reverse_text"].ref("abc", {}) == "cba"
    assert fam["factorial"].ref(5, {}) == 120
    assert fam["sum_to"].ref(4, {}) == 10
    assert fam["is_palindrome"].ref("abba", {}) is True
    assert fam["count_vowels"].ref("banana", {}) == 3
    assert fam["max_or"].ref([], {"e": -1}) == -1


def test_corrupted_code_fails_its_tests():
    meta = {"family": "sum_parity", "name": "sum_even", "arg": "xs", "params": {"r": 0}}
    task = {"domain": "code", "reference": {}, "meta": meta}
    program = teacher_trace(task).split("```python\n")[1].split("```")[0]
    env: dict = {}
    exec(program.replace("== 0", "== 1"), env)  # noqa: S102 - sums the odd numbers instead
    assert env["sum_even"]([1, 2, 4]) == 1


def test_open_qa_bank_and_teacher():
    assert sum(len(v) for v in open_qa.BANK.values()) >= 2000
    tasks = generate("open_qa", 600, seed=1)
    assert len({t["prompt"] for t in tasks}) >= 500
    for t in tasks:
        assert answer_of(teacher_trace(t)) == json.loads(t["reference"])["answer"]
    paris = [t for t in tasks if "capital of France" in t["prompt"]]
    assert all("Paris" in t["reference"] for t in paris)


CORRUPT = {
    "math": lambda a, ref: a.replace("{" + ref["answer"] + "}", "{" + str(int(ref["answer"]) + 1)
                                     + "}"),
    "countdown": lambda a, ref: re.sub(r" [-+*/] ", lambda m: {" + ": " - ", " - ": " + ",
                                       " * ": " + ", " / ": " * "}[m.group()], a, count=1),
    "knights_knaves": lambda a, ref: a.replace("knight", "KNAVE").replace("knave", "knight")
    .replace("KNAVE", "knave"),
}


@pytest.mark.parametrize("domain", ["math", "countdown", "knights_knaves", "sudoku"])
def test_corrupted_traces_rejected(domain):
    rejected = 0
    tasks = generate(domain, 200, seed=13)
    for task in tasks:
        ref = json.loads(task["reference"])
        good = answer_of(teacher_trace(task))
        if domain == "sudoku":  # swap two different digits in the first row
            lines = good.splitlines()
            row = lines[0]
            i = next(i for i in range(1, len(row)) if row[i] != row[0])
            lines[0] = row[i] + row[1:i] + row[0] + row[i + 1 :]
            bad = "\n".join(lines)
        else:
            bad = CORRUPT[domain](good, ref)
        assert bad != good
        rejected += not CHECK[domain](ref, bad).correct
    if domain == "countdown":  # a swapped operator can hit the target by chance (2 + 2 = 2 * 2)
        assert rejected >= 190
    else:
        assert rejected == len(tasks)

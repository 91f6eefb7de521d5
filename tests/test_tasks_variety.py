"""Variety of the code and open_qa generators: many distinct prompts (so curate's dedup keeps
a real pool), teachers still 100% correct, determinism, and prompts that carry the parameters."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from pipeline.curation.config import DedupParams
from pipeline.curation.dedup import exact_dedup, near_dedup, sketch
from pipeline.curation.normalize import normalize, normalize_series, numbers_key_expr
from pipeline.schema import TASK
from pipeline.tasks import code as code_tasks
from pipeline.tasks import generate, open_qa, teacher_trace
from pipeline.verify import code as vcode


def _program(task: dict) -> str:
    return re.findall(r"```python\n(.*?)```", teacher_trace(task), re.S)[-1]


def _run_tests(task: dict) -> None:
    ref = json.loads(task["reference"])
    env: dict = {}
    exec(_program(task), env)  # noqa: S102 - our own teacher's code
    assert ref["entry_point"] in env
    for test in ref["tests"]:
        exec(test, env)  # noqa: S102


@pytest.fixture(scope="module")
def code_2000() -> list[dict]:
    return generate("code", 2000, seed=0)


@pytest.fixture(scope="module")
def qa_2000() -> list[dict]:
    return generate("open_qa", 2000, seed=0)


def test_code_many_distinct_prompts(code_2000):
    prompts = [t["prompt"] for t in code_2000]
    assert len(set(prompts)) >= 1500
    assert len(set(normalize(prompts))) >= 1500  # curate's normalisation keeps them apart
    # the task itself (family + parameters), not only its wording, varies a lot
    metas = [json.loads(t["meta"]) for t in code_2000]
    semantic = {(m["family"], json.dumps(m["params"], sort_keys=True)) for m in metas}
    assert len(semantic) >= 400
    assert {m["family"] for m in metas} == set(code_tasks.FAMILIES)


def test_open_qa_many_distinct_questions(qa_2000):
    assert sum(len(f[0]) for v in open_qa.BANK.values() for f in v) >= 5000
    assert len({t["prompt"] for t in qa_2000}) >= 1500
    assert len(set(normalize([t["prompt"] for t in qa_2000]))) >= 1500
    assert {json.loads(t["meta"])["category"] for t in qa_2000} == set(open_qa.CATEGORIES)


def _survivors(tasks: list[dict]) -> int:
    """Rows left after curate's exact + MinHash/LSH near-dup dedup (default parameters)."""
    df = pl.DataFrame([{**t, "origin": "g", "role": "train"} for t in tasks],
                      schema={**TASK, "origin": pl.String, "role": pl.String})
    df = df.with_columns(norm=normalize_series(df["prompt"]))
    df = df.with_columns(numkey=numbers_key_expr("norm"))
    kept, _ = exact_dedup(df)
    kept = kept.sort("id")
    sig, counts = sketch(kept["norm"], DedupParams())
    return near_dedup(kept, sig, counts, DedupParams())[0].height


@pytest.mark.parametrize("domain,n,least", [("code", 500, 400), ("open_qa", 600, 520)])
def test_pool_survives_curate_dedup(domain, n, least):
    # params.yaml draws 500 code and 600 open_qa tasks; before the rewrite ~11 / 245 survived
    assert _survivors(generate(domain, n, seed=0)) >= least


def test_code_teacher_passes_all_default_tasks(code_2000):
    for task in code_2000:
        _run_tests(task)


def test_code_teacher_passes_harder_settings():
    for task in generate("code", 400, seed=7, num_tests=6, max_len=9, max_value=30):
        _run_tests(task)


def test_code_teacher_accepted_by_the_sandbox_verifier():
    for task in generate("code", 4, seed=2):  # the real checker (subprocess sandbox), a few
        score = vcode.check(json.loads(task["reference"]), teacher_trace(task).split("</think>")[-1])
        assert score.correct, (task["prompt"], score)


def test_code_prompt_carries_the_parameters(code_2000):
    for task in code_2000:
        meta, ref = json.loads(task["meta"]), json.loads(task["reference"])
        assert f"{ref['entry_point']}({meta['arg']})" in task["prompt"]
        p = meta["params"]
        for key in ("k", "d", "m", "c", "j", "e"):
            if key in p:
                assert re.search(rf"(?<![\d-]){p[key]}(?!\d)", task["prompt"]), (key, task["prompt"])
        for key in ("ch", "ch2"):
            if key in p:
                assert f"'{p[key]}'" in task["prompt"]
        if "cmp" in p:
            assert code_tasks.CMPS[p["cmp"]][1] in task["prompt"]


def test_code_traces_short_and_templated(code_2000):
    words = [len(teacher_trace(t).split()) for t in code_2000]
    assert max(words) <= 45 and sum(words) / len(words) <= 30
    # think: the signature, then the plan; then the fenced program
    assert all(teacher_trace(t).count("\n") <= 10 for t in code_2000)
    assert all(teacher_trace(t).split("\n")[1].startswith("def ") for t in code_2000)


@pytest.mark.parametrize("domain", ["code", "open_qa"])
def test_deterministic_and_seed_dependent(domain):
    a = generate(domain, 300, seed=5)
    assert a == generate(domain, 300, seed=5)
    assert generate(domain, 50, seed=5) == a[:50]
    assert [teacher_trace(t) for t in a] == [teacher_trace(t) for t in generate(domain, 300, 5)]
    b = generate(domain, 300, seed=6)
    assert len({t["prompt"] for t in a} & {t["prompt"] for t in b}) < 150


def test_code_family_knob_restricts_and_rejects():
    tasks = generate("code", 100, seed=1, families=("count_if", "replace_char"))
    assert {json.loads(t["meta"])["family"] for t in tasks} == {"count_if", "replace_char"}
    with pytest.raises(ValueError, match="families"):
        generate("code", 1, seed=0, families=("count_greater_than",))
    with pytest.raises(ValueError, match="max_len"):
        generate("code", 1, seed=0, max_len=0)


def test_open_qa_teacher_answer_is_reference(qa_2000):
    for t in qa_2000:
        trace = teacher_trace(t)
        assert trace.split("</think>\n")[-1] == json.loads(t["reference"])["answer"]
        assert len(trace.split()) <= 40


def test_open_qa_one_answer_per_question():
    answer: dict[str, str] = {}
    for facts in open_qa.BANK.values():
        for phrasings, ref, _ in facts:
            for q in phrasings:
                assert answer.setdefault(q, ref) == ref, q
            assert ref.lower().strip(".") not in ("yes", "no", "true", "false")


def test_open_qa_facts_by_hand():
    assert open_qa.number_words(42) == "forty-two"
    assert open_qa.number_words(105) == "one hundred five"
    assert open_qa.number_words(13) == "thirteen"
    refs = {ph[0]: ref for facts in open_qa.BANK.values() for ph, ref, _ in facts}
    assert refs["What is seven plus five?"] == "Seven plus five is twelve."
    assert refs["What is nine times eight?"] == "Nine times eight is seventy-two."
    assert refs["What is the past tense of 'go'?"] == "The past tense of 'go' is 'went'."
    assert refs["How many centimeters are in 3 meters?"] == "3 meters equal 300 centimeters."
    assert refs["What day comes after Sunday?"] == "The day after Sunday is Monday."
    assert refs["What is the opposite of 'cold'?"] == "The opposite of 'cold' is 'hot'."
    assert refs["What is the singular of 'mice'?"] == "The singular of 'mice' is 'mouse'."
    assert refs["Of which country is Paris the capital?"] == "Paris is the capital of France."
    assert not any(r.startswith("What is twelve minus fifteen") for r in refs)  # no negatives


def test_open_qa_categories_knob():
    tasks = generate("open_qa", 100, seed=3, categories=("arithmetic", "unit"))
    assert {json.loads(t["meta"])["category"] for t in tasks} == {"arithmetic", "unit"}
    with pytest.raises(ValueError, match="categories"):
        generate("open_qa", 1, seed=0, categories=("trivia",))

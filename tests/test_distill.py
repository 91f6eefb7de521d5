"""distill: every filter with its named reason, per-prompt cap, stats, and the stage's files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipeline.schema import TASK, TRACE, frame, make_task
from pipeline.stages.distill import (
    Candidate,
    DistillParams,
    distill,
    has_loop,
    is_truncated,
    main,
)
from pipeline.verify.result import Score


def test_has_loop_by_hand():
    # "a b c" occurs 3 times as a 3-gram: a loop when more than 2 repeats are allowed? no: 3 > 2
    assert has_loop("a b c a b c a b c", n=3, max_repeats=2)
    assert not has_loop("a b c a b c a b c", n=3, max_repeats=3)
    assert not has_loop("one two", n=3, max_repeats=0)  # shorter than n: no n-grams


def test_is_truncated():
    assert is_truncated(Candidate("<think>x", "stop"))  # never closed
    assert is_truncated(Candidate("<think>x</think>42", "length"))  # hit the limit
    assert not is_truncated(Candidate("<think>x</think>42", "stop"))


def toy_tasks() -> list[dict]:
    return [make_task("math", f"What is {a} + {a}?", {"answer": str(2 * a)}, "toy")
            for a in (1, 2, 3)]


def toy_scorer(tasks, responses):
    """Stand-in verifier: correct iff the boxed answer equals the reference."""
    out = []
    for t, r in zip(tasks, responses, strict=True):
        ans = json.loads(t["reference"])["answer"]
        ok = r.endswith(f"\\boxed{{{ans}}}")
        out.append(Score(float(ok), ok, "correct" if ok else "wrong_answer"))
    return out


def test_distill_filters_and_counts():
    t1, t2, t3 = toy_tasks()
    good1 = "<think>1 + 1 = 2</think>\\boxed{2}"
    cands = {
        t1["id"]: [Candidate(good1), Candidate(good1),  # duplicate
                   Candidate("<think>1 + 1 = 3</think>\\boxed{3}"),  # incorrect
                   Candidate("<think>1 + 1 is 2 and then")],  # truncated
        t2["id"]: [Candidate("<think>2 + 2 = 4</think>\\boxed{4}"),
                   Candidate("<think>2 plus 2 = 4</think>\\boxed{4}"),  # surplus (N = 1)
                   Candidate("<think>" + "add two " * 8 + "</think>\\boxed{4}"),  # repetition
                   Candidate("<think>4</think>\\boxed{4}", "length")],  # truncated
        t3["id"]: [Candidate("<think>" + " ".join(f"w{i}" for i in range(30)) +
                             "</think>\\boxed{6}")],  # too_long: 31 words > 20
    }
    p = DistillParams(max_traces_per_prompt=1, max_response_tokens=20, repeat_ngram=2,
                      max_ngram_repeats=5, batch_size=2)
    acc, rej, st = distill([t1, t2, t3], lambda ts: [cands[t["id"]] for t in ts], toy_scorer,
                           lambda s: len(s.split()), "toy", p)
    assert [r["response"] for r in acc] == [good1, "<think>2 + 2 = 4</think>\\boxed{4}"]
    assert all(r["verified"] for r in acc)
    assert st["rejected"] == {"duplicate": 1, "incorrect": 1, "repetition": 1, "surplus": 1,
                              "too_long": 1, "truncated": 2}
    assert st["rejected_detail"]["incorrect:wrong_answer"] == 1
    assert st["accepted"] == 2 and st["candidates"] == 9 and st["prompts_covered"] == 2
    assert st["prompt_coverage"] == pytest.approx(2 / 3)
    # tokens = whitespace words here: "<think>1 + 1 = 2</think>\boxed{2}" has 5, t2's has 5
    assert st["tokens_per_domain"]["math"]["response_tokens"] == 10
    assert st["tokens_per_domain"]["math"]["prompt_tokens"] == 5 + 5  # "What is a + a?" = 5 words
    assert st["domain_mix"] == {"math": 1.0}
    frame(acc, TRACE)  # the rows fit the schema


@pytest.mark.integration
def test_stage_main_writes_traces_rejected_stats(tmp_path: Path):
    """Real generators, teachers and verifiers; a tokenizer folder stands in for models/base."""
    from test_sft import make_tokenizer

    from pipeline.tasks import generate, teacher_trace

    tasks = generate("math", 6, seed=3) + generate("countdown", 6, seed=3)
    frame(tasks, TASK).write_parquet(tmp_path / "sft.parquet")
    tok = make_tokenizer([t["prompt"] + teacher_trace(t) for t in tasks])
    tok.save_pretrained(tmp_path / "base")
    (tmp_path / "params.yaml").write_text("seed: 1\ndistill:\n  max_response_tokens: 4000\n")
    out = tmp_path / "distill"
    main(["--tasks", str(tmp_path / "sft.parquet"), "--tokenizer", str(tmp_path / "base"),
          "--out-dir", str(out), "--params", str(tmp_path / "params.yaml")])
    traces = pl.read_parquet(out / "traces.parquet")
    assert traces.schema == pl.Schema(TRACE)
    st = json.loads((out / "stats.json").read_text())
    n_unique = len({t["id"] for t in tasks})
    assert traces.height == st["accepted"] == n_unique  # the teachers are always right
    assert traces["task_id"].n_unique() == traces.height  # at most 1 per prompt
    first = traces.filter(pl.col("task_id") == tasks[0]["id"]).row(0, named=True)
    assert first["response"] == teacher_trace(tasks[0])
    assert first["response_tokens"] == len(tok(first["response"], add_special_tokens=False).input_ids)
    assert set(st["domain_mix"]) == {"math", "countdown"}
    assert pl.read_parquet(out / "rejected.parquet").height == len(tasks) - n_unique

"""avg@k and the unbiased pass@k (Chen et al. 2021) against hand-computed values; the grouping
per model / benchmark / domain and the Markdown table."""

from __future__ import annotations

import math

import pytest

from pipeline.bench.metrics import avg_at_k, pass_at_k, summarize
from pipeline.bench.report import bar_chart, group_metrics, markdown_table


@pytest.mark.parametrize(
    ("n", "c", "k", "want"),
    [
        (5, 2, 1, 2 / 5),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 7 / 10),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (5, 2, 3, 9 / 10),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (5, 2, 4, 1.0),  # n - c = 3 < k: every 4-subset holds a correct sample
        (4, 0, 2, 0.0),
        (4, 4, 4, 1.0),
        (10, 3, 5, 11 / 12),  # 1 - C(7,5)/C(10,5) = 1 - 21/252
    ],
)
def test_pass_at_k_hand_values(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, rel=1e-12)


def test_pass_at_k_equals_binomial_ratio_on_a_grid():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError, match="no samples"):
        avg_at_k([])


def test_summarize_by_hand():
    problems = [[True, False, False, False], [True, True, False, False], [False] * 4]
    s = summarize(problems, ks=(1, 2, 4, 5))
    assert (s["problems"], s["samples"]) == (3, 12)
    assert s["avg_at_k"] == pytest.approx((0.25 + 0.5 + 0.0) / 3)
    assert s["pass_at_1"] == pytest.approx(s["avg_at_k"])  # unbiased pass@1 = c / n
    # pass@2: 1 - C(3,2)/C(4,2) = 1/2; 1 - C(2,2)/C(4,2) = 5/6; 0
    assert s["pass_at_2"] == pytest.approx((0.5 + 5 / 6 + 0.0) / 3)
    assert s["pass_at_4"] == pytest.approx(2 / 3)
    assert "pass_at_5" not in s  # more than the samples drawn: not reported
    assert summarize([], ks=(1,)) == {"problems": 0, "samples": 0}


def sample(model: str, task: str, domain: str, correct: bool) -> dict:
    return {"model": model, "task_id": task, "domain": domain, "correct": correct}


def test_group_metrics_and_table():
    samples = [
        sample("sft", "a", "math", True), sample("sft", "a", "math", False),
        sample("sft", "b", "code", False), sample("sft", "b", "code", False),
        sample("sft", "c", "math", True), sample("sft", "c", "math", True),
        sample("rl", "a", "math", True), sample("rl", "a", "math", True),
        sample("rl", "b", "code", True), sample("rl", "b", "code", False),
        sample("rl", "c", "math", True), sample("rl", "c", "math", True),
    ]
    owner = {"a": "curated", "b": "curated", "c": "gsm8k"}
    m = group_metrics(samples, owner, ks=(2,))
    cur = m["sft"]["curated"]
    assert (cur["problems"], cur["samples"]) == (2, 4)
    assert cur["avg_at_k"] == pytest.approx((0.5 + 0.0) / 2)
    assert cur["pass_at_2"] == pytest.approx((1.0 + 0.0) / 2)
    assert cur["domains"]["math"]["avg_at_k"] == pytest.approx(0.5)
    assert cur["domains"]["code"]["avg_at_k"] == 0.0
    assert m["rl"]["curated"]["avg_at_k"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["rl"]["gsm8k"]["avg_at_k"] == 1.0
    table = markdown_table(m, ["sft", "rl"])
    lines = table.splitlines()
    # curated mixes two domains (one column each); gsm8k is math only (no extra column)
    assert lines[0] == "| model | curated | curated/code | curated/math | gsm8k |"
    assert lines[2] == "| sft | 25.0 | 0.0 | 50.0 | 100.0 |"
    assert lines[3] == "| rl | 75.0 | 50.0 | 100.0 | 100.0 |"
    assert "curated: 2 problems, 4 samples per model" in table
    fig = bar_chart(m, ["sft", "rl"])
    assert len(fig.axes[0].patches) == 4  # 2 models x 2 benchmarks


def test_group_rollup_pools_domains_of_one_rl_group():
    from pipeline.bench.report import group_rollup

    rows = [  # math: problem a 2/2, b 0/2; sudoku: c 1/2; ifeval: d 1/2
        *({"model": "m", "task_id": "a", "domain": "math", "correct": True} for _ in range(2)),
        *({"model": "m", "task_id": "b", "domain": "math", "correct": False} for _ in range(2)),
        {"model": "m", "task_id": "c", "domain": "sudoku", "correct": True},
        {"model": "m", "task_id": "c", "domain": "sudoku", "correct": False},
        {"model": "m", "task_id": "d", "domain": "ifeval", "correct": False},
        {"model": "m", "task_id": "d", "domain": "ifeval", "correct": True},
    ]
    out = group_rollup(rows, [1, 2])["m"]
    assert set(out) == {"all_reasoning", "all_general"}
    r = out["all_reasoning"]
    assert r["problems"] == 3 and r["samples"] == 6
    assert r["avg_at_k"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert r["pass_at_2"] == pytest.approx((1 + 0 + 1) / 3)
    assert r["domains"]["math"]["avg_at_k"] == pytest.approx(0.5)
    assert out["all_general"]["avg_at_k"] == pytest.approx(0.5)

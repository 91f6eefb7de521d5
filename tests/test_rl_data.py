"""What RL trains on and how it reports it: the prompt stream (epochs, with replacement, domain
mix, resume), the held-back slice, the placebo shuffle, dynamic sampling, first-seen vs repeat
metrics, the paired CIs and the verdict."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from pipeline.bench.metrics import mean_se, paired_bootstrap
from pipeline.rl.params import RLParams
from pipeline.rl.prompts import PromptStream, hold_out
from pipeline.rl.rollout import Rollout, merge
from pipeline.rl.stage import summary, verdict
from pipeline.rl.trainer import History, _enough_signal, _placebo, _rollout_metrics


def pool(counts: dict[str, int]) -> list[dict]:
    return [{"id": f"{d}{i}", "domain": d} for d, n in counts.items() for i in range(n)]


def test_epochs_draw_every_prompt_once_before_any_repeat():
    tasks = pool({"a": 7, "b": 3})
    s = PromptStream(tasks, "epochs", {}, seed=1)
    first, before = s.take(10)
    assert sorted(t["id"] for t in first) == sorted(t["id"] for t in tasks)
    assert before == [0] * 10
    second, before = s.take(10)
    assert sorted(t["id"] for t in second) == sorted(t["id"] for t in tasks)
    assert before == [1] * 10
    assert [t["id"] for t in first] != [t["id"] for t in second]  # a new permutation
    assert s.cursor == 20 and s.distinct_drawn == 10


def test_with_replacement_repeats_within_an_epoch_length():
    tasks = pool({"a": 10})
    s = PromptStream(tasks, "with_replacement", {}, seed=1)
    drawn, before = s.take(10)
    assert len({t["id"] for t in drawn}) < 10  # 10 draws from 10: a repeat is near-certain
    assert any(b > 0 for b in before)


def test_domain_mix_keeps_a_queue_per_domain():
    tasks = pool({"a": 4, "b": 50})
    s = PromptStream(tasks, "epochs", {"a": 1.0, "b": 1.0}, seed=2)
    drawn, before = s.take(40)
    by = collections.Counter(t["domain"] for t in drawn)
    assert 10 <= by["a"] <= 30  # half the draws by weight, although "a" has 4 of 54 prompts
    a_ids = [t["id"] for t in drawn if t["domain"] == "a"]
    for e in range(len(a_ids) // 4):  # each run of 4 "a" draws is a whole epoch of "a"
        assert sorted(a_ids[4 * e:4 * e + 4]) == ["a0", "a1", "a2", "a3"]
    with pytest.raises(ValueError, match="names no domain"):
        PromptStream(tasks, "epochs", {"c": 1.0}, seed=2)


def test_domain_mix_warns_about_pool_domains_it_leaves_out(caplog):
    tasks = pool({"a": 4, "b": 5})
    with caplog.at_level("WARNING", logger="rl"):
        s = PromptStream(tasks, "epochs", {"a": 1.0, "c": 1.0}, seed=2)
    assert "['b']" in caplog.text and "never drawn" in caplog.text
    assert {t["domain"] for t in s.take(12)[0]} == {"a"}
    caplog.clear()
    with caplog.at_level("WARNING", logger="rl"):
        PromptStream(tasks, "epochs", {"a": 1.0, "b": 2.0}, seed=2)
    assert caplog.text == ""


@pytest.mark.parametrize("order", ["epochs", "with_replacement"])
def test_advance_rebuilds_the_stream_and_its_counts(order):
    tasks = pool({"a": 5, "b": 6})
    full = PromptStream(tasks, order, {"a": 2.0, "b": 1.0}, seed=3)
    full.take(13)
    tail, before = full.take(9)
    resumed = PromptStream(tasks, order, {"a": 2.0, "b": 1.0}, seed=3)
    resumed.advance(13)
    assert resumed.take(9) == (tail, before)
    with pytest.raises(ValueError, match="rewind"):
        resumed.advance(3)


def test_hold_out_is_stratified_disjoint_and_seeded():
    tasks = pool({"a": 20, "b": 20, "c": 2})
    train, held = hold_out(tasks, 9, seed=4)
    assert len(held) == 9 and len(train) == 33
    assert not {t["id"] for t in held} & {t["id"] for t in train}
    assert collections.Counter(t["domain"] for t in held) == {"a": 4, "b": 3, "c": 2}
    assert hold_out(tasks, 9, seed=4) == (train, held)
    assert hold_out(tasks, 9, seed=5)[1] != held
    assert hold_out(tasks, 0, seed=4) == (tasks, [])
    assert len(hold_out(pool({"a": 6}), 100, seed=1)[1]) == 3  # at most half the pool


def test_placebo_keeps_each_groups_rewards_and_breaks_their_order():
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 2, size=(50, 8)).astype(float)
    kept = rewards.copy()
    shuffled = _placebo(rewards, np.random.default_rng(1))
    assert np.array_equal(np.sort(shuffled, axis=1), np.sort(rewards, axis=1))
    assert not np.array_equal(shuffled, rewards)
    assert np.array_equal(rewards, kept)  # the logged rewards are left as they were


def _rollout(lengths: list[list[int]], rewards: list[list[float]]) -> Rollout:
    flat = [n for row in lengths for n in row]
    r = np.array(rewards, dtype=float)
    return Rollout(tasks=[{"domain": "math", "id": str(i)} for i in range(len(lengths))],
                   prompt_ids=[[1]] * len(lengths), token_ids=[[7] * n for n in flat],
                   engine_logprobs=[[0.0] * n for n in flat], texts=[""] * len(flat),
                   finish=["stop"] * len(flat), rewards=r, correct=r > 0)


def test_enough_signal_counts_only_groups_with_variance():
    ro = _rollout([[10, 10], [30, 30], [5, 5]], [[1, 0], [1, 1], [0, 1]])
    zero_var = np.array([False, True, False])
    p = RLParams(prompts_per_step=2, samples_per_prompt=2, token_budget=30)
    assert _enough_signal(p, ro, zero_var)  # 20 + 10 tokens with signal = Φ
    assert not _enough_signal(RLParams(prompts_per_step=2, samples_per_prompt=2,
                                       token_budget=31), ro, zero_var)
    # minibatch granularity: Φ per optimizer step, two updates need 2Φ
    assert not _enough_signal(RLParams(prompts_per_step=2, samples_per_prompt=2, token_budget=30,
                                       budget_granularity="minibatch", updates_per_rollout=2),
                              ro, zero_var)
    assert _enough_signal(RLParams(prompts_per_step=2, samples_per_prompt=2, token_budget=30,
                                   budget_granularity="minibatch", updates_per_rollout=1),
                          ro, zero_var)
    # other normalisers: L groups with signal
    assert _enough_signal(RLParams(prompts_per_step=2, samples_per_prompt=2,
                                   normaliser="token_mean"), ro, zero_var)
    assert not _enough_signal(RLParams(prompts_per_step=3, samples_per_prompt=2,
                                       normaliser="token_mean"), ro, zero_var)


def test_merge_keeps_prompt_major_order():
    a = _rollout([[1, 2]], [[1, 0]])
    b = _rollout([[3, 4], [5, 6]], [[0, 0], [1, 1]])
    m = merge([a, b])
    assert [len(t) for t in m.token_ids] == [1, 2, 3, 4, 5, 6]
    assert m.rewards.tolist() == [[1, 0], [0, 0], [1, 1]] and m.k == 2
    assert len(m.tasks) == 3 and merge([a]) is a


def test_first_seen_and_repeat_rewards_are_reported_apart():
    ro = _rollout([[1, 1], [1, 1], [1, 1]], [[1, 1], [0, 0], [0, 1]])
    m = _rollout_metrics(ro, np.array([True, True, False]), before=[2, 0, 0])
    assert m["prompts_first_seen"] == 2 and m["prompts_repeat"] == 1
    assert m["reward_repeat"] == 1.0 and m["reward_first_seen"] == pytest.approx(0.25)
    assert m["accuracy_first_seen"] == pytest.approx(0.25)
    only_new = _rollout_metrics(ro, np.zeros(3, bool), before=[0, 0, 0])
    assert "reward_repeat" not in only_new  # no repeats: no made-up value


def test_mean_se_and_paired_bootstrap_by_hand():
    mean, se = mean_se([0.0, 1.0, 1.0, 0.0])
    assert mean == 0.5 and se == pytest.approx(np.sqrt(1 / 3) / 2)  # sd (ddof 1) / sqrt(n)
    # the same shift on every problem: every resample has that mean
    d, lo, hi = paired_bootstrap([0.1, 0.2, 0.3], [0.3, 0.4, 0.5])
    assert (d, lo, hi) == pytest.approx((0.2, 0.2, 0.2))
    # 100 problems, half +1 and half -1: mean 0; the CI is about +-1.96 * 1/sqrt(100)
    before = [0.0] * 100
    after = [1.0, -1.0] * 50
    d, lo, hi = paired_bootstrap(before, after, seed=1)
    assert d == 0.0 and -0.24 < lo < -0.16 and 0.16 < hi < 0.24
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1.0], [1.0, 2.0])


def test_summary_says_whether_the_run_generalised():
    steps = [{"step": s, "reward": 0.5, "prompts_drawn": 4.0, "prompts_repeat": r,
              "prompts_distinct": 4.0 * s - r} for s, r in ((1, 0.0), (2, 1.0))]
    evals = [{"step": 0, "eval_accuracy": 0.3}, {"step": 2, "eval_accuracy": 0.6}]
    up = History(steps, evals, [{"step": 0, "eval": [0.0, 0.5, 0.25, 0.5],
                                 "holdout": [0.0, 0.0]},
                                {"step": 2, "eval": [0.5, 1.0, 0.75, 1.0],
                                 "holdout": [0.5, 0.0]}])
    m = summary(up, RLParams(), seed=0)
    assert m["eval_accuracy_gain"] == pytest.approx(0.5)
    assert m["eval_accuracy_gain_ci_low"] == pytest.approx(0.5)  # +0.5 on every task
    assert m["holdout_accuracy_gain"] == pytest.approx(0.25)
    assert m["generalised"] is True
    assert m["repeat_share"] == pytest.approx(1 / 8) and m["prompts_drawn"] == 8
    assert m["verdict"].startswith("generalised: held-out accuracy +50.0 points")
    assert "steps_short_of_budget" not in m  # the rows carry no budget_fill
    flat = History(steps, evals, [{"step": 0, "eval": [0.0, 1.0, 0.5]},
                                  {"step": 2, "eval": [1.0, 0.0, 0.5]}])
    m = summary(flat, RLParams(), seed=0)
    assert m["generalised"] is False and m["verdict"].startswith("no held-out gain shown")
    assert "holdout_accuracy_gain" not in m
    down = History(steps, evals, [{"step": 0, "eval": [1.0, 1.0]}, {"step": 2, "eval": [0.0, 0.5]}])
    assert verdict(summary(down, RLParams())).startswith("got worse")
    short = History([dict(r, budget_fill=f) for r, f in zip(steps, (1.0, 0.96), strict=True)],
                    evals, up.items)
    m = summary(short, RLParams(), seed=0)
    assert m["steps_short_of_budget"] == 1
    assert "1 of 2 steps trained fewer than Φ tokens" in m["verdict"]


def test_score_runs_each_distinct_response_once():
    from pipeline.rl.rollout import score
    from pipeline.verify.result import Score

    calls = []

    def score_fn(tasks, texts):
        calls.append(list(zip([t["id"] for t in tasks], texts, strict=True)))
        return [Score(float(x == "a"), x == "a", "") for x in texts]

    tasks = [{"id": "p"}, {"id": "q"}]
    rewards, correct = score(score_fn, tasks, ["a", "b", "a", "a", "a", "c"], k=3)
    assert rewards.tolist() == [[1, 0, 1], [1, 1, 0]] and correct.tolist()[1] == [True, True,
                                                                                  False]
    # p: a, b; q: a, c -- the same text under another prompt is another pair
    assert calls == [[("p", "a"), ("p", "b"), ("q", "a"), ("q", "c")]]

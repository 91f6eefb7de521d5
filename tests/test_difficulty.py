"""The pass-rate filter: hand-written pools with the kept/dropped split worked out by hand."""

from __future__ import annotations

import pytest

from pipeline.selection.difficulty import (
    Bands,
    classify,
    count_by,
    filter_pool,
    unsolved_allowance,
)
from pipeline.stages.difficulty import histogram, stats

BANDS = Bands(max_pass_rate=0.8, min_pass_rate=0.0, max_unsolved_share=0.5)


def row(i: int, domain: str, rate: float, teacher: bool | None = None) -> dict:
    return {"id": f"t{i}", "domain": domain, "pass_rate": rate, "teacher_solved": teacher}


def test_classify_each_band():
    assert classify(1.0, None, BANDS) == "too_easy"
    assert classify(0.8, None, BANDS) == "learnable"  # the upper edge is kept
    assert classify(0.25, None, BANDS) == "learnable"
    assert classify(0.0, True, BANDS) == "unsolved_teacher_ok"
    assert classify(0.0, False, BANDS) == "unsolvable"
    with pytest.raises(ValueError, match="teacher_solved is needed"):
        classify(0.0, None, BANDS)
    with pytest.raises(ValueError, match="outside"):
        classify(1.5, None, BANDS)


def test_unsolved_allowance_by_hand():
    # share 0.5: at most as many never-solved as learnable
    assert unsolved_allowance(learnable=3, unsolved=10, share=0.5) == 3
    # share 0.25: u / (4 + u) <= 0.25 -> u <= 4/3 -> 1
    assert unsolved_allowance(4, 10, 0.25) == 1
    assert unsolved_allowance(4, 2, 0.9) == 2  # fewer available than allowed
    assert unsolved_allowance(0, 5, 0.5) == 0
    assert unsolved_allowance(0, 5, 1.0) == 5
    assert unsolved_allowance(7, 5, 0.0) == 0


def test_filter_pool_splits_and_caps_per_group():
    pool = [
        row(0, "math", 1.0),  # too easy
        row(1, "math", 0.5),  # learnable
        row(2, "countdown", 0.25),  # learnable
        row(3, "math", 0.0, True),  # never solved, teacher ok
        row(4, "sudoku", 0.0, True),  # never solved, teacher ok
        row(5, "code", 0.0, True),  # never solved, teacher ok
        row(6, "code", 0.0, False),  # unsolvable
        row(7, "ifeval", 0.75),  # learnable (general)
        row(8, "open_qa", 0.0, True),  # never solved, teacher ok (general)
        row(9, "open_qa", 0.0, True),  # never solved, teacher ok (general)
    ]
    kept, dropped = filter_pool(pool, BANDS, seed=0)
    # reasoning: 2 learnable -> at most 2 of the 3 unsolved; general: 1 learnable -> 1 of 2
    reasons = {r["id"]: r["reason"] for r in kept + dropped}
    assert len(kept) + len(dropped) == len(pool)
    assert reasons["t0"] == "too_easy" and reasons["t6"] == "unsolvable"
    assert {reasons[i] for i in ("t1", "t2", "t7")} == {"learnable"}
    unsolved = ["t3", "t4", "t5"]
    assert sorted(reasons[i] for i in unsolved) == [
        "unsolved_over_cap", "unsolved_teacher_ok", "unsolved_teacher_ok"]
    assert sorted(reasons[i] for i in ("t8", "t9")) == ["unsolved_over_cap", "unsolved_teacher_ok"]
    assert len(kept) == 6 and len(dropped) == 4
    # deterministic for a seed
    again, _ = filter_pool(pool, BANDS, seed=0)
    assert [r["id"] for r in again] == [r["id"] for r in kept]


def test_unsolved_share_per_group():
    """{general: 1.0}: every never-solved general prompt the teacher solves is kept; reasoning
    (not named) keeps none; the unsolvable one is dropped whatever the share."""
    pool = [row(0, "math", 0.5), row(1, "math", 0.0, True), row(2, "sudoku", 0.0, True),
            row(3, "ifeval", 0.25), row(4, "ifeval", 0.0, True), row(5, "open_qa", 0.0, True),
            row(6, "open_qa", 0.0, True), row(7, "open_qa", 0.0, False)]
    bands = Bands(0.8, 0.0, {"general": 1.0})
    assert (bands.unsolved_share("general"), bands.unsolved_share("reasoning")) == (1.0, 0.0)
    kept, dropped = filter_pool(pool, bands, seed=3)
    assert [r["id"] for r in kept] == ["t0", "t3", "t4", "t5", "t6"]  # input order kept
    assert {r["id"]: r["reason"] for r in dropped} == {
        "t1": "unsolved_over_cap", "t2": "unsolved_over_cap", "t7": "unsolvable"}
    # one float is the same share for both groups
    both, _ = filter_pool(pool, Bands(0.8, 0.0, 1.0), seed=3)
    assert [r["id"] for r in both] == ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]
    # a mapping naming both groups: reasoning 0.5 -> 1 of 2 with 1 learnable, general 0.5 ->
    # u / (1 + u) <= 0.5 -> 1 of 3
    half, _ = filter_pool(pool, Bands(0.8, 0.0, {"reasoning": 0.5, "general": 0.5}), seed=3)
    assert sum(r["reason"] == "unsolved_teacher_ok" for r in half) == 2


def test_unsolved_share_rejects_bad_values():
    with pytest.raises(ValueError, match=r"max_unsolved_share\.reasonin: not a domain group"):
        Bands(0.8, 0.0, {"reasonin": 0.5})
    with pytest.raises(ValueError, match=r"max_unsolved_share\.general: must be in \[0, 1\]"):
        Bands(0.8, 0.0, {"general": 1.5})
    with pytest.raises(ValueError, match=r"max_unsolved_share: must be in \[0, 1\], got -0.1"):
        Bands(0.8, 0.0, -0.1)
    from pipeline.params import build
    from pipeline.stages.difficulty import DifficultyParams

    with pytest.raises(ValueError, match=r"difficulty\.max_unsolved_share\.general"):
        build(DifficultyParams, {"max_unsolved_share": {"general": 2.0}}, "difficulty")
    p = build(DifficultyParams, {"max_unsolved_share": {"general": 1}}, "difficulty")
    assert p.bands().unsolved_share("general") == 1.0


def test_stats_balance_and_counts():
    pool = [row(0, "math", 1.0), row(1, "math", 0.5), row(2, "ifeval", 0.0, False)]
    kept, dropped = filter_pool(pool, BANDS, seed=1)
    st = stats(len(pool), kept, dropped)
    assert st["balanced"] and (st["kept"], st["dropped"]) == (1, 2)
    assert st["by_domain"] == {"math": {"too_easy": 1, "learnable": 1}, "ifeval": {"unsolvable": 1}}
    assert st["by_reason"] == {"too_easy": 1, "learnable": 1, "unsolvable": 1}
    assert st["kept_by_group"] == {"reasoning": 1, "general": 0}
    assert st["mean_pass_rate"] == pytest.approx(0.5)
    assert count_by(kept) == {"math": {"learnable": 1}}


def test_histogram_counts_each_possible_rate():
    h = histogram([0.0, 0.25, 0.25, 1.0, 0.5], k=4)
    assert h["pass_rate"].to_list() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert h["count"].to_list() == [1, 2, 1, 0, 1]


# ---- the difficulty stage end to end with a scripted engine (known pass rates) -----------
# ifeval kinds that ScriptedEngine's wrong answer breaks whatever their arguments: no comma,
# semicolon, exclamation or question mark allowed; a JSON, quoted, titled, bulleted or 2-3
# paragraph response; a given opening or closing phrase; placeholders
BROKEN_BY_WRONG = ("forbidden_chars", "json", "quotation", "title", "bullets", "paragraphs",
                   "starts_with", "ends_with", "placeholders")


class ScriptedEngine:
    """Answers task i correctly (with the teacher's trace) in exactly ``solved[i]`` of n samples."""

    def __init__(self, tok, tasks, solved):
        from pipeline.model.chat import format_prompt
        from pipeline.tasks import teacher_trace

        self.by_prompt = {format_prompt(tok, t["prompt"]): (teacher_trace(t), s)
                          for t, s in zip(tasks, solved, strict=True)}

    def generate(self, prompts, *, n, max_new_tokens, temperature, top_p, seed):
        from pipeline.engines import Completion

        out = []
        for p in prompts:
            trace, solved = self.by_prompt[p]
            # the wrong answer has no \\boxed{} and breaks every rule of BROKEN_BY_WRONG
            wrong = "<think>no idea</think> nothing, really; no! why?"
            texts = [trace if j < solved else wrong for j in range(n)]
            out.append([Completion(t, [1, 2, 3], [0.0, 0.0, 0.0], "stop") for t in texts])
        return out

    def close(self):
        pass


@pytest.mark.integration
def test_difficulty_stage_with_known_pass_rates(tmp_path, monkeypatch):
    import json

    import polars as pl
    import yaml

    import pipeline.engines
    from pipeline.model import save_checkpoint, tiny_test_model
    from pipeline.schema import TASK, frame
    from pipeline.stages import difficulty
    from pipeline.tasks import generate

    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    monkeypatch.chdir(tmp_path)
    model, tok = tiny_test_model()
    save_checkpoint(model, tok, "selected")
    tasks = generate("math", 6, seed=2) + generate("ifeval", 3, seed=2, kinds=BROKEN_BY_WRONG)
    import pipeline.tasks

    real_teacher = pipeline.tasks.teacher_trace
    monkeypatch.setattr(  # the teacher fails task 5: never solved by anyone -> unsolvable
        pipeline.tasks, "teacher_trace",
        lambda t: "<think></think>\\boxed{-1}" if t["id"] == tasks[5]["id"] else real_teacher(t))
    pl.DataFrame(frame(tasks, TASK)).write_parquet("rl.parquet")
    # correct samples out of 4:  math 4, 3, 1, 0, 0, 0 (teacher fails) | ifeval 2, 0, 0
    solved = [4, 3, 1, 0, 0, 0, 2, 0, 0]
    engine = ScriptedEngine(tok, tasks, solved)
    monkeypatch.setattr(pipeline.engines, "make_engine", lambda *a, **k: engine)
    params = {"seed": 5, "difficulty": {"samples_per_prompt": 4, "max_pass_rate": 0.8,
                                        "min_pass_rate": 0.0, "max_unsolved_share": 0.5}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    difficulty.main(["--model", "selected", "--tasks", "rl.parquet", "--out-dir", "rl",
                     "--report-dir", "rep"])

    reasoning = pl.read_parquet("rl/reasoning.parquet")
    general = pl.read_parquet("rl/general.parquet")
    dropped = pl.read_parquet("rl/dropped.parquet")
    assert reasoning.columns == [*TASK, "pass_rate"]
    rate = {r["id"]: r["pass_rate"] for r in pl.concat([reasoning, general]).to_dicts()}
    ids = [t["id"] for t in tasks]
    # math: 1.0 too easy; 0.75, 0.25 learnable; two never-solved (teacher ok) of which the cap
    # (share 0.5 -> at most 2 with 2 learnable) keeps both; the broken one is unsolvable
    assert rate[ids[1]] == 0.75 and rate[ids[2]] == 0.25
    assert set(reasoning["id"]) == {ids[1], ids[2], ids[3], ids[4]}
    # ifeval: 0.5 learnable; 1 learnable -> 1 of the 2 never-solved kept
    assert ids[6] in set(general["id"]) and general.height == 2
    reasons = dict(zip(dropped["id"], dropped["reason"], strict=True))
    assert reasons[ids[0]] == "too_easy" and reasons[ids[5]] == "unsolvable"
    assert sorted(reasons.values()) == ["too_easy", "unsolvable", "unsolved_over_cap"]
    st = json.loads((tmp_path / "rep" / "stats.json").read_text())
    assert st["balanced"] and (st["total"], st["kept"], st["dropped"]) == (9, 6, 3)
    assert st["by_domain"]["math"] == {"too_easy": 1, "learnable": 2,
                                       "unsolved_teacher_ok": 2, "unsolvable": 1}
    hist = pl.read_csv("rep/pass_rates.csv")
    assert hist["count"].to_list() == [5, 1, 1, 1, 1]  # rates 0, .25, .5, .75, 1
    assert (tmp_path / "rep" / "pass_rates.png").stat().st_size > 1000


@pytest.mark.integration
def test_unscored_prompts_pass_to_the_pools_when_kept(tmp_path, monkeypatch):
    import json

    import polars as pl
    import yaml

    import pipeline.engines
    from pipeline.model import save_checkpoint, tiny_test_model
    from pipeline.schema import TASK, frame
    from pipeline.stages import difficulty
    from pipeline.tasks import generate

    monkeypatch.setenv("RINGLITE_TRACKING", "off")
    monkeypatch.chdir(tmp_path)
    model, tok = tiny_test_model()
    save_checkpoint(model, tok, "selected")
    tasks = generate("math", 6, seed=2) + generate("ifeval", 3, seed=2, kinds=BROKEN_BY_WRONG)
    pl.DataFrame(frame(tasks, TASK)).write_parquet("rl.parquet")
    engine = ScriptedEngine(tok, tasks, [2] * 9)  # every scored prompt: 2 of 4, learnable
    monkeypatch.setattr(pipeline.engines, "make_engine", lambda *a, **k: engine)
    params = {"seed": 5, "difficulty": {"samples_per_prompt": 4, "max_prompts": {"reasoning": 2},
                                        "unscored": "keep"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    difficulty.main(["--model", "selected", "--tasks", "rl.parquet", "--out-dir", "rl",
                     "--report-dir", "rep"])
    reasoning = pl.read_parquet("rl/reasoning.parquet")
    assert reasoning.height == 6  # 2 scored (learnable) + 4 unscored, kept
    assert reasoning["pass_rate"].null_count() == 4
    assert set(reasoning["pass_rate"].drop_nulls()) == {0.5}
    assert pl.read_parquet("rl/general.parquet")["pass_rate"].to_list() == [0.5] * 3
    st = json.loads((tmp_path / "rep" / "stats.json").read_text())
    assert st["balanced"] and st["kept"] == 9 and st["dropped"] == 0
    assert st["by_reason"] == {"learnable": 5, "unscored_kept": 4}


def test_split_budget_is_a_seeded_partition():
    import polars as pl

    from pipeline.stages.difficulty import split_budget

    df = pl.DataFrame({"id": [f"t{i}" for i in range(13)],
                       "domain": ["math"] * 6 + ["code"] * 4 + ["ifeval"] * 3})
    scored, rest = split_budget(df, {"reasoning": 4}, seed=3)
    assert len(scored) == 7 and len(rest) == 6  # 4 of 10 reasoning + all 3 general
    assert sum(r["domain"] == "ifeval" for r in scored) == 3
    assert sorted(r["id"] for r in scored + rest) == sorted(df["id"])
    assert [r["id"] for r in scored] == sorted((r["id"] for r in scored),
                                                key=lambda x: int(x[1:]))  # input order kept
    assert split_budget(df, {"reasoning": 4}, seed=3) == (scored, rest)
    assert split_budget(df, {"reasoning": 4}, seed=4) != (scored, rest)
    assert split_budget(df, {}, seed=3) == (df.to_dicts(), [])
    both, rest = split_budget(df, {"reasoning": 2, "general": 1}, seed=3)
    assert len(both) == 3 and len(rest) == 10


def test_max_prompts_names_domain_groups():
    from pipeline.stages.difficulty import DifficultyParams

    with pytest.raises(ValueError, match="max_prompts.math: not a domain group"):
        DifficultyParams(max_prompts={"math": 3})

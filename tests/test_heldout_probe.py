"""scripts/heldout_probe.py: fresh tasks leave out every seen prompt; paired gains."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from pipeline.tasks import generate

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("heldout_probe", REPO / "scripts/heldout_probe.py")
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

PARAMS = {"curate": {"generators": {"math": {"knobs": {"kinds": ["word"], "ops": ["+", "-"],
                                                      "max_operand": 20, "num_ops": 1}},
                                   "knights_knaves": {"knobs": {"people": 2}}}}}


def _curated(tmp_path: Path, taken: list[dict]) -> Path:
    for i, split in enumerate(probe.SPLITS):
        pl.DataFrame(taken[i::4] or [{"prompt": "none"}]).select("prompt").write_parquet(
            tmp_path / f"{split}.parquet")
    return tmp_path


def test_fresh_tasks_exclude_curated_prompts(tmp_path):
    knobs = PARAMS["curate"]["generators"]["math"]["knobs"]
    # the same seed generates the same first tasks: put 20 of them in the curated splits
    taken = generate("math", 20, 7, **knobs)
    curated = _curated(tmp_path, taken)
    df = probe.fresh_tasks(PARAMS, ["math", "knights_knaves"], 30, 7,
                           probe.seen_prompts(curated))
    assert df.group_by("domain").len().sort("domain").to_dicts() == [
        {"domain": "knights_knaves", "len": 30}, {"domain": "math", "len": 30}]
    assert not set(df["prompt"]) & {t["prompt"] for t in taken}
    assert df["prompt"].n_unique() == df.height
    assert set(df["split"]) == {"bench"}


def test_extra_files_and_case_variants_count_as_seen(tmp_path):
    knobs = PARAMS["curate"]["generators"]["math"]["knobs"]
    first = generate("math", 10, 7, **knobs)
    curated = _curated(tmp_path, [{"prompt": "unrelated"}] * 4)
    # an RL pool outside the curated splits, with the prompts upper-cased: the normalised text
    # is what counts
    pl.DataFrame({"prompt": [t["prompt"].upper() for t in first]}).write_parquet(
        tmp_path / "pool.parquet")
    df = probe.fresh_tasks(PARAMS, ["math"], 10, 7,
                           probe.seen_prompts(curated, [tmp_path / "pool.parquet"]))
    assert not set(df["prompt"]) & {t["prompt"] for t in first}


def test_per_domain_counts_and_their_errors(tmp_path):
    assert probe.parse_counts(["150"], ["math", "ifeval"]) == {"math": 150, "ifeval": 150}
    assert probe.parse_counts(["150", "ifeval=600"], ["math", "ifeval"]) == {
        "math": 150, "ifeval": 600}
    assert probe.parse_counts(["ifeval=600", "40"], ["math", "ifeval"]) == {
        "math": 40, "ifeval": 600}  # order does not matter
    assert probe.parse_counts([], ["math"]) == {"math": 150}
    for bad, why in (("sudoku=5", "not one of --domains"), ("math=x", "expected N"),
                     ("0", "at least 1")):
        with pytest.raises(SystemExit, match=why):
            probe.parse_counts([bad], ["math", "ifeval"])
    curated = _curated(tmp_path, [{"prompt": "unrelated"}] * 4)
    df = probe.fresh_tasks(PARAMS, ["math", "knights_knaves"], {"math": 12, "knights_knaves": 5},
                           7, probe.seen_prompts(curated))
    assert df.group_by("domain").len().sort("domain").to_dicts() == [
        {"domain": "knights_knaves", "len": 5}, {"domain": "math", "len": 12}]
    # a larger count keeps the smaller count's problems first: the same seed draws them
    small = probe.fresh_tasks(PARAMS, ["math"], 5, 7, probe.seen_prompts(curated))
    assert df.filter(pl.col("domain") == "math")["prompt"].head(5).to_list() == small[
        "prompt"].to_list()


def test_missing_split_or_generator_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="sft.parquet: missing"):
        probe.seen_prompts(tmp_path)
    curated = _curated(tmp_path, generate("math", 4, 1, **PARAMS["curate"]["generators"]["math"]
                                          ["knobs"]))
    with pytest.raises(SystemExit, match="no generator"):
        probe.fresh_tasks(PARAMS, ["sudoku"], 5, 1, probe.seen_prompts(curated))


def test_gains_pair_problems_and_match_hand_computed_differences():
    # two models on 4 problems, 2 samples each: per-problem avg@2 by hand
    #   base: t1 1.0, t2 0.0, t3 0.5 (math), t4 0.0 (ifeval)
    #   rl:   t1 1.0, t2 1.0, t3 1.0 (math), t4 0.5 (ifeval)
    rows = []
    for model, marks in (("base", {"t1": (1, 1), "t2": (0, 0), "t3": (1, 0), "t4": (0, 0)}),
                         ("rl", {"t1": (1, 1), "t2": (1, 1), "t3": (1, 1), "t4": (1, 0)})):
        for tid, cs in marks.items():
            for c in cs:
                rows.append({"model": model, "task_id": tid, "correct": bool(c),
                             "domain": "ifeval" if tid == "t4" else "math"})
    g = probe.gains(pl.DataFrame(rows), "base")
    assert g["base"]["math"] == {"problems": 3, "avg": pytest.approx(50.0)}
    rl = g["rl"]["all_reasoning"]
    assert rl["avg"] == pytest.approx(100.0) and rl["diff"] == pytest.approx(50.0)
    # differences per problem are 0, +1, +0.5: every resample's mean lies in [0, 1]
    assert 0.0 <= rl["ci_low"] <= 50.0 <= rl["ci_high"] <= 100.0
    assert g["rl"]["ifeval"]["diff"] == pytest.approx(50.0)
    assert "| rl | 100.0 (+50.0" in probe.gains_markdown(g, "base")
    with pytest.raises(SystemExit, match="baseline"):
        probe.gains(pl.DataFrame(rows), "sft")

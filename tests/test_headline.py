"""Stage headlines: the figures DVC shows per stage, picked from each stage's details."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.headline import HEADLINE_KEYS, headline, write_headline

REPO = Path(__file__).resolve().parents[1]


def test_headline_picks_the_stage_keys_and_nothing_else():
    details = {"steps": 2030, "final_loss": 0.91, "final_eval_accuracy": 0.33,
               "tokens_per_s": 812.5, "eval_accuracy_per_domain": {"math": 0.4}}
    assert headline("sft", details) == {"steps": 2030, "final_loss": 0.91,
                                        "final_eval_accuracy": 0.33}


def test_rl_headline_without_a_second_evaluation_leaves_the_gain_out():
    details = {"steps": 3, "final_eval_accuracy": 0.5, "repeat_share": 0.25}
    assert headline("rl_general", details) == details


def test_missing_required_key_names_stage_and_key():
    with pytest.raises(KeyError, match=r"difficulty's metrics lack \['dropped'\]"):
        headline("difficulty", {"kept": 5})
    with pytest.raises(KeyError, match="no headline keys for stage 'nope'"):
        headline("nope", {})


def test_bench_headline_is_pooled_avg_per_model(tmp_path):
    metrics = {m: {"all_reasoning": {"avg_at_k": r, "pass_at_1": 0.0},
                   "all_general": {"avg_at_k": g}, "math": {"avg_at_k": 1.0}}
               for m, r, g in (("sft", 0.25, 0.5), ("rl_general", 0.375, 0.625))}
    path = write_headline("bench", metrics, tmp_path / "rep")
    assert json.loads(path.read_text()) == {"reasoning": {"sft": 0.25, "rl_general": 0.375},
                                            "general": {"sft": 0.5, "rl_general": 0.625}}


def test_dvc_yaml_declares_each_headline_as_the_only_metric_and_details_as_git_outs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(HEADLINE_KEYS) | {"bench"} == set(stages)
    for name, spec in stages.items():
        assert spec["metrics"] == [{f"reports/{name}/headline.json": {"cache": False}}], name
        git_outs = [next(iter(o)) for o in spec["outs"] if isinstance(o, dict)
                    and next(iter(o.values())).get("cache") is False]
        assert any(o.endswith(("stats.json", "metrics.json")) for o in git_outs), name
    # no headline key is a timing (they differ across machines and runs)
    keys = [k for ks in HEADLINE_KEYS.values() for k in ks]
    assert not [k for k in keys if "second" in k or "per_s" in k or "time" in k]

"""The findings in miniature: the arms' params, the statistics and verdicts (numbers derived by
hand), the DVC stage names the flow runs, and the generated page."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / f"scripts/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


arms_mod = _load("findings")  # the arms (what the DVC arm stages run)
fd = _load("findings_report")  # statistics, verdicts, the page

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def test_cv_ranks_and_spearman_by_hand():
    assert fd.cv([8192, 8192, 8192]) == 0
    assert fd.cv([1, 3]) == pytest.approx(0.5)  # std 1 / mean 2
    assert list(fd.ranks([10, 20, 20, 5])) == [2, 3.5, 3.5, 1]
    # ranks differ by 0, 1, 1, 0: 1 - 6 * 2 / (4 * 15) = 0.8
    assert fd.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert fd.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        fd.spearman([1], [2])


def test_step_stats_per_optimizer_update():
    rows = [{"step": 1, "tokens_trained": 8192, "optimizer_steps": 2, "time_train_s": 4.0,
             "time_step_s": 6.0, "response_len": 40, "reward_first_seen": 0.25, "entropy": 0.5,
             "grad_norm": 1.0},
            {"step": 2, "tokens_trained": 8192, "optimizer_steps": 2, "time_train_s": 2.0,
             "time_step_s": 6.0, "response_len": 60, "reward_first_seen": 0.75, "entropy": 0.4,
             "grad_norm": 3.0}]
    s = fd.step_stats(rows)
    assert s["tokens_per_update_cv"] == 0 and s["tokens_per_update"] == 8192
    assert s["train_s_per_update"] == pytest.approx(1.5)  # 2 s and 1 s per update
    assert s["train_s_per_update_cv"] == pytest.approx(0.5 / 1.5)
    assert s["step_s_cv"] == 0 and s["response_len_cv"] == pytest.approx(10 / 50)
    assert (s["reward_first_seen"], s["entropy_first"], s["entropy_last"], s["grad_norm"]) == (
        0.5, 0.5, 0.4, 2.0)
    assert "train_cpu_s_per_update" not in s  # runs that did not record CPU seconds
    rows[0]["cpu_train_s"], rows[1]["cpu_train_s"] = 6.0, 6.0
    s = fd.step_stats(rows)
    assert s["train_cpu_s_per_update"] == pytest.approx(3.0) and s["train_cpu_s_per_update_cv"] == 0


def test_step_stats_leave_the_warm_up_step_out_of_the_times():
    def row(step, tokens, train, cpu):
        return {"step": step, "tokens_trained": tokens, "optimizer_steps": 1,
                "time_train_s": train, "cpu_train_s": cpu, "time_step_s": train + 1,
                "response_len": 50, "entropy": 0.1, "grad_norm": 1.0}

    # step 1 pays the warm-up (9 s); steps 2-4 train 100, 200, 100 tokens in 1, 2, 1 s
    rows = [row(1, 100, 9.0, 18.0), row(2, 100, 1.0, 2.0), row(3, 200, 2.0, 4.0),
            row(4, 100, 1.0, 2.0)]
    s = fd.step_stats(rows)
    assert s["steps"] == 4 and s["timed_steps"] == 3
    assert s["tokens_per_update"] == 125  # tokens: every step
    assert s["train_s_per_update"] == pytest.approx(4 / 3)  # times: steps 2-4
    # 1, 2, 1: mean 4/3, population std sqrt(2)/3, CV sqrt(2)/4
    assert s["train_s_per_update_cv"] == pytest.approx(2 ** 0.5 / 4)
    assert s["train_cpu_s_per_update_cv"] == pytest.approx(2 ** 0.5 / 4)
    assert s["step_s"] == pytest.approx(7 / 3)
    assert s["train_cpu_s_per_token_cv"] == 0  # 0.02 CPU s per token at every timed step


def test_read_steps_skips_the_evaluation_row(tmp_path):
    p = tmp_path / "steps.csv"
    p.write_text("step,eval_accuracy,tokens_trained,time_train_s\n0,0.3,,\n1,,100,2.5\n")
    assert fd.read_steps(p) == [{"step": 1.0, "tokens_trained": 100.0, "time_train_s": 2.5}]


def test_compare_and_pooled_seeds():
    a, b = {"t1": 0.0, "t2": 1.0}, {"t1": 1.0, "t2": 1.0}
    c = fd.compare(a, b)
    assert c["diff"] == pytest.approx(50.0) and c["problems"] == 2
    assert c["ci_low"] <= 50.0 <= c["ci_high"]
    assert fd.mean_scores([a, b]) == {"t1": 0.5, "t2": 1.0}
    assert fd.avg(a) == 50.0
    with pytest.raises(ValueError, match="different problems"):
        fd.compare(a, {"t1": 1.0})


def _n(tok_cv, train_cv):
    return {"tokens_per_update_cv": tok_cv, "train_s_per_update_cv": train_cv}


def test_verdict_normalisers():
    assert fd.verdict_normalisers({"budget": _n(0.0, 0.05), "token_mean": _n(0.2, 0.2)})[0] == (
        "supports")
    assert fd.verdict_normalisers({"budget": _n(0.0, 0.15), "token_mean": _n(0.2, 0.2)})[0] == (
        "cannot tell")  # steadier, but not half
    assert fd.verdict_normalisers({"budget": _n(0.0, 0.25), "token_mean": _n(0.2, 0.2)})[0] == (
        "contradicts")
    assert fd.verdict_normalisers({"budget": _n(0.01, 0.01), "token_mean": _n(0.2, 0.2)})[0] == (
        "cannot tell")  # the budget was not filled every update
    # where both arms recorded CPU seconds, those decide: the wall CVs here would say
    # "cannot tell", the CPU CVs (0.04 against 0.2) say "supports"
    cpu = {"budget": {**_n(0.0, 0.15), "train_cpu_s_per_update_cv": 0.04},
           "token_mean": {**_n(0.2, 0.2), "train_cpu_s_per_update_cv": 0.2}}
    verdict, why = fd.verdict_normalisers(cpu)
    assert verdict == "supports" and "CPU time per update varies 0.040 against 0.200" in why
    cpu["token_mean"].pop("train_cpu_s_per_update_cv")  # one arm without: wall seconds decide
    assert fd.verdict_normalisers(cpu)[0] == "cannot tell"
    # "cannot tell" names the noise floor where both arms recorded it
    floor = {"budget": {**_n(0.0, 0.11), "train_cpu_s_per_update_cv": 0.11,
                        "train_cpu_s_per_token_cv": 0.105},
             "token_mean": {**_n(0.15, 0.19), "train_cpu_s_per_update_cv": 0.19,
                            "train_cpu_s_per_token_cv": 0.112}}
    verdict, why = fd.verdict_normalisers(floor)
    assert verdict == "cannot tell" and "varies 0.105 (C3PO) and 0.112 (token_mean)" in why


def test_arm_timing_sums_runs_and_keeps_the_load(tmp_path, monkeypatch):
    for arm, runs in {"two_stage": {"rl_reasoning": (100.0, 180.0, 2.1), "rl_general": (
            50.0, 95.0, 3.4)}, "joint": {"rl_reasoning": (120.0, 230.0, 2.0)}}.items():
        for run, (wall, cpu, load) in runs.items():
            d = tmp_path / "two_stage" / "arms" / arm / run
            d.mkdir(parents=True)
            (d / "wall.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu,
                                                     "load_avg": [load, 1.0, 1.0],
                                                     "cpu_count": 2}))
    old = tmp_path / "two_stage" / "arms" / "older" / "rl_reasoning"  # a record without CPU
    old.mkdir(parents=True)
    (old / "wall.json").write_text(json.dumps({"wall_s": 30.0}))
    monkeypatch.setattr(fd, "REPORTS", tmp_path)
    t = fd.arm_timing("two_stage")
    assert t["arm_seconds"] == {"joint": 120.0, "older": 30.0, "two_stage": 150.0}
    assert t["arm_cpu_seconds"] == {"joint": 230.0, "two_stage": 275.0}
    assert sorted(t["arm_load_1m"]) == [2.0, 2.1, 3.4] and t["cpu_count"] == 2
    m = {"finding": "two_stage", "claim": "c", "verdict": "cannot tell", "why": "w",
         "scores": {a: {"all_reasoning": 1.0, "ifeval": 2.0} for a in ("start", "two_stage",
                                                                       "joint")},
         "vs_start": {}, "tokens_trained": {}, "plots": [], "report_seconds": 60.0,
         "commit": "0123456789", "date": "d", **t}
    text = fd.finding_markdown(m)
    assert "two_stage 150 s (CPU 275 s)" in text and "older 30 s, two_stage" in text
    assert "(6.0 min in all)" in text  # 120 + 30 + 150 + 60 s
    assert "load average as the arms ended: 2.0 to 3.4 on 2 cores" in text


def _ci(diff, lo, hi):
    return {"diff": diff, "ci_low": lo, "ci_high": hi}


def test_verdict_entropy_band():
    arms = [{"epoch": 4, "entropy": 0.6, "in_band": False, "score": 20.0},
            {"epoch": 8, "entropy": 0.25, "in_band": True, "score": 30.0},
            {"epoch": 10, "entropy": 0.18, "in_band": True, "score": 28.0}]
    beaten = {"epoch4": _ci(-10, -14, -6), "epoch10": _ci(-2, -5, 1)}
    assert fd.verdict_entropy(arms, beaten)[0] == "supports"  # a middle, in-band start is best
    close = {"epoch4": _ci(-10, -14, 1), "epoch10": _ci(-2, -5, 1)}
    assert fd.verdict_entropy(arms, close)[0] == "cannot tell"
    # the most trained checkpoint is best and beats every other: the second half fails
    arms[2]["score"] = 35.0
    last = {"epoch4": _ci(-15, -19, -11), "epoch8": _ci(-5, -8, -2)}
    verdict, why = fd.verdict_entropy(arms, last)
    assert verdict == "contradicts" and "most trained" in why
    arms[2]["score"] = 28.0
    arms[0]["score"] = 40.0  # the out-of-band arm (also the earliest) is best and beats both
    out = {"epoch8": _ci(-10, -14, -6), "epoch10": _ci(-12, -15, -8)}
    assert fd.verdict_entropy(arms, out)[0] == "contradicts"
    middle = [dict(a) for a in arms] + [{"epoch": 2, "entropy": 0.9, "in_band": False,
                                          "score": 5.0}]
    out_mid = {**out, "epoch2": _ci(-35, -40, -30)}
    assert fd.verdict_entropy(middle, out_mid)[0] == "contradicts"  # outside, beats the band
    same_side = [dict(a, in_band=True) for a in middle[1:3]] + [
        {"epoch": 2, "entropy": 0.29, "in_band": True, "score": 5.0},
        {"epoch": 12, "entropy": 0.16, "in_band": True, "score": 6.0}]
    tie = {"epoch2": _ci(-1, -3, 1), "epoch10": _ci(-1, -3, 1), "epoch12": _ci(-1, -3, 1)}
    assert fd.verdict_entropy(same_side, tie)[0] == "cannot tell"


def test_verdict_two_stage():
    good, flat, bad = _ci(5, 1, 9), _ci(0, -3, 3), _ci(-5, -9, -1)
    assert fd.verdict_two_stage({"all_reasoning": flat, "ifeval": good})[0] == "supports"
    assert fd.verdict_two_stage({"all_reasoning": bad, "ifeval": flat})[0] == "contradicts"
    assert fd.verdict_two_stage({"all_reasoning": bad, "ifeval": good})[0] == "cannot tell"
    assert fd.verdict_two_stage({"all_reasoning": flat, "ifeval": flat})[0] == "cannot tell"


def test_arm_runs_apply_the_findings_overrides():
    rl = PARAMS["findings"]["rl"]
    [run] = arms_mod.arm_runs(PARAMS, "normalisers", "token_mean", "2")
    assert run["section"]["normaliser"] == "token_mean"
    assert run["seed"] == PARAMS["seed"] + 2 and run["start"] == "models/selected"
    norm = PARAMS["findings"].get("normalisers") or {}
    assert all(run["section"][k] == norm.get(k, v) for k, v in rl.items())
    assert PARAMS["rl_reasoning"]["normaliser"] == "budget"  # the base params are untouched
    # the normalisers' own overrides win over findings.rl, for their arms only
    short = {**PARAMS, "findings": {**PARAMS["findings"], "normalisers": {"steps": 5}}}
    assert arms_mod.arm_runs(short, "normalisers", "budget", "1")[0]["section"]["steps"] == 5
    assert arms_mod.arm_runs(short, "entropy_band", "6")[0]["section"]["steps"] == rl["steps"]
    [run] = arms_mod.arm_runs(PARAMS, "entropy_band", "6")
    assert run["start"] == "models/sft/epoch_6"
    t = PARAMS["findings"]["two_stage"]
    first, second = arms_mod.arm_runs(PARAMS, "two_stage", "two_stage")
    assert (first["stage"], second["stage"], second["start"]) == (
        "rl_reasoning", "rl_general", "<previous>")
    assert (first["section"]["steps"], second["section"]["steps"]) == (
        t["reasoning_steps"], t["general_steps"])
    # equal tokens: one Φ per step in both stages, as in the joint arm
    assert first["section"]["updates_per_rollout"] == 1
    assert second["section"]["updates_per_rollout"] == 1 != PARAMS["rl_general"][
        "updates_per_rollout"]
    [joint] = arms_mod.arm_runs(PARAMS, "two_stage", "joint")
    assert joint["section"]["steps"] == t["reasoning_steps"] + t["general_steps"]
    # equal token budgets: 16 steps at Φ 12,288 and 12 at 8,192 in the two-stage arm are
    # 294,912 tokens; 28 joint steps at Φ 10,533 are 294,924 (the nearest whole Φ)
    assert (PARAMS["rl_reasoning"]["token_budget"], PARAMS["rl_general"]["token_budget"],
            t["reasoning_steps"], t["general_steps"]) == (12288, 8192, 16, 12)
    assert joint["section"]["token_budget"] == 10533
    assert joint["section"]["updates_per_rollout"] == 1
    mix = joint["section"]["domain_mix"]
    assert {"ifeval", "open_qa"} <= set(mix) and mix["ifeval"] == max(
        PARAMS["rl_reasoning"]["domain_mix"].values())
    bad = {**PARAMS, "findings": {**PARAMS["findings"], "rl": {"stpes": 3}}}
    with pytest.raises(ValueError, match="stpes"):
        arms_mod.arm_runs(bad, "entropy_band", "6")


def test_flow_runs_the_stages_dvc_lists():
    from flows.findings import FINDINGS, finding_stages

    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed")
    out = subprocess.run([dvc, "stage", "list", "--name-only", "findings/dvc.yaml"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    listed = [s.split(":", 1)[1] for s in out]
    ours = [s for f in FINDINGS for s in finding_stages(REPO / "findings/dvc.yaml", f)]
    assert sorted(ours) == sorted(listed)
    assert finding_stages(REPO / "findings/dvc.yaml", "normalisers")[:2] == [
        "normalisers@budget-1", "normalisers@budget-2"]


def test_findings_page_is_generated_from_the_committed_metrics():
    rc = subprocess.run([sys.executable, "scripts/findings_report.py", "page", "--check"], cwd=REPO,
                        capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr


def test_finding_headline_keeps_the_verdict_and_its_figures():
    per = {"budget": {"tokens_per_update_cv": 0.0, "train_cpu_s_per_update_cv": 0.1,
                      "train_s_per_update_cv": 0.3, "fresh": 20.5, "step_s": 9.0},
           "token_mean": {"tokens_per_update_cv": 0.15, "train_cpu_s_per_update_cv": 0.2,
                          "train_s_per_update_cv": 0.4, "fresh": 19.0, "step_s": 9.5}}
    assert fd.finding_headline({"finding": "normalisers", "verdict": "supports",
                                "normalisers": per, "arms": {}}) == {
        "verdict": "supports", "tokens_per_update_cv": {"budget": 0.0, "token_mean": 0.15},
        "train_time_cv": {"budget": 0.1, "token_mean": 0.2},
        "fresh": {"budget": 20.5, "token_mean": 19.0}}
    # an arm without CPU seconds: both fall back to the wall seconds
    del per["token_mean"]["train_cpu_s_per_update_cv"]
    head = fd.finding_headline({"finding": "normalisers", "verdict": "x", "normalisers": per})
    assert head["train_time_cv"] == {"budget": 0.3, "token_mean": 0.4}
    arms = [{"epoch": 4, "entropy": 0.6, "in_band": False, "score": 2.5},
            {"epoch": 8, "entropy": 0.2, "in_band": True, "score": 21.0}]
    assert fd.finding_headline({"finding": "entropy_band", "verdict": "contradicts",
                                "arms": arms, "spearman_entropy_score": -1.0}) == {
        "verdict": "contradicts", "best_epoch": 8, "best_in_band": True,
        "spearman_entropy_score": -1.0}
    diff = {"all_reasoning": {"diff": -1.5, "ci_low": -3, "ci_high": 0}, "ifeval": {"diff": 2.5}}
    scores = {"start": {"all_reasoning": 24.0}, "joint": {"all_reasoning": 26.0}}
    assert fd.finding_headline({"finding": "two_stage", "verdict": "cannot tell",
                                "two_stage_minus_joint": diff, "scores": scores}) == {
        "verdict": "cannot tell", "two_stage_minus_joint": {"all_reasoning": -1.5, "ifeval": 2.5}}


def test_findings_declare_headlines_as_metrics_and_match_the_committed_reports():
    stages = yaml.safe_load((REPO / "findings/dvc.yaml").read_text())["stages"]
    for f in ("normalisers", "entropy_band", "two_stage"):
        spec = stages[f"{f}-report"]
        assert spec["metrics"] == [{f"reports/findings/{f}/headline.json": {"cache": False}}]
        assert {f"reports/findings/{f}/metrics.json": {"cache": False}} in spec["outs"]
        out = json.loads((REPO / f"reports/findings/{f}/metrics.json").read_text())
        head = json.loads((REPO / f"reports/findings/{f}/headline.json").read_text())
        assert head == fd.finding_headline(out)

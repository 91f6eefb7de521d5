"""scripts/results_page.py: the results page and the README block come from committed reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_page", REPO / "scripts/results_page.py")
page = importlib.util.module_from_spec(spec)
spec.loader.exec_module(page)


def _row(avg, diff=None, lo=None, hi=None):
    r = {"problems": 150, "avg": avg}
    if diff is not None:
        r.update(diff=diff, ci_low=lo, ci_high=hi)
    return r


PROBE = {"baseline": "sft", "seed": 7, "models": {
    "sft": {"all_reasoning": _row(20.0), "ifeval": _row(60.0)},
    "rl_reasoning": {"all_reasoning": _row(26.0, 6.0, 4.0, 8.0), "ifeval": _row(61.0, 1.0, -2, 4)},
    "rl_general": {"all_reasoning": _row(25.0, 5.0, 3.0, 7.0), "ifeval": _row(75.0, 15, 11, 19)},
}}


def test_targets_are_computed_from_the_check():
    t = page.targets(PROBE, {"total_seconds": 1000.0, "cpu_count": 2})
    assert t[0][1:] == ("+6.0 (95% CI +4.0 to +8.0)", "met")
    assert t[1][1:] == ("+14.0", "met")  # 75 - 61 on ifeval
    assert t[2][1:] == ("-1.0", "met")  # 25 - 26 on reasoning
    assert t[3][1:] == ("1000 s on 2 cores", "within 20 min")
    weak = json.loads(json.dumps(PROBE))
    weak["models"]["rl_reasoning"]["all_reasoning"].update(diff=5.5, ci_low=-0.5)
    assert page.targets(weak, {})[0][2] == "**not met**"  # +5.5 but the CI reaches below 0
    within = {"diff": -0.8, "ci_low": -2.0, "ci_high": 0.4}
    assert page.targets(PROBE, {}, within)[1] == (
        "the placebo of rl_reasoning's defaults moves fresh reasoning by <= 1 point",
        "-0.8 (95% CI -2.0 to +0.4)", "met")
    assert page.targets(PROBE, {}, {**within, "diff": -4.7})[1][2] == "**not met**"
    # a probe with the paired comparison against rl_reasoning: its difference and CI decide
    # (+9.6 paired; the unpaired averages above would say +14.0)
    paired = {**PROBE, "versus": {"rl_reasoning": {"rl_general": {
        "ifeval": _row(75.0, 9.6, 7.0, 12.1), "all_reasoning": _row(25.0, -2.4, -3.0, -1.8)}}}}
    t = page.targets(paired, {})
    assert t[1][1:] == ("+9.6 (95% CI +7.0 to +12.1)", "**not met**")
    assert t[2][1:] == ("-2.4 (95% CI -3.0 to -1.8)", "**not met**")


def test_placebo_arm_is_read_from_the_controls_record(tmp_path):
    assert page.placebo_arm(tmp_path) is None
    rec = tmp_path / "reports/experiments/placebo/arms.json"
    rec.parent.mkdir(parents=True)
    fresh = {"all_reasoning": {"diff": -3.0, "ci_low": -4.0, "ci_high": -2.0}}
    rec.write_text(json.dumps({"arms": {
        "start": {"fresh": {"all_reasoning": {"avg": 20.0}}},
        "real": {"overrides": {}, "fresh": {"all_reasoning": {"diff": 2.0}}},
        "placebo": {"overrides": {"placebo": True}, "fresh": fresh}}}))
    assert page.placebo_arm(tmp_path) == fresh["all_reasoning"]


def _tree(tmp_path: Path) -> Path:
    for rel, content in {
        "reports/probe/gains.json": PROBE,
        "reports/pipeline/timing.json": {"commit": "abc", "date": "d", "cpu_count": 2,
                                         "load_avg": [3.14, 2.5, 2.0],
                                         "seconds": {"curate": 1.0}, "total_seconds": 1.0,
                                         "cpu_seconds": {"curate": 1.7},
                                         "total_cpu_seconds": 1.7},
        "reports/select/metrics.json": {"chosen_epoch": 9, "chosen_entropy": 0.2},
        "reports/rl_reasoning/metrics.json": {"steps": 3, "verdict": "generalised: x."},
        "reports/rl_general/metrics.json": {"steps": 2, "verdict": "no held-out gain shown."},
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(content))
    (tmp_path / "reports/bench/table.md").parent.mkdir(parents=True)
    (tmp_path / "reports/bench/table.md").write_text("| model | x |\n|---|---:|\n| sft | 1.0 |\n")
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"intro\n{page.BEGIN}\nold\n{page.END}\noutro\n")
    return tmp_path


def test_page_and_block_are_written_then_checked(tmp_path):
    root = _tree(tmp_path)
    assert page.main(["--root", str(root), "--check"]) == 1
    assert page.main(["--root", str(root)]) == 0
    readme = (root / "README.md").read_text()
    assert readme.startswith("intro\n") and readme.endswith("\noutro\n") and "old" not in readme
    assert "| rl_reasoning | 26.0 (+6.0; +4.0 to +8.0)" in readme
    results = (root / "docs/results.md").read_text()
    assert "epoch 9" in results and "generalised: x." in results and "| sft | 1.0 |" in results
    assert "(1, 5, 15 min): 3.1, 2.5, 2.0 on 2 cores" in results
    assert "| curate | 1.0 | 1.7 |" in results and "| **total** | 1.0 | 1.7 |" in results
    assert page.main(["--root", str(root), "--check"]) == 0
    (root / "reports/rl_reasoning/metrics.json").write_text(json.dumps(
        {"steps": 3, "verdict": "changed."}))
    assert page.main(["--root", str(root), "--check"]) == 1


def test_missing_report_or_block_is_a_clear_error(tmp_path):
    root = _tree(tmp_path)
    (root / "reports/probe/gains.json").unlink()
    with pytest.raises(SystemExit, match="gains.json: missing"):
        page.main(["--root", str(root)])
    root = _tree(tmp_path / "b")
    (root / "README.md").write_text("no block\n")
    with pytest.raises(SystemExit, match="no <!-- results:begin -->"):
        page.main(["--root", str(root)])


def test_params_digest_is_the_runs_commit_not_the_checkout(tmp_path):
    import hashlib
    import subprocess

    def git(*a):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *a],
                              cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    git("add", "params.yaml")
    git("commit", "-qm", "run")
    commit = git("rev-parse", "HEAD").strip()
    (tmp_path / "params.yaml").write_text("seed: 1\nnew_key: 2\n")  # edited after the run
    assert page.run_params_digest(tmp_path, commit) == \
        hashlib.sha256(b"seed: 1\n").hexdigest()[:12]
    assert page.run_params_digest(tmp_path, "") == \
        hashlib.sha256(b"seed: 1\nnew_key: 2\n").hexdigest()[:12] + " (this checkout's)"

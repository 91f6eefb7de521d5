"""scripts/rl_arms.py: arm specs and their params overrides (checked by the stage's loader)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
spec = importlib.util.spec_from_file_location("rl_arms", REPO / "scripts/rl_arms.py")
arms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(arms)

PARAMS = {"seed": 1, "rl_reasoning": {"steps": 20, "optim": {"lr": 1e-4}}}


def test_parse_arm_reads_yaml_values():
    assert arms.parse_arm("real") == ("real", {})
    name, o = arms.parse_arm("hot:optim.lr=2e-4,placebo=true,steps=40,kl_estimator=k2")
    assert name == "hot"
    assert o == {"optim.lr": 2e-4, "placebo": True, "steps": 40, "kl_estimator": "k2"}
    with pytest.raises(SystemExit, match="key=value"):
        arms.parse_arm("bad:steps")
    with pytest.raises(SystemExit, match="name"):
        arms.parse_arm("no space:steps=1")


def test_overrides_are_applied_to_a_copy_and_checked():
    out = arms.with_overrides(PARAMS, "rl_reasoning", {"optim.lr": 3e-4, "placebo": True})
    assert out["rl_reasoning"]["optim"]["lr"] == 3e-4 and out["rl_reasoning"]["placebo"] is True
    assert PARAMS["rl_reasoning"]["optim"]["lr"] == 1e-4  # the base params are untouched
    with pytest.raises(SystemExit, match="rl_reasoning.stpes: unknown key"):
        arms.with_overrides(PARAMS, "rl_reasoning", {"stpes": 3})
    with pytest.raises(SystemExit, match="steps: must be > 0"):
        arms.with_overrides(PARAMS, "rl_reasoning", {"steps": 0})


def test_recorded_command_names_no_path_outside_the_checkout(tmp_path):
    root = tmp_path / "checkout"
    argv = ["--stage", "rl_reasoning", "--start", str(root / "models/selected"),
            f"--tasks={root / 'data/rl/reasoning.parquet'}", "--out-dir", "/scratch/exp/placebo",
            "--record", "/elsewhere/clone/reports/experiments/placebo", "--note", "a note",
            "--arm", "placebo:placebo=true"]
    assert arms.rerun_command(argv, root) == (
        "scripts/rl_arms.py --stage rl_reasoning --start models/selected --tasks "
        "data/rl/reasoning.parquet --out-dir runs/placebo --record "
        "reports/experiments/placebo --note 'a note' --arm placebo:placebo=true")
    out = tmp_path / "out"
    assert arms.shown(str(out / "pool.parquet"), out, root) == "<out-dir>/pool.parquet"
    assert arms.shown("/data/pool.parquet", out, root) == "/data/pool.parquet"  # as given
    # no --record: the out-dir names the run
    assert "--out-dir runs/sweep" in arms.rerun_command(["--out-dir", "/tmp/x/sweep"], root)

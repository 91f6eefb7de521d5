"""scripts/heldout_probe.py: fresh tasks leave out every curated prompt."""

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
    df = probe.fresh_tasks(PARAMS, ["math", "knights_knaves"], 30, 7, curated)
    assert df.group_by("domain").len().sort("domain").to_dicts() == [
        {"domain": "knights_knaves", "len": 30}, {"domain": "math", "len": 30}]
    assert not set(df["prompt"]) & {t["prompt"] for t in taken}
    assert df["prompt"].n_unique() == df.height
    assert set(df["split"]) == {"bench"}


def test_missing_split_or_generator_is_an_error(tmp_path):
    with pytest.raises(SystemExit, match="sft.parquet: missing"):
        probe.fresh_tasks(PARAMS, ["math"], 5, 1, tmp_path)
    curated = _curated(tmp_path, generate("math", 4, 1, **PARAMS["curate"]["generators"]["math"]
                                          ["knobs"]))
    with pytest.raises(SystemExit, match="no generator"):
        probe.fresh_tasks(PARAMS, ["sudoku"], 5, 1, curated)

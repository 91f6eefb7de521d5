"""The resumable-state folder: ``latest`` moves only by an atomic rename after a tag is whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import atomic
from pipeline.stages.sft import StageHooks
from pipeline.train import resume
from pipeline.train.sft import LoopState


def make_tag(state_dir, tag):
    (state_dir / tag).mkdir(parents=True)
    (state_dir / tag / "mp_rank_00_model_states.pt").write_bytes(b"x")


def test_commit_tag_points_latest_and_drops_older_tags(tmp_path):
    make_tag(tmp_path, "step000002")
    make_tag(tmp_path, "step000004")
    resume.commit_tag(tmp_path, "step000004")
    assert (tmp_path / "latest").read_text() == "step000004"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step000004"]


def test_a_commit_killed_before_its_rename_leaves_the_previous_tag_loadable(tmp_path, monkeypatch):
    make_tag(tmp_path, "step000002")
    resume.commit_tag(tmp_path, "step000002")
    make_tag(tmp_path, "step000004")

    def killed(*_a, **_k):  # the process dies where the new pointer would be renamed in
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        resume.commit_tag(tmp_path, "step000004")
    # the pointer was never truncated, and the tag it names was not pruned
    assert (tmp_path / "latest").read_text() == "step000002"
    assert (tmp_path / "step000002" / "mp_rank_00_model_states.pt").exists()


def test_prepare_out_dir_resumes_only_the_same_run_with_a_committed_tag(tmp_path):
    out = tmp_path / "model"
    assert resume.prepare_out_dir(out, "fp-a") is False  # new folder, fingerprint written
    assert json.loads((out / resume.FINGERPRINT).read_text()) == {"fingerprint": "fp-a"}
    state = out / resume.STATE_DIR
    make_tag(state, "step000002")
    assert resume.prepare_out_dir(out, "fp-a") is False  # a tag without ``latest``
    resume.commit_tag(state, "step000002")
    assert resume.prepare_out_dir(out, "fp-a") is True
    assert resume.prepare_out_dir(out, "fp-b") is False  # another run's state: wiped
    assert not state.exists()


class FakeEngine:
    """Records the save DeepSpeed is asked for and what ``latest`` said at that moment."""

    def __init__(self):
        self.calls = []

    def save_checkpoint(self, save_dir, tag, client_state, save_latest=True):
        latest = Path(save_dir) / "latest"
        self.calls.append({"tag": tag, "save_latest": save_latest,
                           "latest_during": latest.read_text() if latest.exists() else None,
                           "loop": client_state["loop"]})
        make_tag(Path(save_dir), tag)
        return True


def test_sft_save_state_commits_latest_itself_after_deepspeed_returns(tmp_path):
    hooks = object.__new__(StageHooks)  # only the fields save_state reads
    hooks.engine, hooks.out, hooks.rank = FakeEngine(), tmp_path, 0
    state = LoopState()
    state.step = 2
    hooks.save_state(state)
    state.step = 4
    hooks.save_state(state)
    calls = hooks.engine.calls
    assert [c["save_latest"] for c in calls] == [False, False]  # DeepSpeed never writes it
    assert [c["latest_during"] for c in calls] == [None, "step000002"]
    assert calls[1]["loop"]["step"] == 4
    state_dir = tmp_path / resume.STATE_DIR
    assert (state_dir / "latest").read_text() == "step000004"
    assert sorted(p.name for p in state_dir.iterdir()) == ["latest", "step000004"]

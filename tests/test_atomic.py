"""Atomic folders: a process killed between atomic_dir's two renames loses nothing."""

from __future__ import annotations

import os

import pytest
import torch

from pipeline import atomic
from pipeline.atomic import atomic_dir, recover_dir
from pipeline.rl import checkpoint


def write_version(folder, text):
    with atomic_dir(folder) as tmp:
        (tmp / "v.txt").write_text(text)


def kill_between_renames(monkeypatch):
    """os.replace that 'dies' on its second call: the old version is aside, the new one not in."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


def one_then_killed_two(folder, monkeypatch):
    """Version "one" in place, then a replace by "two" killed between its renames."""
    write_version(folder, "one")
    with monkeypatch.context() as m:
        kill_between_renames(m)
        with pytest.raises(KeyboardInterrupt):
            write_version(folder, "two")


def test_recover_dir_puts_back_the_version_a_killed_replace_moved_aside(tmp_path, monkeypatch):
    folder = tmp_path / "state"
    one_then_killed_two(folder, monkeypatch)
    assert not folder.exists() and (tmp_path / ".state.old" / "v.txt").read_text() == "one"
    recover_dir(folder)
    assert (folder / "v.txt").read_text() == "one"
    assert not (tmp_path / ".state.old").exists()
    recover_dir(folder)  # nothing to do now
    write_version(folder, "three")  # and the next replace works as usual
    assert (folder / "v.txt").read_text() == "three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_the_next_atomic_dir_recovers_first(tmp_path, monkeypatch):
    folder = tmp_path / "state"
    one_then_killed_two(folder, monkeypatch)
    with pytest.raises(RuntimeError), atomic_dir(folder):
        # a save that fails before its renames: the recovered old version stays in place
        assert (folder / "v.txt").read_text() == "one"
        raise RuntimeError("failed half-way")
    assert (folder / "v.txt").read_text() == "one"


class FileUpdater:
    """Saves and loads one tensor, as the optimizer state stands in for it here."""

    def __init__(self, value):
        self.value = torch.tensor(float(value))

    def save(self, folder):
        folder.mkdir()
        torch.save(self.value, folder / "w.pt")

    def load(self, folder):
        self.value = torch.load(folder / "w.pt")


def test_rl_resume_state_survives_a_save_killed_between_renames(tmp_path, monkeypatch):
    folder = tmp_path / "resume"
    checkpoint.save(folder, FileUpdater(1.0), "fp", step=3, steps=[{"loss": 1.0}], evals=[])
    with monkeypatch.context() as m:
        kill_between_renames(m)
        with pytest.raises(KeyboardInterrupt):
            checkpoint.save(folder, FileUpdater(2.0), "fp", step=4, steps=[], evals=[])
    assert not folder.exists()
    up = FileUpdater(0.0)
    state = checkpoint.load(folder, up, "fp")
    assert state is not None and state.step == 3 and state.steps == [{"loss": 1.0}]
    assert float(up.value) == 1.0

"""The score every verifier returns (re-exported by :mod:`pipeline.verify`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One response's score: ``reward`` in [0, 1], ``correct`` flag, and a short ``reason``."""

    reward: float
    correct: bool
    reason: str

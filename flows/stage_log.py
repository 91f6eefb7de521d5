"""A stage's output as Prefect log records: each line at its level, progress bars thinned and
clean of terminal escape codes, DVC's hints kept out of the flow's log.

- Python warnings (``file.py:12: UserWarning: ...`` and the source line that follows), lines
  tagged ``[WARNING]`` or starting with ``WARNING``/``warning:`` are WARNING records; a
  traceback (header, frames and the exception line) and ``ERROR`` lines are ERROR records.
- DVC's advice after a stage (``To track the changes with git, run: ... git add dvc.lock``,
  ``To enable auto staging ...``, ``Use `dvc push` ...``) and blank lines are DEBUG records,
  below the level Prefect ships to its server.
- Everything else is INFO.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
BAR = re.compile(r"(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>[\d.]+[kMG]?)/(?P<total>[\d.]+[kMG]?)")
PY_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")
WARNING = re.compile(r"\[WARNING\]|^WARNING\b|^warning:", re.IGNORECASE)
ERROR = re.compile(r"\[ERROR\]|^ERROR\b")
TRACEBACK = "Traceback (most recent call last):"
EXCEPTION = re.compile(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b.*")
DVC_HINTS = ("To track the changes with git, run:", "To enable auto staging, run:",
             "dvc config core.autostage true", "Use `dvc push` to send your updates")


def clean(line: str) -> str:
    r"""The text of one output line: escape codes (colours, tqdm's cursor-up ``\x1b[A``) and
    the line ending removed; of a line a carriage return redrew, the last drawing."""
    text = ANSI.sub("", line).rstrip("\r\n")
    return text.rsplit("\r", 1)[-1].rstrip()


def bar_state(text: str) -> str | None:
    """``"start"`` (a progress bar at 0%), ``"running"``, ``"done"`` (n == total), or None for
    a line that is not a progress bar."""
    m = BAR.search(text)
    if m is None:
        return None
    if m["n"] == m["total"]:
        return "done"
    return "start" if m["pct"] == "0" else "running"


def forwarded_lines(lines: Iterable[str], every_s: float,
                    clock: Callable[[], float]) -> Iterator[str]:
    r"""The lines worth logging: every line ending in a newline, and of the progress redraws
    (a line ending in a bare "\r", or a bar not yet done, such as a nested bar's line) one per
    ``every_s`` seconds; a bar at 0% is dropped (its final state follows). A bar's final state
    always passes, once: a redraw at 100% waits for the line that closes the bar. A redraw still
    held back when the stream ends is sent then. Text is not changed."""
    last_sent = -float("inf")
    pending = None  # the latest redraw not forwarded
    for line in lines:
        state = bar_state(clean(line))
        if state == "start":
            continue
        if line.endswith("\r") and state == "done":
            pending = line
            continue
        if line.endswith("\r") or state == "running":
            if not line.strip():
                continue  # tqdm's leading "\r" before its first draw
            now = clock()
            if now - last_sent >= every_s:
                last_sent, pending = now, None
                yield line
            else:
                pending = line
            continue
        pending = None  # superseded by this full line
        yield line
    if pending is not None:
        yield pending


class StageLog:
    """Maps a stage's output lines to (level, text) records; keeps the state a warning's
    source line or a traceback's frames need."""

    def __init__(self) -> None:
        self.follow: int | None = None  # level of an indented continuation line
        self.in_traceback = False

    def record(self, line: str) -> tuple[int, str]:
        text = clean(line)
        if not text.strip():
            self.follow = None
            return logging.DEBUG, text
        if self.in_traceback:
            if not text.startswith((" ", "\t")):
                self.in_traceback = False
            return logging.ERROR, text
        if self.follow is not None and text.startswith((" ", "\t")):
            return self.follow, text
        self.follow = None
        if text == TRACEBACK:
            self.in_traceback = True
            return logging.ERROR, text
        if PY_WARNING.match(text):
            self.follow = logging.WARNING
            return logging.WARNING, text
        if WARNING.search(text):
            return logging.WARNING, text
        if ERROR.search(text) or EXCEPTION.fullmatch(text):
            return logging.ERROR, text
        if text.lstrip().startswith(DVC_HINTS) or text.strip().startswith("git add "):
            return logging.DEBUG, text
        return logging.INFO, text

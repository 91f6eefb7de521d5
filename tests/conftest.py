"""Shared test fixtures: a free port, a tiny DVC project, the repo root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# The rank environment DeepSpeed sets up (setup_dist_env); child processes that must start
# their own one-rank group drop it
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(autouse=True, scope="session")
def _quiet_env():
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MINI_DVC = """\
stages:
  make_numbers:
    cmd: python mini_stage.py make_numbers --out data/numbers.json
    deps: [mini_stage.py]
    params: [make_numbers]
    outs: [data/numbers.json]
  sum_numbers:
    cmd: python mini_stage.py sum_numbers --inp data/numbers.json --out reports/sum.json
    deps: [mini_stage.py, data/numbers.json]
    params: [sum_numbers]
    metrics:
      - reports/sum.json:
          cache: false
"""

MINI_PARAMS = """\
seed: 1
make_numbers:
  count: 5
sum_numbers:
  scale: 2
"""


def make_mini_project(root: Path) -> Path:
    """A git+DVC project with two trivial stages that use the real tracking and flow code."""
    root.mkdir(parents=True, exist_ok=True)
    for pkg in ("pipeline", "flows"):
        shutil.copytree(REPO / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", root / "prefect.yaml")
    shutil.copy(REPO / "tests" / "fixtures" / "mini_stage.py", root / "mini_stage.py")
    (root / "dvc.yaml").write_text(MINI_DVC)
    (root / "params.yaml").write_text(MINI_PARAMS)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    run = lambda *c: subprocess.run(c, cwd=root, check=True, capture_output=True, env=env)  # noqa: E731
    run("git", "init", "-q")
    run("git", "config", "user.email", "ci@example.com")
    run("git", "config", "user.name", "ci")
    run(str(VENV_BIN / "dvc"), "init", "-q")
    run(str(VENV_BIN / "dvc"), "config", "core.analytics", "false")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "mini project")
    return root

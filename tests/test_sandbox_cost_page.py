"""scripts/perf/sandbox_cost.py: the Cost table of docs/verify.md comes from the committed
record."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("sandbox_cost",
                                              REPO / "scripts/perf/sandbox_cost.py")
cost = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cost)


def test_table_from_a_record():
    rec = {"run": {"commit": "abc", "rev": "main~1", "rev_commit": "def", "rev_subject": "s",
                   "n": 30, "date": "d", "cpu_count": 2, "load_avg_start": [1.0, 0.5, 0.25],
                   "command": "c"},
           "workloads": {"call": {"old_median_s": 0.08, "old_p90_s": 0.1, "new_median_s": 0.02,
                                  "new_p90_s": 0.03, "ratio": 0.25}}}
    text = cost.page_block(rec)
    assert "| call | 0.080 | 0.100 | 0.020 | 0.030 | 0.25 |" in text
    assert "commit `abc` against `main~1` (`def`: s), 30 executions" in text
    assert "1.0, 0.5, 0.25 at the start" in text


def test_committed_page_is_current():
    assert cost.main(["--page", "--check"]) == 0

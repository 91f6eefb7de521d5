"""docs/curate.md's dedup tables: rendered from the committed benchmark records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dedup_page", REPO / "scripts/perf/dedup_page.py")
dedup_page = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dedup_page)


def _row(system: str, **over) -> dict:
    row = {"system": system, "seconds": 2.0, "docs_per_s": 500.0, "peak_rss_mb": 900.0,
           "precision": 1.0, "recall": 0.96, "recall_1_edits": 1.0, "recall_2_edits": 0.99,
           "recall_3_edits": 0.9, "recall_jaccard_0.7_0.8": 0.98, "hard_negatives_merged": 0.0,
           "params": {"bands": 32, "rows": 4, "threshold": 0.6}}
    return row | over


def test_targets_marked_by_the_thresholds():
    rec = {"docs": 1000, "results": [
        _row("stream:fast", x_datatrove=10.0),
        _row("stream:slow", x_datatrove=9.96, peak_rss_mb=1025.0, recall=0.949),
        _row("stream:loose", x_datatrove=12.0, precision=0.995, hard_negatives_merged=0.02),
        {**_row("datatrove", x_datatrove=1.0), "params": {}}]}
    lines = dedup_page.targets(rec).splitlines()[2:]
    assert len(lines) == 3  # datatrove is the peer, not a setting
    fast, slow, loose = lines
    assert "**not met**" not in fast and "10.0×: met" in fast
    assert "10.0×: **not met**" in slow  # 9.96 rounds to 10.0 but is below the target
    assert "1,025 MB: **not met**" in slow and "0.9490: **not met**" in slow
    assert "0.9950, 2%: **not met**" in loose and "12.0×: met" in loose


def test_block_orders_by_corpus_size_and_names_the_record(tmp_path):
    perf = tmp_path / "reports" / "perf"
    perf.mkdir(parents=True)
    small = {"docs": 10, "results": [_row("stream:default")]}
    big = {"docs": 20, "run": {"commit": "abc-dirty", "date": "d", "cpu_count": 2,
                               "load_avg_start": [1.0, 1.0, 1.0], "load_avg_end": [1.1, 1, 1],
                               "versions": {"numba": "1"}},
           "results": [_row("stream:default", x_datatrove=11.0),
                       {**_row("datatrove", x_datatrove=1.0), "params": {}}]}
    (perf / "dedup_bench_a.json").write_text(json.dumps(small))
    (perf / "dedup_bench_b.json").write_text(json.dumps(big))
    text = dedup_page.block(tmp_path)
    assert text.index("**20 documents**") < text.index("**10 documents**")
    assert "largest corpus measured with datatrove (20 documents" in text
    assert "`-dirty`" in text and "no commit or load average" in text


def test_committed_page_is_current():
    assert dedup_page.main(["--check"]) == 0

"""The closing summary of ``make run`` shows every SFT checkpoint's entropy next to the band."""

from __future__ import annotations

import json

import pytest

from pipeline import summary

CSV = """\
epoch,checkpoint,entropy,val_accuracy,rollout_accuracy,mean_tokens,truncated,in_band,chosen
1,models/sft/epoch_1,1.40214,0.0416,0.0,40.9,0.01,false,false
2,models/sft/epoch_2,0.45423,0.2916,0.08,43.1,0.0,true,false
3,models/sft/epoch_3,0.41034,0.3125,0.10,42.8,0.01,true,true
"""


def test_summary_prints_checkpoint_entropies_band_and_choice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports" / "select").mkdir(parents=True)
    (tmp_path / "models" / "selected").mkdir(parents=True)
    (tmp_path / "reports" / "select" / "checkpoints.csv").write_text(CSV)
    (tmp_path / "models" / "selected" / "choice.json").write_text(json.dumps({
        "checkpoint": "models/sft/epoch_3", "entropy": 0.41034306, "band": [0.3, 0.5],
        "why": "2 checkpoints in band [0.3, 0.5]; tie-break latest: epoch 3"}))
    monkeypatch.setenv("COLUMNS", "200")
    summary.main()
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # rich wraps the title to the table's width
    assert "token entropy on RL prompts, band [0.3, 0.5] nats" in flat
    rows = {cells[0]: cells[1:] for cells in
            ([c.strip() for c in ln.split("\u2502")[1:-1]] for ln in out.splitlines()
             if ln.startswith("\u2502"))}
    assert rows == {"1": ["1.402", "4.2%", "", ""],
                    "2": ["0.454", "29.2%", "yes", ""],
                    "3": ["0.410", "31.2%", "yes", "<-"]}
    assert "models/sft/epoch_3 (entropy 0.410 nats" in flat


BENCH = """\
| model | all_general | all_reasoning | code | countdown | ifeval | knights_knaves | math | open_qa | sudoku |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| base | 8.8 | 0.0 | 0.0 | 0.0 | 17.5 | 0.0 | 0.0 | 0.0 | 0.0 |
| sft | 33.1 | 23.1 | 13.8 | 4.4 | 44.4 | 8.1 | 22.5 | 21.9 | 66.9 |
| rl_reasoning | 33.4 | 25.0 | 11.2 | 3.8 | 47.5 | 6.2 | 26.9 | 19.4 | 76.9 |
| rl_general | 40.0 | 22.9 | 11.9 | 4.4 | 58.8 | 3.8 | 23.1 | 21.2 | 71.2 |

avg_at_k in %. code: 40 problems, 160 samples per model.
"""


def printed_cells(out: str) -> dict[tuple[str, str], str]:
    """(row label, column name) -> cell text, over every table rich printed (header lines
    start with the heavy bar, body lines with the light one)."""
    cells: dict[tuple[str, str], str] = {}
    header: list[str] = []
    for ln in out.splitlines():
        if ln.startswith("\u2503"):
            header = [c.strip() for c in ln.split("\u2503")[1:-1]]
        elif ln.startswith("\u2502"):
            row = [c.strip() for c in ln.split("\u2502")[1:-1]]
            for name, value in zip(header[1:], row[1:], strict=True):
                assert (row[0], name) not in cells, f"{row[0]}/{name} printed twice"
                cells[(row[0], name)] = value
    return cells


def bench_cells(text: str) -> dict[tuple[str, str], str]:
    """(benchmark, model) -> value straight from the Markdown source."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for ln in lines[2:]:
        row = [c.strip() for c in ln.strip("|").split("|")]
        out.update({(bench, row[0]): v for bench, v in zip(header[1:], row[1:], strict=True)})
    return out


def run_summary(tmp_path, monkeypatch, capsys, bench: str) -> str:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports" / "bench").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports" / "bench" / "table.md").write_text(bench)
    (tmp_path / "reports" / "select").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "selected").mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports" / "select" / "checkpoints.csv").write_text(CSV)
    (tmp_path / "models" / "selected" / "choice.json").write_text(json.dumps({
        "checkpoint": "models/sft/epoch_3", "entropy": 0.41, "band": [0.3, 0.5], "why": "x"}))
    monkeypatch.setenv("COLUMNS", "80")
    summary.main()
    out = capsys.readouterr().out
    assert max(len(ln) for ln in out.splitlines()) <= 80
    assert "\u2026" not in out  # rich's ellipsis: nothing was cut
    return out


def test_bench_table_fits_80_columns_transposed_with_every_name_whole(
        tmp_path, monkeypatch, capsys):
    out = run_summary(tmp_path, monkeypatch, capsys, BENCH)
    cells = printed_cells(out)
    bench = bench_cells(BENCH)  # 9 benchmarks x 4 models
    assert len(bench) == 36
    assert {k: v for k, v in cells.items() if k in bench} == bench
    # transposed: the header names the four models, whole
    assert "\u2503 benchmark      \u2503 base \u2503  sft \u2503 rl_reasoning \u2503 rl_general \u2503" in out
    # the checkpoint table still prints, whole
    assert cells[("3", "entropy")] == "0.410" and cells[("3", "chosen")] == "<-"
    assert "avg_at_k in %." in out


def test_a_table_too_wide_even_transposed_is_split_repeating_the_labels(
        tmp_path, monkeypatch, capsys):
    models = [f"rl_general_lr{k}e-4_seed{1000 + k}" for k in range(1, 6)]  # 5 x 26 characters
    lines = BENCH.splitlines()
    rows = [f"| {m} | " + " | ".join(f"{k}{j}.5" for j in range(9)) + " |"
            for k, m in enumerate(models, start=1)]
    wide = "\n".join(lines[:2] + rows + lines[6:]) + "\n"
    out = run_summary(tmp_path, monkeypatch, capsys, wide)
    cells = printed_cells(out)
    bench = bench_cells(wide)
    assert len(bench) == 45 and {k: v for k, v in cells.items() if k in bench} == bench
    # label column 14 + 3 cells, each model 26 + 3, left edge 1: 1 + 17 + 2 * 29 = 76 <= 80 <
    # 105, so two models per table and three tables
    assert out.count("Benchmarks (held-out) (") == 3
    assert "Benchmarks (held-out) (3/3)" in out
    assert out.count("\u2503 benchmark ") == 3


def test_bad_table_names_file_and_line():
    with pytest.raises(ValueError, match=r"t.md: line 3 has 2 cells, the header 3"):
        summary.parse_markdown_table("| a | b | c |\n|---|---|---|\n| x | 1 |\n", "t.md")

"""The closing summary of ``make run`` shows every SFT checkpoint's entropy next to the band."""

from __future__ import annotations

import json

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

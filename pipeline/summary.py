"""The closing summary of ``make run``: the benchmark table, where the models are, and how to
open the UIs. Reads files the stages wrote; computes nothing.

    python -m pipeline.summary

Tables fit the terminal without shortening a name: a table wider than the terminal is
transposed (the benchmark table: one row per benchmark, one column per model) and, if still
too wide, split into several tables that each repeat the first column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

MODEL_DIRS = ("models/base", "models/sft", "models/selected", "models/rl_reasoning",
              "models/rl_general")


def main(console: Console | None = None) -> None:
    console = console or Console()
    table = Path("reports/bench/table.md")
    if table.exists():
        header, rows, note = parse_markdown_table(table.read_text(), str(table))
        for t in bench_tables(header, rows, console.width):
            console.print(t)
        if note:
            console.print(Text(note))
    choice = Path("models/selected/choice.json")
    if choice.exists():
        c = json.loads(choice.read_text())
        for t in checkpoint_table(Path("reports/select/checkpoints.csv"), c.get("band"),
                                  console.width):
            console.print(t)
        console.print(f"Selected SFT checkpoint: {c.get('checkpoint')} "
                      f"(entropy {float(c.get('entropy', float('nan'))):.3f} nats, "
                      f"{c.get('why', '')})")
    console.print("\n[bold]Models[/bold]")
    for d in MODEL_DIRS:
        if Path(d).exists():
            console.print(f"  {d}")
    console.print(
        "\n[bold]Look around[/bold]\n"
        "  make ui                      MLflow UI: runs, curves, models (127.0.0.1:5000)\n"
        "  make prefect-up              Prefect server, worker, flows (127.0.0.1:4200)\n"
        "  .venv/bin/dvc metrics show   every stage's headline figures\n"
        "  .venv/bin/dvc plots show     per-step curves (HTML; PNGs are under reports/)\n"
    )


def checkpoint_table(path: Path, band: list[float] | None, width: int = 80
                     ) -> list[Table | str]:
    """The select stage's per-checkpoint entropies next to the band, the chosen one marked."""
    if not path.exists():
        return [f"({path} missing: run the select stage)"]
    lo, hi = band if band else (float("nan"), float("nan"))
    header = ["epoch", "entropy", "val accuracy", "in band", "chosen"]
    with path.open() as f:
        rows = [[row["epoch"], f"{float(row['entropy']):.3f}",
                 f"{100 * float(row['val_accuracy']):.1f}%",
                 "yes" if row["in_band"] == "true" else "",
                 "<-" if row["chosen"] == "true" else ""] for row in csv.DictReader(f)]
    title = f"SFT checkpoints: token entropy on RL prompts, band [{lo}, {hi}] nats"
    return list(fitted_tables(title, header, rows, width))


def parse_markdown_table(text: str, where: str) -> tuple[list[str], list[list[str]], str]:
    """(header, rows, the text after the table) of a pipe table such as bench's table.md."""
    lines = text.strip().splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    note = " ".join(ln.strip() for ln in lines if ln.strip() and not ln.startswith("|"))
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in table]
    if len(cells) < 2:
        raise ValueError(f"{where}: no Markdown table (a header line and a |---| line)")
    header, body = cells[0], cells[2:]
    for i, row in enumerate(body, start=3):
        if len(row) != len(header):
            raise ValueError(f"{where}: line {i} has {len(row)} cells, the header {len(header)}")
    return header, body, note


def bench_tables(header: Sequence[str], rows: Sequence[Sequence[str]], width: int
                 ) -> list[Table]:
    """The models x benchmarks table as is when it fits ``width``, else transposed (one row per
    benchmark, one column per model: models are few, benchmarks many), split if need be."""
    title = "Benchmarks (held-out)"
    if len(column_groups(header, rows, width)) == 1:
        return fitted_tables(title, header, rows, width)
    flipped = ["benchmark", *(r[0] for r in rows)]
    flipped_rows = [[name, *(r[j] for r in rows)] for j, name in enumerate(header) if j > 0]
    return fitted_tables(title, flipped, flipped_rows, width)


def column_groups(header: Sequence[str], rows: Sequence[Sequence[str]], width: int
                  ) -> list[list[int]]:
    """Column indices per table so that each table fits ``width`` cells; every group starts
    with column 0 (the row labels). With rich's default box a column of content width w takes
    w + 3 cells (padding and one border) plus one cell for the left edge."""
    need = [3 + max(cell_len(h), *(cell_len(r[i]) for r in rows)) for i, h in enumerate(header)]
    groups, used = [[0]], 1 + need[0]
    for i in range(1, len(header)):
        if len(groups[-1]) > 1 and used + need[i] > width:
            groups.append([0])
            used = 1 + need[0]
        groups[-1].append(i)
        used += need[i]
    return groups


def fitted_tables(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], width: int
                  ) -> list[Table]:
    """One rich table per column group; cells never shrink below their text (a column that
    cannot fit alone folds onto more lines rather than being cut with an ellipsis)."""
    groups = column_groups(header, rows, width)
    tables = []
    for g, cols in enumerate(groups, start=1):
        part = f" ({g}/{len(groups)})" if len(groups) > 1 else ""
        table = Table(title=title + part)
        for i in cols:
            table.add_column(header[i], justify="left" if i == 0 else "right",
                             overflow="fold")
        for row in rows:
            table.add_row(*(row[i] for i in cols))
        tables.append(table)
    return tables


if __name__ == "__main__":
    main()

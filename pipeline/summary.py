"""The closing summary of ``make run``: the benchmark table, where the models are, and how to
open the UIs. Reads files the stages wrote; computes nothing.

    python -m pipeline.summary
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

MODEL_DIRS = ("models/base", "models/sft", "models/selected", "models/rl_reasoning",
              "models/rl_general")


def main() -> None:
    console = Console()
    table = Path("reports/bench/table.md")
    if table.exists():
        console.print(Markdown("## Benchmarks (held-out)\n\n" + table.read_text()))
    choice = Path("models/selected/choice.json")
    if choice.exists():
        c = json.loads(choice.read_text())
        console.print(checkpoint_table(Path("reports/select/checkpoints.csv"), c.get("band")))
        console.print(f"Selected SFT checkpoint: {c.get('checkpoint')} "
                      f"(entropy {float(c.get('entropy', float('nan'))):.3f} nats, "
                      f"{c.get('why', '')})")
    console.print("\n[bold]Models[/bold]")
    for d in MODEL_DIRS:
        if Path(d).exists():
            console.print(f"  {d}")
    console.print(
        "\n[bold]Look around[/bold]\n"
        "  make ui                      MLflow UI on http://127.0.0.1:5000 (runs, curves, models)\n"
        "  make prefect-up              Prefect server + worker + deployments, UI on http://127.0.0.1:4200\n"
        "  .venv/bin/dvc metrics show   the metrics of every stage\n"
        "  .venv/bin/dvc plots show     per-step curves (HTML; PNGs are under reports/)\n"
    )


def checkpoint_table(path: Path, band: list[float] | None) -> Table | str:
    """The select stage's per-checkpoint entropies next to the band, the chosen one marked."""
    if not path.exists():
        return f"({path} missing: run the select stage)"
    lo, hi = band if band else (float("nan"), float("nan"))
    table = Table(title=f"SFT checkpoints: token entropy on RL prompts, band [{lo}, {hi}] nats")
    for col in ("epoch", "entropy", "val accuracy", "in band", "chosen"):
        table.add_column(col, justify="right")
    with path.open() as f:
        for row in csv.DictReader(f):
            table.add_row(row["epoch"], f"{float(row['entropy']):.3f}",
                          f"{100 * float(row['val_accuracy']):.1f}%",
                          "yes" if row["in_band"] == "true" else "",
                          "<-" if row["chosen"] == "true" else "")
    return table


if __name__ == "__main__":
    main()

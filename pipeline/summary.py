"""The closing summary of ``make run``: the benchmark table, where the models are, and how to
open the UIs. Reads files the stages wrote; computes nothing.

    python -m pipeline.summary
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

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
        console.print(f"Selected SFT checkpoint: {c.get('checkpoint')} "
                      f"(entropy {c.get('entropy')}, {c.get('why', '')})")
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


if __name__ == "__main__":
    main()

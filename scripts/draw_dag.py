"""Draw the stage DAG of dvc.yaml as a PNG (for the README; no graphviz needed).

    python scripts/draw_dag.py docs/images/dag.png
"""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pipeline.dag import dependencies, load_stages, stage_order  # noqa: E402


def main(out: str) -> None:
    order = stage_order()
    deps = dependencies(load_stages())
    x = {s: i for i, s in enumerate(order)}
    fig, ax = plt.subplots(figsize=(1.45 * len(order), 2.6))
    for s in order:
        ax.text(x[s], 0, s, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "fc": "#e8f0fe", "ec": "#3367d6"})
        for d in deps[s]:
            span = x[s] - x[d]
            # neighbours: a straight arrow; longer edges arc above the row
            style = "arc3,rad=0" if span == 1 else f"arc3,rad={-0.12 - 0.02 * span}"
            ax.annotate("", xy=(x[s] - 0.42, 0.05 if span > 1 else 0),
                        xytext=(x[d] + 0.42, 0.05 if span > 1 else 0),
                        arrowprops={"arrowstyle": "->", "color": "#555", "connectionstyle": style})
    ax.set_xlim(-0.7, len(order) - 0.3)
    ax.set_ylim(-0.4, 1.2)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=130)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images/dag.png")

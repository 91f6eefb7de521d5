"""rl_reasoning: RL stage 1, C3PO on the reasoning domains (math, logic games, code).

Starts from the entropy-selected SFT checkpoint; params section ``rl_reasoning``
(:class:`pipeline.rl.params.RLParams`); held-out eval on the reasoning group of ``--val``.

    python -m pipeline.stages.rl_reasoning --model models/selected \
        --tasks data/rl/reasoning.parquet --val data/curated/val.parquet \
        --out models/rl_reasoning --report-dir reports/rl_reasoning
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.rl.stage import main_for

STAGE, GROUP = "rl_reasoning", "reasoning"


def main(argv: Sequence[str] | None = None) -> None:
    main_for(STAGE, GROUP, argv)


if __name__ == "__main__":
    main()

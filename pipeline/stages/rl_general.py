"""rl_general: RL stage 2, C3PO on the general domains (instruction following, open answers).

Starts from rl_reasoning's output; params section ``rl_general``
(:class:`pipeline.rl.params.RLParams`); rewards from the rule verifiers (ifeval) and the reward
model (open_qa); held-out eval on the general group of ``--val``.

    python -m pipeline.stages.rl_general --model models/rl_reasoning \
        --tasks data/rl/general.parquet --val data/curated/val.parquet \
        --out models/rl_general --report-dir reports/rl_general
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.rl.stage import main_for

STAGE, GROUP = "rl_general", "general"


def main(argv: Sequence[str] | None = None) -> None:
    main_for(STAGE, GROUP, argv)


if __name__ == "__main__":
    main()

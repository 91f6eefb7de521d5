"""Each stage's headline: the few figures ``dvc metrics show`` prints for it.

A stage writes its full metrics (counts by domain and reason, per-domain accuracies, timings)
to its details file, and :func:`write_headline` writes ``reports/<stage>/headline.json`` with
the keys below, the file dvc.yaml declares as the stage's metric. The headlines hold no
timings, so ``dvc metrics diff`` after a rerun on other hardware shows only what changed in
the results. Stages that report the same kind of figure share its key (``kept``, ``dropped``,
``steps``, ``final_eval_accuracy``), so all of them fit one table. The details stay in git
beside the headline (``dvc metrics show reports/sft/metrics.json`` prints one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.atomic import write_json

HEADLINE_KEYS: dict[str, tuple[str, ...]] = {
    "curate": ("rows_in", "kept", "dropped", "quarantined"),
    "base": ("params_total",),
    "distill": ("accepted", "rejected"),
    "sft": ("steps", "final_loss", "final_eval_accuracy"),
    "select": ("chosen_epoch", "chosen_entropy"),
    "difficulty": ("kept", "dropped"),
    "rl_reasoning": ("steps", "final_eval_accuracy", "eval_accuracy_gain", "repeat_share"),
    "rl_general": ("steps", "final_eval_accuracy", "eval_accuracy_gain", "repeat_share"),
}

# absent when a run has fewer than two evaluations (eval_every > steps)
OPTIONAL = frozenset({"eval_accuracy_gain", "final_eval_accuracy"})


def headline(stage: str, details: Mapping[str, Any]) -> dict[str, Any]:
    """The headline of ``stage`` from its details (bench: avg@k of every model on the pooled
    reasoning and general benchmarks)."""
    if stage == "bench":
        return {group: {model: groups[f"all_{group}"]["avg_at_k"]
                        for model, groups in details.items() if f"all_{group}" in groups}
                for group in ("reasoning", "general")}
    if stage not in HEADLINE_KEYS:
        raise KeyError(f"headline: no headline keys for stage {stage!r}")
    missing = [k for k in HEADLINE_KEYS[stage] if k not in details and k not in OPTIONAL]
    if missing:
        raise KeyError(f"headline: {stage}'s metrics lack {missing}")
    return {k: details[k] for k in HEADLINE_KEYS[stage] if k in details}


def write_headline(stage: str, details: Mapping[str, Any], report_dir: str | Path) -> Path:
    """Write ``<report_dir>/headline.json`` (atomically); returns its path."""
    path = Path(report_dir) / "headline.json"
    write_json(path, headline(stage, details))
    return path

"""Bench reports: metrics per model x benchmark (and domain), the Markdown table, the chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.bench.metrics import summarize
from pipeline.schema import domain_group


def group_metrics(
    samples: Sequence[dict[str, Any]], benchmark_of: Mapping[str, str], ks: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """{model: {benchmark: {overall metrics..., "domains": {domain: metrics}}}}.

    ``benchmark_of`` maps task id -> benchmark name; samples are SAMPLE rows.
    """
    per: dict[tuple[str, str, str], dict[str, list[bool]]] = {}
    for s in samples:
        key = (s["model"], benchmark_of[s["task_id"]], s["domain"])
        per.setdefault(key, {}).setdefault(s["task_id"], []).append(bool(s["correct"]))
    out: dict[str, dict[str, Any]] = {}
    for model, bench in sorted({(m, b) for m, b, _ in per}):
        cells = {d: v for (m, b, d), v in per.items() if (m, b) == (model, bench)}
        every = [c for v in cells.values() for c in v.values()]
        entry = summarize(every, ks)
        entry["domains"] = {d: summarize(v.values(), ks) for d, v in sorted(cells.items())}
        out.setdefault(model, {})[bench] = entry
    return out


def group_rollup(
    samples: Sequence[dict[str, Any]], ks: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """{model: {"all_reasoning": ..., "all_general": ...}}: every problem of the domains of one
    RL group (``schema.domain_group``) pooled, each problem weighing the same; same shape as a
    benchmark entry of :func:`group_metrics`, so it shows up as a table column."""
    per: dict[tuple[str, str], dict[str, list[bool]]] = {}
    for s in samples:
        key = (s["model"], f"all_{domain_group(s['domain'])}")
        per.setdefault(key, {}).setdefault(s["task_id"], []).append(bool(s["correct"]))
    domains: dict[str, str] = {s["task_id"]: s["domain"] for s in samples}
    out: dict[str, dict[str, Any]] = {}
    for (model, group), cells in sorted(per.items()):
        entry = summarize(cells.values(), ks)
        by_domain: dict[str, list[list[bool]]] = {}
        for tid, c in cells.items():
            by_domain.setdefault(domains[tid], []).append(c)
        entry["domains"] = {d: summarize(v, ks) for d, v in sorted(by_domain.items())}
        out.setdefault(model, {})[group] = entry
    return out


def markdown_table(metrics: Mapping[str, Mapping[str, Any]], models: Sequence[str],
                   metric: str = "avg_at_k") -> str:
    """Models x benchmarks (+ benchmark/domain columns for mixed benchmarks), ``metric`` in %."""
    domains: dict[str, set[str]] = {}
    for m in models:
        for bench, entry in metrics.get(m, {}).items():
            domains.setdefault(bench, set()).update(entry["domains"])
    cols: list[tuple[str, str | None]] = []
    for bench, ds in domains.items():  # a domain column only where a benchmark mixes domains
        split = len(ds) > 1 and not bench.startswith("all_")  # rollups repeat other columns
        cols += [(bench, None)] + ([(bench, d) for d in sorted(ds)] if split else [])
    cols.sort(key=lambda c: (c[0], c[1] or ""))
    names = [b if d is None else f"{b}/{d}" for b, d in cols]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(cols)]
    for m in models:
        vals = []
        for b, d in cols:
            entry = metrics.get(m, {}).get(b)
            if entry is not None and d is not None:
                entry = entry["domains"].get(d)
            missing = entry is None or metric not in entry
            vals.append("-" if missing else f"{100 * entry[metric]:.1f}")
        lines.append(f"| {m} | " + " | ".join(vals) + " |")
    ref = metrics.get(models[0], {}) if models else {}
    counts = "; ".join(f"{b}: {e['problems']} problems, {e['samples']} samples per model"
                       for b, e in ref.items())
    note = f"\n{metric} in %. {counts}.\n" if counts else "\n"
    return "\n".join(lines) + "\n" + note


def bar_chart(metrics: Mapping[str, Mapping[str, Any]], models: Sequence[str],
              metric: str = "avg_at_k") -> Any:
    """Grouped bars: one group per benchmark, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = sorted({b for m in models for b in metrics.get(m, {})})
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(benches) + 2), 3.5))
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        ys = [100 * metrics.get(m, {}).get(b, {}).get(metric, 0.0) for b in benches]
        xs = [j + i * width for j in range(len(benches))]
        ax.bar(xs, ys, width=width, label=m)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(benches))], benches)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


ROLLUPS = ("all_reasoning", "all_general")


def score_keys(entry: Mapping[str, Any]) -> list[str]:
    """avg@k and the pass@k values of a benchmark entry, in that order."""
    return ["avg_at_k"] + sorted((k for k in entry if k.startswith("pass_at_")),
                                 key=lambda k: int(k.rsplit("_", 1)[1]))


def headline_metrics(metrics: Mapping[str, Mapping[str, Any]], models: Sequence[str],
                     final: str) -> dict[str, float]:
    """The bench run's MLflow summary: every model's scores on the pooled RL groups
    (``all_reasoning``, ``all_general``) and the ``final`` model's avg@k on each benchmark.
    The rest (every model x benchmark x domain) is the scores table."""
    out: dict[str, float] = {}
    for m in models:
        for group in ROLLUPS:
            entry = metrics.get(m, {}).get(group)
            if entry:
                out |= {f"{m}.{group}.{k}": entry[k] for k in score_keys(entry)}
    for bench, entry in metrics.get(final, {}).items():
        if bench not in ROLLUPS and "avg_at_k" in entry:
            out[f"{final}.{bench}.avg_at_k"] = entry["avg_at_k"]
    return out


def scores_table(metrics: Mapping[str, Mapping[str, Any]], models: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """One row per model x benchmark (domain ``all``) and per model x benchmark x domain, in the
    order of ``models``."""
    rows = []
    for m in models:
        for bench, entry in sorted(metrics.get(m, {}).items()):
            cells = [("all", entry)] + sorted(entry.get("domains", {}).items())
            for domain, cell in cells:
                rows.append({"model": m, "benchmark": bench, "domain": domain,
                             **{k: v for k, v in cell.items() if k != "domains"}})
    return rows


def headline_text(metrics: Mapping[str, Mapping[str, Any]], models: Sequence[str],
                  final: str) -> str:
    """One sentence: the ``final`` model's avg@k on each pooled RL group, the other models'
    in brackets, e.g. ``rl_general: reasoning avg@k 23.1% (base 0.0, sft 20.0); ...``."""
    parts = []
    for group in ROLLUPS:
        entry = metrics.get(final, {}).get(group)
        if not entry or "avg_at_k" not in entry:
            continue
        others = ", ".join(f"{m} {100 * metrics[m][group]['avg_at_k']:.1f}" for m in models
                           if m != final and "avg_at_k" in metrics.get(m, {}).get(group, {}))
        parts.append(f"{group.removeprefix('all_')} avg@k {100 * entry['avg_at_k']:.1f}%"
                     + (f" ({others})" if others else ""))
    return f"{final}: " + ("; ".join(parts) if parts else "no pooled scores") + "."

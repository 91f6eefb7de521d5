"""difficulty: model-aware filtering of the RL pool by pass rate (Ring-lite data curation).

1. For every RL prompt: ``samples_per_prompt`` samples from the selected model at temperature
   1.0, scored with the shared verifier -> ``pass_rate``.
2. For prompts the model never solved: does the programmatic teacher's trace
   (:func:`pipeline.tasks.teacher_trace`) pass the same verifier?
3. :func:`pipeline.selection.difficulty.filter_pool` keeps or drops each prompt with a reason.

``max_prompts`` caps how many prompts of each domain group are scored (a seeded subset; the
rest is unscored). ``unscored: drop`` drops the unscored prompts (reason ``not_sampled``);
``unscored: keep`` passes them to the RL pools with ``pass_rate`` null (reason
``unscored_kept`` in the stats), for RL runs that filter online by the policy's own samples
(``max_rollout_rounds``, ``drop_zero_variance``) and need a pool larger than it pays to score
here.

Writes ``<out-dir>/reasoning.parquet`` and ``general.parquet`` (task schema + ``pass_rate``),
``dropped.parquet`` (+ ``reason``), ``<report-dir>/pass_rates.csv`` (DVC plot),
``pass_rates.png``, ``stats.json`` (counts per domain and reason; they balance).

    python -m pipeline.stages.difficulty --model models/selected --tasks data/curated/rl.parquet \
        --out-dir data/rl --report-dir reports/difficulty
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.atomic import atomic_path, write_json, write_parquet, write_text
from pipeline.bench.sampling import Sampling, pass_rates, sample_checkpoint
from pipeline.headline import write_headline
from pipeline.params import load_section, load_seed
from pipeline.schema import TASK, domain_group, validate
from pipeline.selection.difficulty import Bands, count_by, filter_pool
from pipeline.tracking import rows_of, stage_run
from pipeline.verify.reward_model import configure_from

log = logging.getLogger("difficulty")
KEPT = {**TASK, "pass_rate": pl.Float64}
DROPPED = {**KEPT, "reason": pl.String}


@dataclass(frozen=True)
class DifficultyParams:
    engine: Literal["torch", "vllm"] = "torch"
    samples_per_prompt: int = 4  # k
    max_new_tokens: int = 160
    temperature: float = 1.0
    top_p: float = 1.0
    max_pass_rate: float = 0.8  # drop above (always solved)
    min_pass_rate: float = 0.0  # at or below = never solved; the teacher decides
    # cap on never-solved, teacher-solvable prompts kept: one share, or one per domain group
    max_unsolved_share: float | Mapping[str, float] = field(
        default_factory=lambda: {"reasoning": 0.0, "general": 1.0})
    # domain group (reasoning | general) -> prompts scored, a seeded subset (absent or 0 = all)
    max_prompts: Mapping[str, int] = field(default_factory=lambda: {"reasoning": 900})
    unscored: Literal["drop", "keep"] = "keep"  # what happens to prompts beyond max_prompts
    batch_prompts: int = 64

    def __post_init__(self) -> None:
        for group, n in self.max_prompts.items():
            if group not in ("reasoning", "general"):
                raise ValueError(f"difficulty.max_prompts.{group}: not a domain group "
                                 "(reasoning | general)")
            if n < 0:
                raise ValueError(f"difficulty.max_prompts.{group}: must be >= 0, got {n}")
        try:  # the bands check their own values; here, before any sampling
            self.bands()
        except ValueError as e:
            raise ValueError(f"difficulty.{e}") from None

    def bands(self) -> Bands:
        return Bands(self.max_pass_rate, self.min_pass_rate, self.max_unsolved_share)


def teacher_solves(tasks: Sequence[dict[str, Any]]) -> dict[str, bool]:
    """task id -> does the programmatic teacher's trace pass the shared verifier?

    A task without a teacher (e.g. from a user file) counts as not solved by the reference.
    """
    from pipeline.tasks import teacher_trace
    from pipeline.verify import score_batch

    traces, ok = [], []
    for t in tasks:
        try:
            traces.append(teacher_trace(t))
            ok.append(t)
        except (ValueError, KeyError, NotImplementedError) as e:
            log.warning("no teacher for task %s (%s): %s", t["id"], t["domain"], e)
    scores = score_batch(ok, traces) if ok else []
    out = {t["id"]: False for t in tasks}
    out.update({t["id"]: bool(s.correct) for t, s in zip(ok, scores, strict=True)})
    return out


def split_budget(df: pl.DataFrame, max_prompts: Mapping[str, int], seed: int
                 ) -> tuple[list[dict], list[dict]]:
    """(tasks to score, tasks left unscored): per domain group, a seeded subset of
    ``max_prompts[group]`` rows (a group not named, or 0: every row). Input order is kept."""
    rows = df.to_dicts()
    chosen: set[int] = set()
    for group in ("reasoning", "general"):
        idx = [i for i, r in enumerate(rows) if domain_group(r["domain"]) == group]
        cap = int(max_prompts.get(group, 0))
        if cap <= 0 or cap >= len(idx):
            chosen.update(idx)
            continue
        order = pl.DataFrame({"i": idx}).sample(fraction=1.0, shuffle=True, seed=seed)
        chosen.update(order["i"].head(cap).to_list())
    return ([r for i, r in enumerate(rows) if i in chosen],
            [r for i, r in enumerate(rows) if i not in chosen])


def histogram(rates: Sequence[float], k: int) -> pl.DataFrame:
    """Counts of prompts at each possible pass rate j/k (the DVC plot)."""
    counts = [0] * (k + 1)
    for r in rates:
        counts[round(r * k)] += 1
    return pl.DataFrame({"pass_rate": [j / k for j in range(k + 1)], "count": counts})


def plot(hist: pl.DataFrame, kept: Sequence[dict], dropped: Sequence[dict]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(hist["pass_rate"], hist["count"], width=0.8 / max(1, hist.height - 1))
    ax.set_xlabel("pass rate of the selected model")
    ax.set_ylabel("RL prompts")
    ax.set_title(f"kept {len(kept)}, dropped {len(dropped)}")
    fig.tight_layout()
    return fig


def stats(total: int, kept: Sequence[dict], dropped: Sequence[dict]) -> dict[str, Any]:
    by_domain = count_by(list(kept) + list(dropped))
    by_reason: dict[str, int] = {}
    for d in by_domain.values():
        for reason, n in d.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    groups = {g: sum(domain_group(r["domain"]) == g for r in kept)
              for g in ("reasoning", "general")}
    return {"total": total, "kept": len(kept), "dropped": len(dropped),
            "balanced": total == len(kept) + len(dropped), "kept_by_group": groups,
            "by_reason": by_reason, "by_domain": by_domain,
            "mean_pass_rate": _mean([r["pass_rate"] for r in list(kept) + list(dropped)])}


def _mean(values: Sequence[float | None]) -> float:
    scored = [v for v in values if v is not None]
    return sum(scored) / len(scored) if scored else float("nan")


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--tasks", type=Path, required=True)
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--report-dir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load_section("difficulty", DifficultyParams, a.params)
    configure_from(a.params)  # the open_qa reward model (params section reward_model)
    seed = load_seed(a.params)
    df = validate(pl.read_parquet(a.tasks), TASK, str(a.tasks))
    tasks, unscored = split_budget(df, p.max_prompts, seed)

    with stage_run("difficulty", p) as run:
        run.dataset(df, "rl_pool", str(a.tasks))
        sampling = Sampling(p.samples_per_prompt, p.max_new_tokens, p.temperature, p.top_p,
                            seed, p.batch_prompts)

        def live(b: int, rows: list[dict]) -> None:
            run.step(b, batch_accuracy=sum(r["correct"] for r in rows) / max(1, len(rows)))

        rows = sample_checkpoint(a.model, p.engine, tasks, sampling, str(a.model),
                                 on_batch=live, desc="pass rates")
        rates = {tid: c / n for tid, (c, n) in pass_rates(rows).items()}
        never = [t for t in tasks if rates[t["id"]] <= p.min_pass_rate]
        teacher = teacher_solves(never)
        pool = [{**t, "pass_rate": rates[t["id"]], "teacher_solved": teacher.get(t["id"])}
                for t in tasks]
        kept, dropped = filter_pool(pool, p.bands(), seed)
        if p.unscored == "keep":
            kept += [{**t, "pass_rate": None, "reason": "unscored_kept"} for t in unscored]
        else:
            dropped += [{**t, "pass_rate": None, "reason": "not_sampled"} for t in unscored]
        for group in ("reasoning", "general"):
            mine = [r for r in kept if domain_group(r["domain"]) == group]
            write_parquet(a.out_dir / f"{group}.parquet",
                          pl.DataFrame(mine, schema=KEPT, strict=False).select(list(KEPT)))
        write_parquet(a.out_dir / "dropped.parquet",
                      pl.DataFrame(dropped, schema=DROPPED, strict=False).select(list(DROPPED)))
        hist = histogram([r["pass_rate"] for r in pool], p.samples_per_prompt)
        a.report_dir.mkdir(parents=True, exist_ok=True)
        write_text(a.report_dir / "pass_rates.csv", hist.write_csv())
        fig = plot(hist, kept, dropped)
        with atomic_path(a.report_dir / "pass_rates.png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        st = stats(df.height, kept, dropped)
        write_json(a.report_dir / "stats.json", st)
        write_headline("difficulty", st, a.report_dir)
        run.metrics({k: v for k, v in st.items() if k != "by_domain"})
        run.table(rows_of(st["by_domain"], "domain"), "tables/by_domain.json")
        run.figure(fig, "pass_rates.png")
        run.table(hist, "pass_rates.json")
        run.artifact(a.report_dir / "stats.json")
    print(f"difficulty: kept {st['kept']} of {st['total']} ({st['by_reason']})")


if __name__ == "__main__":
    main()

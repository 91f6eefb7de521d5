"""The findings in miniature, scored: fresh-problem scores, statistics, verdicts and the page.

A finding's ``report`` stage (findings/dvc.yaml) scores its arms' models (made by
``scripts/findings.py``) and the start model on freshly generated problems (none in any curated
split or RL prompt file, ``scripts/heldout_probe.py``) with paired 95% bootstrap CIs, and states
whether the run supports the paper's claim, contradicts it or cannot tell, by the rules of the
``verdict_*`` functions below:

    python scripts/findings_report.py report normalisers   # reports/findings/normalisers/
    python scripts/findings_report.py page [--check]       # docs/findings.md

Every setting is in params.yaml's ``findings`` section (the probe's size and seed).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from findings import FINDINGS, MODELS, REPORTS  # noqa: E402
from pipeline.atomic import write_json, write_parquet, write_text  # noqa: E402
from pipeline.bench.metrics import paired_bootstrap  # noqa: E402
from pipeline.tracking import git_commit, stage_run  # noqa: E402

PAGE = Path("docs/findings.md")
REASONING = ["math", "countdown", "sudoku", "knights_knaves", "code"]
CLAIMS = {
    "normalisers": "C3PO's fixed token budget per optimizer step keeps the tokens and the time "
                   "of each optimizer step constant, where the token-mean (DAPO) and "
                   "per-sequence (GRPO) normalisers let them follow the response lengths.",
    "entropy_band": "The SFT checkpoint whose entropy lies in the band gives the best model "
                    "after RL; neither the earliest nor the most trained checkpoint is best.",
    "two_stage": "Two-stage RL (reasoning, then general) keeps reasoning while instruction "
                 "following improves, where one joint run on the mixed pool trades one for the "
                 "other.",
}


# --- statistics ------------------------------------------------------------------------------
def cv(values: Sequence[float]) -> float:
    """Coefficient of variation: population standard deviation / mean (0 for a constant)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or a.mean() == 0:
        return float("nan")
    return float(a.std() / a.mean())


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    a = np.asarray(values, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    r = np.empty(a.size)
    i = 0
    while i < a.size:
        j = i
        while j + 1 < a.size and a[order[j + 1]] == a[order[i]]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks)."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman: need two equal-length sequences of 2 or more values")
    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float((rx ** 2).sum() * (ry ** 2).sum()))
    return float((rx * ry).sum() / den) if den else float("nan")


def read_steps(path: Path) -> list[dict[str, float]]:
    """steps.csv rows after step 0 (step 0 holds only the first evaluation), as floats."""
    rows = []
    with path.open() as fh:
        for r in csv.DictReader(fh):
            row = {k: float(v) for k, v in r.items() if v not in ("", None)}
            if row.get("step", 0) >= 1 and "tokens_trained" in row:
                rows.append(row)
    return rows


def step_stats(rows: list[dict[str, float]]) -> dict[str, float]:
    """Per arm: tokens and training seconds per optimizer step (mean, CV; wall seconds, and CPU
    seconds where the run recorded them, also per trained token), whole step time (mean, CV),
    reward on first-seen prompts, entropy (first and last step), gradient norm.

    The times leave out the first step when a run has three or more: it pays one-off costs
    (the allocator's first requests, lazy initialisation), as the warm-up step that
    ``scripts/perf/rl_throughput.py`` does not time. The CPU time per trained token is the
    noise floor of the time CVs: the step-to-step variation of the machine and of the work
    that is not response tokens, which no normaliser removes."""
    opt = [max(r.get("optimizer_steps", 1.0), 1.0) for r in rows]
    tokens = [r["tokens_trained"] for r in rows]
    timed = slice(1, None) if len(rows) >= 3 else slice(None)
    train = [r["time_train_s"] / o for r, o in zip(rows, opt, strict=True)][timed]
    step = [r["time_step_s"] for r in rows][timed]
    first = [r["reward_first_seen"] for r in rows if "reward_first_seen" in r]
    cpu = {}
    if all("cpu_train_s" in r for r in rows):  # runs that recorded the update's CPU seconds
        per = [r["cpu_train_s"] / o for r, o in zip(rows, opt, strict=True)]
        per_token = [c / max(t, 1.0) for c, t in zip(per, tokens, strict=True)]
        cpu = {"train_cpu_s_per_update": float(np.mean(per[timed])),
               "train_cpu_s_per_update_cv": cv(per[timed]),
               "train_cpu_s_per_token_cv": cv(per_token[timed])}
    return {"steps": len(rows), "timed_steps": len(step),
            "tokens_per_update": float(np.mean(tokens)), "tokens_per_update_cv": cv(tokens),
            "train_s_per_update": float(np.mean(train)), "train_s_per_update_cv": cv(train),
            **cpu, "step_s": float(np.mean(step)), "step_s_cv": cv(step),
            "response_len": float(np.mean([r["response_len"] for r in rows])),
            "response_len_cv": cv([r["response_len"] for r in rows]),
            "reward_first_seen": float(np.mean(first)) if first else float("nan"),
            "entropy_first": rows[0]["entropy"], "entropy_last": rows[-1]["entropy"],
            "grad_norm": float(np.mean([r["grad_norm"] for r in rows]))}


def score_table(samples: pl.DataFrame, groups: dict[str, list[str]]) -> dict[str, dict]:
    """Per model and group: the per-problem avg@k, sorted by task id ({task_id: score})."""
    import heldout_probe as probe  # the report's code only (an arm does not depend on it)

    pp = probe.per_problem(samples)
    out: dict[str, dict] = {}
    for m in pp["model"].unique(maintain_order=True).to_list():
        out[m] = {}
        for g, ds in groups.items():
            sub = pp.filter((pl.col("model") == m) & pl.col("domain").is_in(ds)).sort("task_id")
            out[m][g] = dict(zip(sub["task_id"].to_list(), sub["score"].to_list(), strict=True))
    return out


def compare(a: dict[str, float], b: dict[str, float], seed: int = 0) -> dict[str, float]:
    """Points of ``b`` minus ``a`` on the same problems, with the paired 95% bootstrap CI."""
    if sorted(a) != sorted(b):
        raise ValueError("compare: the two score sets hold different problems")
    keys = sorted(a)
    d, lo, hi = paired_bootstrap([a[k] for k in keys], [b[k] for k in keys], seed=seed)
    return {"diff": 100 * d, "ci_low": 100 * lo, "ci_high": 100 * hi, "problems": len(keys)}


def mean_scores(tables: list[dict[str, float]]) -> dict[str, float]:
    """Problem by problem, the mean score over several arms (seeds of one setting)."""
    return {k: float(np.mean([t[k] for t in tables])) for k in tables[0]}


def avg(scores: dict[str, float]) -> float:
    return 100 * float(np.mean(list(scores.values())))


# --- verdicts --------------------------------------------------------------------------------
def time_cv_key(arms: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """The training-time CV that compares ``arms``: CPU seconds where every one recorded them
    (shared-machine load disturbs them less), wall seconds otherwise; and its name."""
    if all("train_cpu_s_per_update_cv" in a for a in arms):
        return "train_cpu_s_per_update_cv", "training CPU time"
    return "train_s_per_update_cv", "training time"


def verdict_normalisers(per: dict[str, dict[str, float]]) -> tuple[str, str]:
    """``per``: normaliser -> its seeds' mean statistics. Supports: C3PO's tokens per update
    never vary and its training time per update varies at most half as much as token_mean's;
    contradicts: C3PO's training time varies as much as token_mean's or more.

    The time is the update's CPU seconds where both arms recorded them: the work a step does,
    which other jobs on a shared machine disturb less than its wall seconds (both CVs are
    reported either way)."""
    b, t = per["budget"], per["token_mean"]
    key, what = time_cv_key([b, t])
    if b["tokens_per_update_cv"] == 0 and b[key] <= 0.5 * t[key]:
        return "supports", (f"C3PO trains exactly the same number of tokens every update (CV 0 "
                            f"against {t['tokens_per_update_cv']:.3f} for token_mean) and its "
                            f"{what} per update varies {b[key]:.3f} against {t[key]:.3f}")
    if b[key] >= t[key]:
        return "contradicts", (f"C3PO's {what} per update varies {b[key]:.3f}, token_mean's "
                               f"{t[key]:.3f}")
    floor = ""
    if "train_cpu_s_per_token_cv" in b and "train_cpu_s_per_token_cv" in t:
        floor = (f"; per trained token the CPU time varies {b['train_cpu_s_per_token_cv']:.3f} "
                 f"(C3PO) and {t['train_cpu_s_per_token_cv']:.3f} (token_mean), the noise "
                 f"floor that a fixed token count cannot remove")
    return "cannot tell", (f"C3PO's tokens per update CV {b['tokens_per_update_cv']:.3f}, "
                           f"{what} CV {b[key]:.3f} against token_mean's {t[key]:.3f}{floor}")


def verdict_entropy(arms: list[dict[str, Any]], vs_best: dict[str, dict]) -> tuple[str, str]:
    """``arms``: per epoch {epoch, entropy, in_band, score}; ``vs_best``: each other arm minus
    the best one (paired CI). The claim has two halves: the band holds the best start, and
    neither the earliest nor the most trained checkpoint is it.

    - contradicts: the best arm starts from the earliest or the most trained checkpoint and
      beats every other arm (CIs below 0), or it lies outside the band and beats every in-band
      arm;
    - supports: the best arm lies in the band, starts from neither end, and beats every arm
      outside the band;
    - cannot tell: otherwise (the CIs overlap, or every arm lies on one side of the band).
    """
    best = max(arms, key=lambda a: a["score"])
    epochs = sorted(a["epoch"] for a in arms)
    others = [a for a in arms if a is not best]
    other_side = [a for a in arms if a["in_band"] != best["in_band"]]

    def beats(group):
        return bool(group) and all(vs_best[f"epoch{a['epoch']}"]["ci_high"] < 0 for a in group)

    where = "inside" if best["in_band"] else "outside"
    text = (f"the best arm starts from epoch {best['epoch']} (entropy {best['entropy']:.3f}, "
            f"{where} the band)")
    if best["epoch"] in (epochs[0], epochs[-1]) and beats(others):
        end = "most trained" if best["epoch"] == epochs[-1] else "earliest"
        return "contradicts", (
            text + f", the {end} of the checkpoints tried, and beats every other arm (95% CIs "
            "above 0): here the band picks the right start only because it holds that end")
    if not other_side:
        return "cannot tell", text + "; every arm lies on the same side of the band"
    if beats(other_side):
        if not best["in_band"]:
            return "contradicts", text + " and beats every arm inside it (95% CIs above 0)"
        return "supports", text + " and beats every arm outside it (95% CIs above 0)"
    return "cannot tell", text + ", but its edge over the other side of the band is within the CI"


def verdict_two_stage(diff: dict[str, dict]) -> tuple[str, str]:
    """``diff``: two_stage minus joint on ``all_reasoning`` and ``ifeval`` (paired CIs).
    Supports: two-stage is better on one and not worse on the other (CIs); contradicts: joint is
    better on one and not worse on the other; otherwise cannot tell."""
    r, i = diff["all_reasoning"], diff["ifeval"]

    def better(x):
        return x["ci_low"] > 0

    def worse(x):
        return x["ci_high"] < 0

    text = (f"two-stage minus joint: reasoning {r['diff']:+.1f} ({r['ci_low']:+.1f} to "
            f"{r['ci_high']:+.1f}), ifeval {i['diff']:+.1f} ({i['ci_low']:+.1f} to "
            f"{i['ci_high']:+.1f})")
    if (better(r) or better(i)) and not (worse(r) or worse(i)):
        return "supports", text
    if (worse(r) or worse(i)) and not (better(r) or better(i)):
        return "contradicts", text
    return "cannot tell", text


# --- reports ---------------------------------------------------------------------------------
def arm_dirs(finding: str) -> list[Path]:
    root = REPORTS / finding / "arms"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []


def fresh_probe(params: dict, finding: str, models: list[str], domains: list[str],
                extra_seen: list[str]) -> pl.DataFrame:
    """Score ``models`` (``name=folder``) on fresh problems of ``domains``; the samples."""
    import heldout_probe as probe

    p = params["findings"]["probe"]
    out = MODELS / "probe" / finding
    out.mkdir(parents=True, exist_ok=True)
    seen = probe.seen_prompts(REPO / "data/curated", extra_seen)
    counts = {d: int(p["ifeval_prompts"] if d == "ifeval" else p["per_domain"]) for d in domains}
    tasks = probe.fresh_tasks(params, domains, counts, int(p["seed"]), seen)
    write_parquet(out / "tasks.parquet", tasks)
    if probe.run_bench(params, out / "tasks.parquet", models, out):
        raise SystemExit(f"findings {finding}: the fresh-problem bench failed")
    return pl.read_parquet(out / "samples.parquet")


def plot_curves(finding: str, curves: dict[str, list[dict[str, float]]], keys: list[str],
                path: Path, colour_of) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for ax, key in zip(np.atleast_1d(axes), keys, strict=True):
        for name, rows in curves.items():
            xs = [r["step"] for r in rows if key in r]
            ax.plot(xs, [r[key] for r in rows if key in r], color=colour_of(name), lw=1.2,
                    label=name, alpha=0.85)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), uniq.keys(), loc="lower center", ncol=min(len(uniq), 6),
               fontsize=7)
    fig.suptitle(f"findings: {finding}", fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


COLOURS = {"budget": "tab:blue", "token_mean": "tab:orange", "seq_mean": "tab:green"}


def report_normalisers(params: dict) -> dict[str, Any]:
    arms = arm_dirs("normalisers")
    if not arms:
        raise SystemExit("findings normalisers: no arm has run (dvc repro findings/dvc.yaml)")
    stats, curves = {}, {}
    for d in arms:
        rows = read_steps(d / "rl_reasoning" / "steps.csv")
        stats[d.name] = step_stats(rows)
        curves[d.name] = rows
    models = ["start=models/selected"] + [
        f"{d.name}={MODELS / 'normalisers' / d.name / 'rl_reasoning'}" for d in arms]
    samples = fresh_probe(params, "normalisers", models, REASONING,
                          ["data/rl/reasoning.parquet"])
    table = score_table(samples, {"all_reasoning": REASONING})
    start = table["start"]["all_reasoning"]
    by_norm: dict[str, list[str]] = {}
    for name in stats:
        by_norm.setdefault(name.rsplit("-s", 1)[0], []).append(name)
    for name, s in stats.items():
        s["fresh"] = avg(table[name]["all_reasoning"])
        s["fresh_vs_start"] = compare(start, table[name]["all_reasoning"])
    per: dict[str, dict[str, Any]] = {}
    pooled = {n: mean_scores([table[a]["all_reasoning"] for a in names])
              for n, names in by_norm.items()}
    for n, names in by_norm.items():
        keys = [k for k, v in stats[names[0]].items() if isinstance(v, float | int)
                and all(k in stats[a] for a in names)]
        per[n] = {k: float(np.mean([stats[a][k] for a in names])) for k in keys}
        per[n]["seeds"] = len(names)
        per[n]["fresh"] = avg(pooled[n])
        per[n]["fresh_vs_start"] = compare(start, pooled[n])
        if n != "budget" and "budget" in pooled:
            per[n]["fresh_vs_budget"] = compare(pooled["budget"], pooled[n])
    verdict, why = ("cannot tell", "the budget and token_mean arms are both needed")
    if {"budget", "token_mean"} <= set(per):
        verdict, why = verdict_normalisers(per)
    plot_curves("normalisers", curves,
                ["tokens_trained", "time_train_s", "reward_first_seen", "entropy", "grad_norm"],
                REPORTS / "normalisers" / "curves.png",
                lambda name: COLOURS.get(name.rsplit("-s", 1)[0], "gray"))
    return {"claim": CLAIMS["normalisers"], "verdict": verdict, "why": why,
            "start": {"fresh": avg(start)}, "normalisers": per, "arms": stats,
            "plots": ["curves.png"]}


def report_entropy_band(params: dict) -> dict[str, Any]:
    arms = arm_dirs("entropy_band")
    if len(arms) < 2:
        raise SystemExit("findings entropy_band: fewer than two arms have run")
    sel = {int(r["epoch"]): r for r in csv.DictReader(open("reports/select/checkpoints.csv"))}
    lo, hi = float(params["select"]["band_low"]), float(params["select"]["band_high"])
    models = [f"{d.name}={MODELS / 'entropy_band' / d.name / 'rl_reasoning'}" for d in arms]
    samples = fresh_probe(params, "entropy_band", models, REASONING,
                          ["data/rl/reasoning.parquet"])
    table = score_table(samples, {"all_reasoning": REASONING})
    rows = []
    for d in arms:
        e = int(d.name.removeprefix("epoch"))
        ent = float(sel[e]["entropy"])
        steps = read_steps(d / "rl_reasoning" / "steps.csv")
        rows.append({"epoch": e, "entropy": ent, "in_band": lo <= ent <= hi,
                     "rl_entropy_first": steps[0]["entropy"],
                     "score": avg(table[d.name]["all_reasoning"])})
    best = max(rows, key=lambda a: a["score"])
    vs_best = {f"epoch{r['epoch']}": compare(table[f"epoch{best['epoch']}"]["all_reasoning"],
                                              table[f"epoch{r['epoch']}"]["all_reasoning"])
               for r in rows if r is not best}
    for r in rows:
        if r is not best:
            r["vs_best"] = vs_best[f"epoch{r['epoch']}"]
    verdict, why = verdict_entropy(rows, vs_best)
    rho = spearman([r["entropy"] for r in rows], [r["score"] for r in rows])
    plot_entropy(rows, lo, hi, REPORTS / "entropy_band" / "score_vs_entropy.png")
    return {"claim": CLAIMS["entropy_band"], "verdict": verdict, "why": why,
            "band": [lo, hi], "spearman_entropy_score": rho, "arms": rows,
            "plots": ["score_vs_entropy.png"]}


def plot_entropy(rows: list[dict], lo: float, hi: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.axvspan(lo, hi, color="tab:green", alpha=0.15, label="entropy band")
    xs, ys = [r["entropy"] for r in rows], [r["score"] for r in rows]
    ax.scatter(xs, ys, color="tab:blue")
    for r in rows:
        ax.annotate(f"epoch {r['epoch']}", (r["entropy"], r["score"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("SFT checkpoint entropy (nats, select stage)", fontsize=8)
    ax.set_ylabel("fresh reasoning after RL (avg@k, points)", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_two_stage(params: dict) -> dict[str, Any]:
    two = MODELS / "two_stage" / "two_stage" / "rl_general"
    joint = MODELS / "two_stage" / "joint" / "rl_joint"
    for m in (two, joint):
        if not m.exists():
            raise SystemExit(f"findings two_stage: {m} is missing (run both arms first)")
    samples = fresh_probe(params, "two_stage",
                          ["start=models/selected", f"two_stage={two}", f"joint={joint}"],
                          REASONING + ["ifeval"], ["data/rl/reasoning.parquet",
                                                   "data/rl/general.parquet"])
    groups = {"all_reasoning": REASONING, "ifeval": ["ifeval"]}
    table = score_table(samples, groups)
    scores = {m: {g: avg(table[m][g]) for g in groups} for m in table}
    vs_start = {m: {g: compare(table["start"][g], table[m][g]) for g in groups}
                for m in ("two_stage", "joint")}
    diff = {g: compare(table["joint"][g], table["two_stage"][g]) for g in groups}
    verdict, why = verdict_two_stage(diff)
    tokens = {}
    for arm in ("two_stage", "joint"):
        total = 0.0
        for d in sorted((REPORTS / "two_stage" / "arms" / arm).iterdir()):
            if (d / "steps.csv").exists():
                total += sum(r["tokens_trained"] * max(r.get("optimizer_steps", 1.0), 1.0)
                             for r in read_steps(d / "steps.csv"))
        tokens[arm] = total
    return {"claim": CLAIMS["two_stage"], "verdict": verdict, "why": why, "scores": scores,
            "vs_start": vs_start, "two_stage_minus_joint": diff, "tokens_trained": tokens,
            "plots": []}


def finding_headline(out: dict[str, Any]) -> dict[str, Any]:
    """The few figures ``dvc metrics show`` prints for a finding (reports/findings/<finding>/
    headline.json, the report stage's declared metric): its verdict and the figures it rests
    on. The whole report stays in metrics.json beside it (a git-tracked out)."""
    head: dict[str, Any] = {"verdict": out["verdict"]}
    if out["finding"] == "normalisers":
        per = out["normalisers"]
        key, _ = time_cv_key(list(per.values()))
        head["tokens_per_update_cv"] = {n: v["tokens_per_update_cv"] for n, v in per.items()}
        head["train_time_cv"] = {n: v[key] for n, v in per.items()}
        head["fresh"] = {n: v["fresh"] for n, v in per.items()}
    elif out["finding"] == "entropy_band":
        best = max(out["arms"], key=lambda a: a["score"])
        head.update({"best_epoch": best["epoch"], "best_in_band": best["in_band"],
                     "spearman_entropy_score": out["spearman_entropy_score"]})
    elif out["finding"] == "two_stage":
        head["two_stage_minus_joint"] = {g: d["diff"]
                                         for g, d in out["two_stage_minus_joint"].items()}
    else:
        raise KeyError(f"finding_headline: unknown finding {out['finding']!r}")
    return head


REPORTERS = {"normalisers": report_normalisers, "entropy_band": report_entropy_band,
             "two_stage": report_two_stage}


def report(finding: str, params_path: Path) -> dict[str, Any]:
    params = yaml.safe_load(params_path.read_text())
    with stage_run(f"findings_{finding}", params["findings"],
                   run_name=f"findings: {finding}") as tracker:
        t0 = time.time()
        out = REPORTERS[finding](params)
        out.update({"finding": finding, "commit": git_commit(REPO),
                    "date": time.strftime("%Y-%m-%d %H:%M"), "params": params["findings"],
                    "report_seconds": round(time.time() - t0, 1),
                    **arm_timing(finding)})
        dest = REPORTS / finding
        write_json(dest / "metrics.json", out)
        write_json(dest / "headline.json", finding_headline(out))
        write_text(dest / "summary.md", finding_markdown(out))
        tracker.tags({"verdict": out["verdict"], "mlflow.note.content": finding_markdown(out)})
        for p in out["plots"]:
            tracker.artifact(dest / p)
    print(finding_markdown(out))
    return out


def arm_timing(finding: str) -> dict[str, Any]:
    """Per arm, its runs' wall seconds (``arm_seconds``) and CPU seconds (``arm_cpu_seconds``,
    runs that recorded them); the 1-minute load averages as the runs ended (``arm_load_1m``)
    and the machine's core count."""
    secs, cpu, load, cores = {}, {}, [], set()
    for d in arm_dirs(finding):
        walls = [json.loads(w.read_text()) for w in sorted(d.glob("*/wall.json"))]
        secs[d.name] = sum(w["wall_s"] for w in walls)
        if walls and all("cpu_s" in w for w in walls):
            cpu[d.name] = sum(w["cpu_s"] for w in walls)
        load += [w["load_avg"][0] for w in walls if "load_avg" in w]
        cores |= {w["cpu_count"] for w in walls if "cpu_count" in w}
    return {"arm_seconds": secs, "arm_cpu_seconds": cpu, "arm_load_1m": load,
            "cpu_count": cores.pop() if len(cores) == 1 else None}


# --- the page --------------------------------------------------------------------------------
def _ci(c: dict) -> str:
    return f"{c['diff']:+.1f} ({c['ci_low']:+.1f} to {c['ci_high']:+.1f})"


def finding_markdown(m: dict[str, Any]) -> str:
    f = m["finding"]
    lines = [f"## {f}", "", f"**Claim.** {m['claim']}", "",
             f"**This run {m['verdict']} it**: {m['why']}.", ""]
    if f == "normalisers":
        with_cpu = all("train_cpu_s_per_update" in s for s in m["normalisers"].values())
        lines += ["| normaliser | seeds | tokens/update | CV | train s/update | CV | "
                  + ("train CPU s/update | CV | " if with_cpu else "") + "step s | CV "
                  "| reward first-seen | entropy first → last | grad norm | fresh reasoning | "
                  "vs start | vs budget |", "|---|---:|---:|---:|---:|---:|"
                  + ("---:|---:|" if with_cpu else "") + "---:|---:|---:|---|---:|---:|---|---|"]
        for n, s in m["normalisers"].items():
            cpu = (f"{s['train_cpu_s_per_update']:.2f} | {s['train_cpu_s_per_update_cv']:.3f} | "
                   if with_cpu else "")
            lines.append(
                f"| {n} | {s['seeds']} | {s['tokens_per_update']:.0f} | "
                f"{s['tokens_per_update_cv']:.3f} | {s['train_s_per_update']:.2f} | "
                f"{s['train_s_per_update_cv']:.3f} | {cpu}{s['step_s']:.2f} | "
                f"{s['step_s_cv']:.3f} | "
                f"{s['reward_first_seen']:.3f} | {s['entropy_first']:.3f} → "
                f"{s['entropy_last']:.3f} | {s['grad_norm']:.3f} | {s['fresh']:.1f} | "
                f"{_ci(s['fresh_vs_start'])} | "
                f"{_ci(s['fresh_vs_budget']) if 'fresh_vs_budget' in s else '—'} |")
        lines += ["", f"Start model (models/selected): {m['start']['fresh']:.1f}. Each row is "
                  "the mean over its seeds; CVs are over the steps of one run, then averaged"
                  + ("; the times leave out each run's first step (warm-up). "
                     if all(s.get("timed_steps", s["steps"]) < s["steps"]
                            for s in m["normalisers"].values()) else ". ")
                  + ("Training CPU time per trained token, CV: " + ", ".join(
                      f"{n} {s['train_cpu_s_per_token_cv']:.3f}"
                      for n, s in m["normalisers"].items()) + " (the noise floor: what varies "
                     "when the token count does not). "
                     if all("train_cpu_s_per_token_cv" in s for s in m["normalisers"].values())
                     else "")
                  + "Fresh reasoning: avg@k in points, the seeds' per-problem scores averaged, "
                  "paired 95% bootstrap CIs.", ""]
    elif f == "entropy_band":
        lo, hi = m["band"]
        lines += [f"Band {lo}–{hi} nats; Spearman correlation of entropy and fresh score "
                  f"{m['spearman_entropy_score']:+.2f} over {len(m['arms'])} checkpoints.", "",
                  "| SFT epoch | entropy | in band | RL's first-step entropy | fresh reasoning "
                  "after RL | vs the best |", "|---:|---:|---|---:|---:|---|"]
        for r in sorted(m["arms"], key=lambda r: r["epoch"]):
            lines.append(f"| {r['epoch']} | {r['entropy']:.3f} | {'yes' if r['in_band'] else 'no'}"
                         f" | {r['rl_entropy_first']:.3f} | {r['score']:.1f} | "
                         f"{_ci(r['vs_best']) if 'vs_best' in r else 'best'} |")
        lines.append("")
    elif f == "two_stage":
        lines += ["| model | fresh reasoning | vs start | fresh ifeval | vs start | tokens "
                  "trained |", "|---|---:|---|---:|---|---:|"]
        for a in ("start", "two_stage", "joint"):
            s = m["scores"][a]
            vs = m["vs_start"].get(a)
            lines.append(f"| {a} | {s['all_reasoning']:.1f} | "
                         f"{_ci(vs['all_reasoning']) if vs else '—'} | {s['ifeval']:.1f} | "
                         f"{_ci(vs['ifeval']) if vs else '—'} | "
                         f"{m['tokens_trained'].get(a, 0):,.0f} |")
        lines += ["", "Both arms run the same number of steps with the same token budget in all: "
                  "the joint arm's Φ is the two-stage arm's budget over its updates spread "
                  "evenly over the joint steps (`scripts/findings.py`). Tokens trained fall "
                  "short of the budget on steps where the groups with reward variance hold "
                  "fewer than Φ tokens.", ""]
    secs, cpu = m.get("arm_seconds") or {}, m.get("arm_cpu_seconds") or {}
    arms = ", ".join(f"{k} {v:.0f} s" + (f" (CPU {cpu[k]:.0f} s)" if k in cpu else "")
                     for k, v in secs.items())
    load = m.get("arm_load_1m") or []
    machine = (f" 1-minute load average as the arms ended: {min(load):.1f} to {max(load):.1f} on "
               f"{m.get('cpu_count') or '?'} cores (about the cores an arm uses when it ran "
               "alone; more means other work shared the machine and inflated the wall seconds)."
               if load else " The load of the machine was not recorded for these arms.")
    total = (sum(secs.values()) + m["report_seconds"]) / 60
    lines += [f"Arms: {arms}; scoring {m['report_seconds']:.0f} s ({total:.1f} min in all)."
              f"{machine} Commit {m['commit'][:7]}, {m['date']}; settings: "
              "params.yaml `findings` (as run: reports/findings/" + f + "/metrics.json). "
              f"Rerun: `make finding-{f.replace('_', '-')}`."]
    lines += [f"![{f}](../reports/findings/{f}/{p})" for p in m["plots"]]
    return "\n".join(lines) + "\n"


def page_markdown() -> str:
    head = ["# The paper's findings in miniature", "",
            "Generated by `scripts/findings_report.py page` from reports/findings/*/metrics.json (git "
            "tracked); do not edit by hand. How the arms run and what each finding varies: "
            "docs/rl.md (normalisers), docs/select.md (the band). `make findings` runs all "
            "three, `make finding-normalisers`, `make finding-entropy-band`, "
            "`make finding-two-stage` one each. The arms are reduced RL runs (params.yaml "
            "`findings.rl`; the normaliser arms with `findings.normalisers` on top), so a "
            "verdict holds for that budget, not for the full stages.", ""]
    body = []
    for f in FINDINGS:
        path = REPORTS / f / "metrics.json"
        if path.exists():
            body.append(finding_markdown(json.loads(path.read_text())))
        else:
            body.append(f"## {f}\n\n**Claim.** {CLAIMS[f]}\n\nNot run yet at this commit: "
                        f"`make finding-{f.replace('_', '-')}`.\n")
    return "\n".join(head) + "\n" + "\n".join(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report", help="score a finding's arms on fresh problems")
    r.add_argument("finding", choices=FINDINGS)
    r.add_argument("--params", default="params.yaml")
    p = sub.add_parser("page", help="write docs/findings.md from reports/findings/")
    p.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    if args.cmd == "report":
        report(args.finding, Path(args.params))
        return 0
    text = page_markdown()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run scripts/findings_report.py page", file=sys.stderr)
            return 1
        return 0
    write_text(PAGE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

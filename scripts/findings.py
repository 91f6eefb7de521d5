"""The Ring-lite paper's three findings in miniature: RL arms as DVC stages, scored on fresh problems.

Each arm is a stage of ``findings/dvc.yaml`` (DVC caches it, names it and tracks its params);
a finding's ``report`` stage scores the arms' models on freshly generated problems (none in any
curated split or RL prompt file, ``scripts/heldout_probe.py``) with paired 95% bootstrap CIs,
and states whether the run supports the paper's claim, contradicts it or cannot tell:

- ``normalisers``: C3PO's fixed token budget (``budget``) against DAPO's token mean and GRPO's
  per-sequence mean, same start model and data, several seeds: tokens per optimizer step and
  training time per optimizer step with their coefficients of variation, reward on first-seen
  prompts, entropy and gradient norm curves, the fresh-problem score;
- ``entropy_band``: RL with the same settings from several SFT epochs: fresh-problem score
  against the checkpoint's entropy (the select stage's measurement), the band drawn, the rank
  correlation;
- ``two_stage``: rl_reasoning then rl_general against one run on the mixed pool with the same
  number of steps: reasoning and instruction following of both.

Commands (``make findings`` / ``make finding-<name>`` run them through ``flows/findings.py``)::

    python scripts/findings.py arm normalisers budget 1   # one arm (what a DVC stage runs)
    python scripts/findings.py report normalisers         # reports/findings/normalisers/
    python scripts/findings.py page [--check]             # docs/findings.md

Every setting is in params.yaml's ``findings`` section (the reduced RL overrides of each arm,
the probe's size and seed); the arms themselves (normalisers x seeds, epochs) are the matrices of
findings/dvc.yaml.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import subprocess
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

from pipeline.atomic import write_json, write_parquet, write_text  # noqa: E402
from pipeline.bench.metrics import paired_bootstrap  # noqa: E402
from pipeline.params import build  # noqa: E402
from pipeline.rl.params import RLParams  # noqa: E402
from pipeline.tracking import RUN_NAME_ENV, git_commit, stage_run  # noqa: E402

FINDINGS = ("normalisers", "entropy_band", "two_stage")
MODELS = Path("models/findings")
REPORTS = Path("reports/findings")
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


# --- arms ------------------------------------------------------------------------------------
def section(params: dict, stage: str, overrides: dict[str, Any]) -> dict:
    """``params[stage]`` with ``overrides`` (dotted keys), checked by the stage's loader."""
    out = copy.deepcopy(params[stage])
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    build(RLParams, out, f"findings: {stage}")  # an unknown key or a bad value fails here
    return out


def arm_runs(params: dict, finding: str, arm: str, seed: str | None = None
             ) -> list[dict[str, Any]]:
    """The RL runs of one arm, in order: ``{stage, start, tasks, section, seed, name}``. A run's
    ``start`` of ``"<previous>"`` is the model of the run before it."""
    f = params["findings"]
    rl = dict(f["rl"])
    base_seed = int(params["seed"])
    if finding == "normalisers":
        if seed is None:
            raise SystemExit("normalisers arm: give the normaliser and the seed")
        return [{"name": "rl_reasoning", "stage": "rl_reasoning", "start": "models/selected",
                 "tasks": "data/rl/reasoning.parquet", "seed": base_seed + int(seed),
                 "section": section(params, "rl_reasoning", {**rl, "normaliser": arm})}]
    if finding == "entropy_band":
        return [{"name": "rl_reasoning", "stage": "rl_reasoning",
                 "start": f"models/sft/epoch_{int(arm)}", "tasks": "data/rl/reasoning.parquet",
                 "seed": base_seed, "section": section(params, "rl_reasoning", rl)}]
    if finding == "two_stage":
        t = f["two_stage"]
        if arm == "two_stage":
            return [{"name": "rl_reasoning", "stage": "rl_reasoning", "start": "models/selected",
                     "tasks": "data/rl/reasoning.parquet", "seed": base_seed,
                     "section": section(params, "rl_reasoning",
                                        {**rl, "steps": t["reasoning_steps"]})},
                    {"name": "rl_general", "stage": "rl_general", "start": "<previous>",
                     "tasks": "data/rl/general.parquet", "seed": base_seed,
                     "section": section(params, "rl_general",
                                        {**rl, "steps": t["general_steps"]})}]
        if arm == "joint":
            mix = dict(params["rl_reasoning"].get("domain_mix") or {})
            if mix:  # the general domains join the mix at the weight of one reasoning domain
                mix.update({d: max(mix.values()) for d in ("ifeval", "open_qa")})
            over = {**rl, "steps": t["reasoning_steps"] + t["general_steps"], "domain_mix": mix}
            return [{"name": "rl_joint", "stage": "rl_reasoning", "start": "models/selected",
                     "tasks": "<joint pool>", "seed": base_seed,
                     "section": section(params, "rl_reasoning", over)}]
        raise SystemExit(f"two_stage arm {arm!r}: choose two_stage or joint")
    raise SystemExit(f"unknown finding {finding!r}; choose from {FINDINGS}")


def arm_name(finding: str, arm: str, seed: str | None = None) -> str:
    if finding == "normalisers":
        return f"{arm}-s{seed}"
    if finding == "entropy_band":
        return f"epoch{int(arm)}"
    return arm


def joint_pool(out: Path) -> str:
    """The rl_reasoning and rl_general prompt files as one task file (the joint arm's pool)."""
    frames = [pl.read_parquet(p) for p in ("data/rl/reasoning.parquet",
                                           "data/rl/general.parquet")]
    path = out / "pool.parquet"
    write_parquet(path, pl.concat(frames, how="diagonal_relaxed"))
    return str(path)


def run_arm(finding: str, arm: str, seed: str | None, params_path: Path) -> Path:
    """Run one arm's RL stage(s): ``models/findings/<finding>/<arm>/<run>/`` and
    ``reports/findings/<finding>/arms/<arm>/<run>/`` (params.yaml, metrics.json, steps.csv,
    reward_curve.png, wall.json)."""
    params = yaml.safe_load(params_path.read_text())
    name = arm_name(finding, arm, seed)
    model_root, report_root = MODELS / finding / name, REPORTS / finding / "arms" / name
    model_root.mkdir(parents=True, exist_ok=True)
    prev = None
    for run in arm_runs(params, finding, arm, seed):
        start = str(prev) if run["start"] == "<previous>" else run["start"]
        tasks = joint_pool(model_root) if run["tasks"] == "<joint pool>" else run["tasks"]
        rep = report_root / run["name"]
        rep.mkdir(parents=True, exist_ok=True)
        arm_params = copy.deepcopy(params)
        arm_params[run["stage"]] = run["section"]
        arm_params["seed"] = run["seed"]
        arm_params.pop("findings", None)
        pfile = rep / "params.yaml"
        write_text(pfile, yaml.safe_dump(arm_params, sort_keys=False))
        out = model_root / run["name"]
        cmd = [sys.executable, "-m", f"pipeline.stages.{run['stage']}", "--model", start,
               "--tasks", tasks, "--val", "data/curated/val.parquet", "--out", str(out),
               "--report-dir", str(rep), "--params", str(pfile)]
        env = dict(os.environ)
        env[RUN_NAME_ENV] = f"{finding}/{name}/{run['name']}"
        print(f"findings: {finding} arm {name}: {run['stage']} from {start}", flush=True)
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=REPO, env=env)
        if rc:
            raise SystemExit(f"findings: {finding} arm {name}: {run['stage']} failed (exit {rc})")
        write_json(rep / "wall.json", {"wall_s": round(time.time() - t0, 1),
                                       "commit": git_commit(REPO)})
        prev = out
    return report_root


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
    """Per arm: tokens and training seconds per optimizer step (mean, CV), whole step time
    (mean, CV), reward on first-seen prompts, entropy (first and last step), gradient norm."""
    opt = [max(r.get("optimizer_steps", 1.0), 1.0) for r in rows]
    tokens = [r["tokens_trained"] for r in rows]
    train = [r["time_train_s"] / o for r, o in zip(rows, opt, strict=True)]
    step = [r["time_step_s"] for r in rows]
    first = [r["reward_first_seen"] for r in rows if "reward_first_seen" in r]
    return {"steps": len(rows), "tokens_per_update": float(np.mean(tokens)),
            "tokens_per_update_cv": cv(tokens), "train_s_per_update": float(np.mean(train)),
            "train_s_per_update_cv": cv(train), "step_s": float(np.mean(step)),
            "step_s_cv": cv(step), "response_len": float(np.mean([r["response_len"] for r in rows])),
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
def verdict_normalisers(per: dict[str, dict[str, float]]) -> tuple[str, str]:
    """``per``: normaliser -> its seeds' mean statistics. Supports: C3PO's tokens per update
    never vary and its training time per update varies at most half as much as token_mean's;
    contradicts: C3PO's training time varies as much as token_mean's or more."""
    b, t = per["budget"], per["token_mean"]
    if b["tokens_per_update_cv"] == 0 and b["train_s_per_update_cv"] <= 0.5 * t[
            "train_s_per_update_cv"]:
        return "supports", (f"C3PO trains exactly the same number of tokens every update (CV 0 "
                            f"against {t['tokens_per_update_cv']:.3f} for token_mean) and its "
                            f"training time per update varies {b['train_s_per_update_cv']:.3f} "
                            f"against {t['train_s_per_update_cv']:.3f}")
    if b["train_s_per_update_cv"] >= t["train_s_per_update_cv"]:
        return "contradicts", (f"C3PO's training time per update varies "
                               f"{b['train_s_per_update_cv']:.3f}, token_mean's "
                               f"{t['train_s_per_update_cv']:.3f}")
    return "cannot tell", (f"C3PO's tokens per update CV {b['tokens_per_update_cv']:.3f}, "
                           f"training time CV {b['train_s_per_update_cv']:.3f} against "
                           f"token_mean's {t['train_s_per_update_cv']:.3f}")


def verdict_entropy(arms: list[dict[str, Any]], vs_best: dict[str, dict]) -> tuple[str, str]:
    """``arms``: per epoch {epoch, entropy, in_band, score}; ``vs_best``: each other arm minus
    the best one (paired CI). Supports: the best arm is in the band and beats every arm outside
    it (CI above 0). Contradicts: the best arm is outside the band and beats every in-band arm.
    Otherwise the CIs overlap and the run cannot tell."""
    best = max(arms, key=lambda a: a["score"])
    others_out = [a for a in arms if a["in_band"] != best["in_band"]]
    beaten = all(vs_best[f"epoch{a['epoch']}"]["ci_high"] < 0 for a in others_out)
    where = "inside" if best["in_band"] else "outside"
    text = (f"the best arm starts from epoch {best['epoch']} (entropy {best['entropy']:.3f}, "
            f"{where} the band)")
    if not others_out:
        return "cannot tell", text + "; every arm lies on the same side of the band"
    if beaten:
        return ("supports" if best["in_band"] else "contradicts"), (
            text + f" and beats every arm {'outside' if best['in_band'] else 'inside'} it "
                   "(95% CIs above 0)")
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
    tasks = probe.fresh_tasks(params, domains, int(p["per_domain"]), int(p["seed"]), seen)
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
    fig.savefig(path, dpi=110)
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
        keys = [k for k, v in stats[names[0]].items() if isinstance(v, float | int)]
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
                    "arm_seconds": arm_seconds(finding)})
        dest = REPORTS / finding
        write_json(dest / "metrics.json", out)
        write_text(dest / "summary.md", finding_markdown(out))
        tracker.tags({"verdict": out["verdict"], "mlflow.note.content": finding_markdown(out)})
        for p in out["plots"]:
            tracker.artifact(dest / p)
    print(finding_markdown(out))
    return out


def arm_seconds(finding: str) -> dict[str, float]:
    out = {}
    for d in arm_dirs(finding):
        out[d.name] = sum(json.loads(w.read_text())["wall_s"] for w in d.glob("*/wall.json"))
    return out


# --- the page --------------------------------------------------------------------------------
def _ci(c: dict) -> str:
    return f"{c['diff']:+.1f} ({c['ci_low']:+.1f} to {c['ci_high']:+.1f})"


def finding_markdown(m: dict[str, Any]) -> str:
    f = m["finding"]
    lines = [f"## {f}", "", f"**Claim.** {m['claim']}", "",
             f"**This run {m['verdict']} it**: {m['why']}.", ""]
    if f == "normalisers":
        lines += ["| normaliser | seeds | tokens/update | CV | train s/update | CV | step s | CV "
                  "| reward first-seen | entropy first → last | grad norm | fresh reasoning | "
                  "vs start | vs budget |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
                  "---:|---:|---|---|"]
        for n, s in m["normalisers"].items():
            lines.append(
                f"| {n} | {s['seeds']} | {s['tokens_per_update']:.0f} | "
                f"{s['tokens_per_update_cv']:.3f} | {s['train_s_per_update']:.2f} | "
                f"{s['train_s_per_update_cv']:.3f} | {s['step_s']:.2f} | {s['step_s_cv']:.3f} | "
                f"{s['reward_first_seen']:.3f} | {s['entropy_first']:.3f} → "
                f"{s['entropy_last']:.3f} | {s['grad_norm']:.3f} | {s['fresh']:.1f} | "
                f"{_ci(s['fresh_vs_start'])} | "
                f"{_ci(s['fresh_vs_budget']) if 'fresh_vs_budget' in s else '—'} |")
        lines += ["", f"Start model (models/selected): {m['start']['fresh']:.1f}. Each row is "
                  "the mean over its seeds; CVs are over the steps of one run, then averaged. "
                  "Fresh reasoning: avg@k in points, the seeds' per-problem scores averaged, "
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
        lines.append("")
    secs = m.get("arm_seconds") or {}
    lines += [f"Arms: {', '.join(f'{k} {v:.0f} s' for k, v in secs.items())}; scoring "
              f"{m['report_seconds']:.0f} s. Commit {m['commit'][:7]}, {m['date']}; settings: "
              "params.yaml `findings` (as run: reports/findings/" + f + "/metrics.json). "
              f"Rerun: `make finding-{f.replace('_', '-')}`."]
    lines += [f"![{f}](../reports/findings/{f}/{p})" for p in m["plots"]]
    return "\n".join(lines) + "\n"


def page_markdown() -> str:
    head = ["# The paper's findings in miniature", "",
            "Generated by `scripts/findings.py page` from reports/findings/*/metrics.json (git "
            "tracked); do not edit by hand. How the arms run and what each finding varies: "
            "docs/rl.md (normalisers), docs/select.md (the band). `make findings` runs all "
            "three, `make finding-normalisers`, `make finding-entropy-band`, "
            "`make finding-two-stage` one each. The arms are reduced RL runs (params.yaml "
            "`findings.rl`), so a verdict holds for that budget, not for the full stages.", ""]
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
    a = sub.add_parser("arm", help="run one arm (a findings/dvc.yaml stage runs this)")
    a.add_argument("finding", choices=FINDINGS)
    a.add_argument("arm", help="normaliser | SFT epoch | two_stage or joint")
    a.add_argument("seed", nargs="?", default=None, help="normalisers: the seed offset")
    a.add_argument("--params", default="params.yaml")
    r = sub.add_parser("report", help="score a finding's arms on fresh problems")
    r.add_argument("finding", choices=FINDINGS)
    r.add_argument("--params", default="params.yaml")
    p = sub.add_parser("page", help="write docs/findings.md from reports/findings/")
    p.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    if args.cmd == "arm":
        run_arm(args.finding, args.arm, args.seed, Path(args.params))
    elif args.cmd == "report":
        report(args.finding, Path(args.params))
    else:
        text = page_markdown()
        if args.check:
            if not PAGE.exists() or PAGE.read_text() != text:
                print(f"{PAGE} is out of date: run scripts/findings.py page", file=sys.stderr)
                return 1
            return 0
        write_text(PAGE, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

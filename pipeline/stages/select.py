"""select: pick the SFT checkpoint that starts RL by its policy entropy (Ring-lite).

For every ``<sft>/epoch_<k>`` HF folder:
1. sample ``samples_per_prompt`` responses at temperature 1.0 to a fixed, seeded subset of
   ``prompts`` RL prompts of ``domain_group`` (default ``reasoning``: the prompts of the RL
   stage the chosen checkpoint starts, as in the paper; the RL rollout settings);
2. mean full-vocabulary token entropy over the generated tokens, from a teacher-forced forward
   (:mod:`pipeline.selection.entropy`);
3. validation accuracy: greedy on ``val_prompts`` tasks of ``--val``, shared verifier.
Then the band rule (:mod:`pipeline.selection.rule`) picks one checkpoint.

Writes ``<out>/`` (a copy of the chosen HF folder + ``choice.json``), ``<report-dir>/
checkpoints.csv`` (DVC plot), ``metrics.json``, ``entropy.png``; mirrors all of it to MLflow.

    python -m pipeline.stages.select --sft models/sft --tasks data/curated/rl.parquet \
        --val data/curated/val.parquet --out models/selected --report-dir reports/select
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl

from pipeline.atomic import atomic_dir, atomic_path, write_json, write_text
from pipeline.bench.sampling import Sampling, open_checkpoint, sample_and_score
from pipeline.headline import write_headline
from pipeline.params import load_section, load_seed
from pipeline.schema import TASK, domain_group, validate
from pipeline.selection.entropy import policy_entropy
from pipeline.selection.rule import Candidate, Choice, choose
from pipeline.tracking import stage_run
from pipeline.verify.reward_model import configure_from

log = logging.getLogger("select")
SKIP_FILES = {"latest", "zero_to_fp32.py"}  # DeepSpeed resume files, not part of the HF model


@dataclass(frozen=True)
class SelectParams:
    engine: Literal["torch", "vllm"] = "torch"
    prompts: int = 24  # RL prompts sampled per checkpoint (fixed, seeded subset)
    domain_group: Literal["reasoning", "general", "all"] = "reasoning"  # which RL prompts
    samples_per_prompt: int = 4  # K
    max_new_tokens: int = 160
    temperature: float = 1.0
    top_p: float = 1.0
    val_prompts: int = 48  # greedy validation tasks per checkpoint
    band_low: float = 0.15  # entropy band in nats, calibrated to the tiny default model
    band_high: float = 0.3  # (paper: 0.3-0.5 for its 16.8B model; see docs/select.md)
    tie_break: Literal["latest", "best_accuracy"] = "latest"


def checkpoints(sft_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, folder) for every ``epoch_<k>`` folder holding a config.json, by epoch."""
    found = []
    for p in sft_dir.iterdir() if sft_dir.is_dir() else []:
        m = re.fullmatch(r"epoch_(\d+)", p.name)
        if m and (p / "config.json").exists():
            found.append((int(m.group(1)), p))
    if not found:
        raise FileNotFoundError(f"{sft_dir}: no epoch_<k>/ checkpoint folders with config.json")
    return sorted(found)


def group_rows(df: pl.DataFrame, group: str, source: str) -> pl.DataFrame:
    """The rows of ``df`` whose domain belongs to ``group`` (``all``: every row); the params
    loader has already rejected any other value of ``select.domain_group``."""
    if group == "all":
        return df
    keep = [domain_group(d) == group for d in df["domain"].to_list()]
    out = df.filter(pl.Series(keep, dtype=pl.Boolean))
    if out.height == 0:
        found = sorted(set(df["domain"].to_list()))
        raise ValueError(f"{source}: no RL prompts of domain group {group!r} "
                         f"(select.domain_group); domains present: {found}")
    return out


def subset(df: pl.DataFrame, count: int, seed: int) -> list[dict[str, Any]]:
    """A fixed, seeded subset of ``count`` rows (all rows if fewer)."""
    if count <= 0 or count >= df.height:
        return df.to_dicts()
    return df.sample(n=count, seed=seed, shuffle=True).to_dicts()


def measure(
    path: Path, epoch: int, rl: Sequence[dict], val: Sequence[dict], p: SelectParams, seed: int,
    run: Any,
) -> dict[str, Any]:
    """Entropy and validation accuracy of one checkpoint."""
    rollouts = Sampling(p.samples_per_prompt, p.max_new_tokens, p.temperature, p.top_p, seed)
    greedy = Sampling(1, p.max_new_tokens, 0.0, 1.0, seed)
    with open_checkpoint(path, p.engine) as (model, tok, engine):
        rows = sample_and_score(engine, tok, rl, rollouts, f"epoch_{epoch}",
                                desc=f"epoch {epoch} rollouts", keep_ids=True)
        vrows = sample_and_score(engine, tok, val, greedy, f"epoch_{epoch}",
                                 desc=f"epoch {epoch} val")
    entropy, tokens = policy_entropy(
        model, [r["prompt_ids"] for r in rows], [r["token_ids"] for r in rows],
        pad_id=tok.pad_token_id or 0,
    )
    out = {
        "epoch": epoch, "checkpoint": str(path), "entropy": entropy,
        "val_accuracy": sum(r["correct"] for r in vrows) / max(1, len(vrows)),
        "rollout_accuracy": sum(r["correct"] for r in rows) / max(1, len(rows)),
        "mean_tokens": tokens / max(1, len(rows)),
        "truncated": sum(r["finish_reason"] == "length" for r in rows) / max(1, len(rows)),
    }
    run.step(epoch, **{k: v for k, v in out.items() if k not in ("epoch", "checkpoint")})
    return out


def plot(table: pl.DataFrame, p: SelectParams, chosen_epoch: int) -> Any:
    """Entropy and validation accuracy against epoch, the band shaded, the choice marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.axhspan(p.band_low, p.band_high, color="tab:green", alpha=0.15, label="entropy band")
    ax.plot(table["epoch"], table["entropy"], "o-", color="tab:blue", label="entropy (nats)")
    ax.set_xlabel("SFT epoch")
    ax.set_ylabel("mean token entropy (nats)")
    top = max(e for e in table["entropy"].to_list() if e == e) if table.height else 1.0
    ax.set_ylim(0, 1.15 * max(top, min(p.band_high, 2 * top)))  # a very wide band is clipped
    ax2 = ax.twinx()
    ax2.plot(table["epoch"], table["val_accuracy"], "s--", color="tab:orange", label="val acc")
    ax2.set_ylabel("validation accuracy")
    ax2.set_ylim(0, 1)
    ax.axvline(chosen_epoch, color="gray", linestyle=":", label=f"chosen: epoch {chosen_epoch}")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def copy_checkpoint(src: Path, out: Path, choice: dict[str, Any]) -> None:
    """Copy the HF files of ``src`` (not DeepSpeed state) into ``out`` with choice.json."""
    with atomic_dir(out) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.name not in SKIP_FILES:
                shutil.copy2(f, tmp / f.name)
        write_json(tmp / "choice.json", choice)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft", type=Path, required=True)
    ap.add_argument("--tasks", type=Path, required=True)
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report-dir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load_section("select", SelectParams, a.params)
    configure_from(a.params)  # the open_qa reward model (params section reward_model)
    seed = load_seed(a.params)
    tasks = validate(pl.read_parquet(a.tasks), TASK, str(a.tasks))
    rl = subset(group_rows(tasks, p.domain_group, str(a.tasks)), p.prompts, seed)
    val = subset(validate(pl.read_parquet(a.val), TASK, str(a.val)), p.val_prompts, seed)
    with stage_run("select", p) as run:
        rows = [measure(path, e, rl, val, p, seed, run) for e, path in checkpoints(a.sft)]
        cands = [Candidate(r["checkpoint"], r["epoch"], r["entropy"], r["val_accuracy"])
                 for r in rows]
        choice: Choice = choose(cands, p.band_low, p.band_high, p.tie_break)
        if choice.warning:
            log.warning(choice.warning)
        c = choice.candidate
        for r in rows:
            r["in_band"] = p.band_low <= r["entropy"] <= p.band_high
            r["chosen"] = r["epoch"] == c.epoch
        table = pl.DataFrame(rows)
        info = {"checkpoint": c.checkpoint, "epoch": c.epoch, "entropy": c.entropy,
                "accuracy": c.accuracy, "in_band": choice.in_band, "why": choice.why,
                "warning": choice.warning, "band": [p.band_low, p.band_high],
                "tie_break": p.tie_break}
        copy_checkpoint(Path(c.checkpoint), a.out, info)
        a.report_dir.mkdir(parents=True, exist_ok=True)
        write_text(a.report_dir / "checkpoints.csv", table.write_csv())
        metrics = {"chosen_epoch": c.epoch, "chosen_entropy": c.entropy,
                   "chosen_val_accuracy": c.accuracy, "in_band": choice.in_band,
                   "checkpoints": len(rows), "band_low": p.band_low, "band_high": p.band_high}
        write_json(a.report_dir / "metrics.json", metrics)
        write_headline("select", metrics, a.report_dir)
        fig = plot(table, p, c.epoch)
        with atomic_path(a.report_dir / "entropy.png") as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        run.metrics(metrics)
        run.tags({"chosen_checkpoint": c.checkpoint, "why": choice.why})
        run.table(table, "checkpoints.json")
        run.figure(fig, "entropy.png")
        run.artifact(a.report_dir / "checkpoints.csv")
        run.artifact(a.out / "choice.json")
    log.info("selected %s: %s", c.checkpoint, choice.why)
    print(f"selected {c.checkpoint}: {choice.why}")


if __name__ == "__main__":
    main()

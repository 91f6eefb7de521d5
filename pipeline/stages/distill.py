"""distill: a teacher writes long-CoT traces for the SFT prompts; rejection sampling keeps them.

Teacher: the programmatic teachers (``pipeline.tasks.teacher_trace``, default ``teacher:
programmatic``), or an LLM teacher: ``teacher: <local HF path>`` run through
``pipeline.engines`` (``engine: torch | vllm``), ``samples_per_prompt`` samples per prompt at
``temperature`` / ``top_p``. Every candidate goes through one filter chain, each drop named:

1. ``truncated``: the generation hit its length limit, or ``<think>`` was never closed;
2. ``too_long``: more than ``max_response_tokens`` tokens (base tokenizer);
3. ``repetition``: some ``repeat_ngram``-word n-gram occurs more than ``max_ngram_repeats``
   times (a repetition loop);
4. ``duplicate``: the same response already seen for that prompt;
5. ``incorrect``: rejected by ``pipeline.verify.score_batch`` (the verifier's reason is kept);
6. ``surplus``: verified, but the prompt already has ``max_traces_per_prompt`` traces.

Writes ``traces.parquet`` (schema TRACE), ``rejected.parquet`` (TRACE + ``reason``) and
``stats.json`` (accepted/rejected by reason, tokens per domain, domain mix). Run::

    python -m pipeline.stages.distill --tasks data/curated/sft.parquet \
        --tokenizer models/base --out-dir data/distill
"""

from __future__ import annotations

import argparse
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from tqdm import tqdm

from pipeline.atomic import write_json, write_parquet
from pipeline.headline import write_headline
from pipeline.params import load_section, load_seed
from pipeline.schema import TASK, TRACE, frame, validate
from pipeline.tracking import rows_of, stage_run
from pipeline.verify.reward_model import configure_from

log = logging.getLogger("distill")
PROGRAMMATIC = "programmatic"
REJECTED = {**TRACE, "reason": pl.String}


@dataclass(frozen=True)
class DistillParams:
    """Section ``distill`` of params.yaml."""

    teacher: str = PROGRAMMATIC  # programmatic | a local HF checkpoint path (LLM teacher)
    engine: Literal["torch", "vllm"] = "torch"  # LLM teacher backend
    samples_per_prompt: int = 4  # LLM teacher samples per prompt (programmatic: 1)
    temperature: float = 0.6  # R1-style teacher sampling (0.6 / top-p 0.95)
    top_p: float = 0.95
    max_new_tokens: int = 1024  # LLM teacher generation limit
    max_traces_per_prompt: int = 1  # N: verified traces kept per prompt
    max_response_tokens: int = 256  # longer traces are dropped (base tokenizer tokens)
    repeat_ngram: int = 10  # n-gram size (words) of the repetition-loop check
    max_ngram_repeats: int = 4  # an n-gram seen more often than this = a loop
    batch_size: int = 256  # prompts per teacher/verifier batch
    workers: int = 2  # verifier processes
    verify_timeout_s: float = 30.0


@dataclass(frozen=True)
class Candidate:
    text: str
    finish_reason: str = "stop"  # "stop" | "length"


Teacher = Callable[[Sequence[Mapping[str, Any]]], list[list[Candidate]]]
Scorer = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], Sequence[Any]]


def has_loop(text: str, n: int, max_repeats: int) -> bool:
    """True if some ``n``-word n-gram occurs more than ``max_repeats`` times in ``text``."""
    words = text.split()
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return bool(counts) and max(counts.values()) > max_repeats


def is_truncated(c: Candidate) -> bool:
    opened = len(re.findall(r"<think>", c.text))
    closed = len(re.findall(r"</think>", c.text))
    return c.finish_reason == "length" or opened > closed


def prefilter(c: Candidate, n_tokens: int, p: DistillParams) -> str | None:
    """The drop reason of a candidate before verification, or None if it passes."""
    if is_truncated(c):
        return "truncated"
    if n_tokens > p.max_response_tokens:
        return "too_long"
    if has_loop(c.text, p.repeat_ngram, p.max_ngram_repeats):
        return "repetition"
    return None


def trace_row(task: Mapping[str, Any], text: str, teacher: str, verified: bool,
              prompt_tokens: int, response_tokens: int) -> dict[str, Any]:
    return {"task_id": task["id"], "domain": task["domain"], "prompt": task["prompt"],
            "response": text, "teacher": teacher, "verified": verified,
            "prompt_tokens": prompt_tokens, "response_tokens": response_tokens}


def distill_batch(
    tasks: Sequence[Mapping[str, Any]], cands: list[list[Candidate]], scorer: Scorer,
    count_tokens: Callable[[str], int], teacher_name: str, p: DistillParams,
) -> tuple[list[dict], list[dict]]:
    """Filter and verify one batch of candidates; returns (accepted, rejected) rows."""
    accepted, rejected, pending = [], [], []
    for task, cs in zip(tasks, cands, strict=True):
        seen: set[str] = set()
        for c in cs:
            n_p, n_r = count_tokens(task["prompt"]), count_tokens(c.text)
            reason = prefilter(c, n_r, p)
            if reason is None and c.text in seen:
                reason = "duplicate"
            seen.add(c.text)
            row = trace_row(task, c.text, teacher_name, False, n_p, n_r)
            if reason:
                rejected.append({**row, "reason": reason})
            else:
                pending.append((task, row))
    scores = scorer([t for t, _ in pending], [r["response"] for _, r in pending]) if pending else []
    kept: Counter[str] = Counter()
    for (task, row), s in zip(pending, scores, strict=True):
        if not s.correct:
            rejected.append({**row, "reason": f"incorrect:{s.reason}"})
        elif kept[task["id"]] >= p.max_traces_per_prompt:
            rejected.append({**row, "verified": True, "reason": "surplus"})
        else:
            kept[task["id"]] += 1
            accepted.append({**row, "verified": True})
    return accepted, rejected


def stats(tasks: Sequence[Mapping[str, Any]], accepted: list[dict], rejected: list[dict]
          ) -> dict[str, Any]:
    """Counts by reason and domain, token totals per domain, the accepted domain mix."""
    by_domain: dict[str, dict[str, Any]] = {}
    for r in accepted:
        d = by_domain.setdefault(r["domain"], {"traces": 0, "prompt_tokens": 0,
                                               "response_tokens": 0})
        d["traces"] += 1
        d["prompt_tokens"] += r["prompt_tokens"]
        d["response_tokens"] += r["response_tokens"]
    for d in by_domain.values():
        d["mean_response_tokens"] = d["response_tokens"] / d["traces"]
    n_acc = len(accepted)
    reasons = Counter(r["reason"].split(":")[0] for r in rejected)
    detail = Counter(r["reason"] for r in rejected)
    covered = {r["task_id"] for r in accepted}
    return {
        "tasks": len(tasks), "candidates": n_acc + len(rejected), "accepted": n_acc,
        "rejected": dict(sorted(reasons.items())), "rejected_detail": dict(sorted(detail.items())),
        "prompts_covered": len(covered),
        "prompt_coverage": len(covered) / max(1, len(tasks)),
        "tokens_per_domain": dict(sorted(by_domain.items())),
        "domain_mix": {k: v["traces"] / n_acc for k, v in sorted(by_domain.items())},
    }


def headline(st: dict[str, Any]) -> dict[str, Any]:
    """The distill run's MLflow metrics: counts, coverage, drops by reason, the domain mix.
    Token counts per domain go to a table."""
    keys = ("tasks", "candidates", "accepted", "prompts_covered", "prompt_coverage",
            "rejected", "domain_mix")
    return {k: st[k] for k in keys}


def distill(
    tasks: Sequence[Mapping[str, Any]], teacher: Teacher, scorer: Scorer,
    count_tokens: Callable[[str], int], teacher_name: str, p: DistillParams,
    on_batch: Callable[[int, dict[str, int]], None] = lambda i, m: None,
) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Pure core: tasks in; (accepted trace rows, rejected rows, stats) out."""
    accepted: list[dict] = []
    rejected: list[dict] = []
    batches = range(0, len(tasks), p.batch_size)
    for i, b in enumerate(tqdm(batches, desc="distill", unit="batch")):
        chunk = tasks[b : b + p.batch_size]
        acc, rej = distill_batch(chunk, teacher(chunk), scorer, count_tokens, teacher_name, p)
        accepted += acc
        rejected += rej
        on_batch(i, {"accepted": len(accepted), "rejected": len(rejected)})
    return accepted, rejected, stats(tasks, accepted, rejected)


def programmatic_teacher(tasks: Sequence[Mapping[str, Any]]) -> list[list[Candidate]]:
    from pipeline.tasks import teacher_trace

    return [[Candidate(teacher_trace(t), "stop")] for t in tasks]


def llm_teacher(p: DistillParams, seed: int) -> Teacher:
    """Sample ``samples_per_prompt`` responses per task from the local HF model ``p.teacher``."""
    from transformers import AutoTokenizer

    from pipeline.engines import make_engine
    from pipeline.model.chat import format_prompt

    tok = AutoTokenizer.from_pretrained(p.teacher)
    engine = make_engine(p.engine, model_path=p.teacher)
    calls = iter(range(10**9))

    def teach(tasks: Sequence[Mapping[str, Any]]) -> list[list[Candidate]]:
        prompts = [format_prompt(tok, t["prompt"]) for t in tasks]
        outs = engine.generate(prompts, n=p.samples_per_prompt, max_new_tokens=p.max_new_tokens,
                               temperature=p.temperature, top_p=p.top_p,
                               seed=seed + next(calls))
        return [[Candidate(c.text, c.finish_reason) for c in cs] for cs in outs]

    return teach


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=Path, required=True)
    ap.add_argument("--tokenizer", type=Path, required=True, help="base model folder")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--report-dir", type=Path, default=None,
                    help="where headline.json goes (default: --out-dir)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = load_section("distill", DistillParams, a.params)
    configure_from(a.params)  # the open_qa reward model (params section reward_model)
    seed = load_seed(a.params)
    from transformers import AutoTokenizer

    from pipeline.verify import score_batch

    tok = AutoTokenizer.from_pretrained(a.tokenizer)
    df = validate(pl.read_parquet(a.tasks), TASK, str(a.tasks))
    tasks = df.to_dicts()
    with stage_run("distill", p) as run:
        run.dataset(df.select("id", "domain"), "sft_tasks", str(a.tasks))
        teacher = programmatic_teacher if p.teacher == PROGRAMMATIC else llm_teacher(p, seed)
        name = PROGRAMMATIC if p.teacher == PROGRAMMATIC else Path(p.teacher).name

        def scorer(ts, rs):
            return score_batch(ts, rs, workers=p.workers, timeout_s=p.verify_timeout_s)

        def count(text: str) -> int:
            return len(tok(text, add_special_tokens=False).input_ids)

        accepted, rejected, st = distill(tasks, teacher, scorer, count, name, p,
                                         on_batch=lambda i, m: run.step(i, **m))
        a.out_dir.mkdir(parents=True, exist_ok=True)
        write_parquet(a.out_dir / "traces.parquet", frame(accepted, TRACE))
        write_parquet(a.out_dir / "rejected.parquet", frame(rejected, REJECTED))
        write_json(a.out_dir / "stats.json", st)
        write_headline("distill", st, a.report_dir or a.out_dir)
        run.metrics(headline(st))
        run.artifact(a.out_dir / "stats.json")
        if st["tokens_per_domain"]:
            run.table(rows_of(st["tokens_per_domain"], "domain"), "tables/tokens_per_domain.json")
        if accepted:
            run.table(frame(accepted[:50], TRACE), "sample_traces.json")
        log.info("distill: %d accepted, rejected %s", st["accepted"], st["rejected"])


if __name__ == "__main__":
    main()

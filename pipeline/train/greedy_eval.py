"""Greedy decoding of held-out tasks during SFT, to make learning visible per epoch.

``greedy_responses`` chat-formats the prompts and decodes them greedily with the torch
generation engine (:mod:`pipeline.engines.torch_engine`: left padding, finished rows dropped,
the fast qwen2_moe decode path), ``batch_size`` rows at a time. Texts stop before EOS; special
tokens such as ``<think>`` are kept (the verifiers need them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipeline.engines.torch_engine import TorchEngine
from pipeline.model.chat import format_prompt


def greedy_responses(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy completions for ``prompts`` (raw user prompts, chat-formatted here)."""
    engine = TorchEngine(model=model, tokenizer=tokenizer, batch_size=batch_size)
    texts = [format_prompt(tokenizer, p) for p in prompts]
    out = engine.generate(texts, n=1, max_new_tokens=max_new_tokens, temperature=0.0,
                          top_p=1.0, seed=0)
    return [row[0].text for row in out]


def greedy_accuracy(
    model: Any, tokenizer: Any, tasks: Sequence[Mapping[str, Any]],
    score_batch: Callable[[Sequence[Mapping[str, Any]], Sequence[str]], Sequence[Any]],
    max_new_tokens: int, batch_size: int,
) -> dict[str, Any]:
    """Share of ``tasks`` solved greedily, overall and per domain, plus a few samples."""
    if not tasks:
        return {"accuracy": float("nan"), "n": 0, "per_domain": {}, "samples": []}
    responses = greedy_responses(model, tokenizer, [t["prompt"] for t in tasks],
                                 max_new_tokens, batch_size)
    scores = score_batch(tasks, responses)
    per: dict[str, list[bool]] = {}
    for t, s in zip(tasks, scores, strict=True):
        per.setdefault(t["domain"], []).append(bool(s.correct))
    correct = sum(bool(s.correct) for s in scores)
    return {
        "accuracy": correct / len(tasks),
        "n": len(tasks),
        "per_domain": {d: sum(v) / len(v) for d, v in sorted(per.items())},
        "samples": [
            {"domain": t["domain"], "prompt": t["prompt"], "response": r,
             "correct": bool(s.correct), "reason": s.reason}
            for t, r, s in list(zip(tasks, responses, scores, strict=True))[:8]
        ],
    }

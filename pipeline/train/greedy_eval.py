"""Greedy decoding of held-out tasks during SFT, to make learning visible per epoch.

``greedy_responses`` batches chat-formatted prompts (left padding) through HF ``generate`` with
``do_sample=False`` and cuts each output at EOS. Special tokens such as ``<think>`` are kept in
the text (the verifiers need them); only pad/EOS are removed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from pipeline.model.chat import format_prompt


@torch.no_grad()
def greedy_responses(
    model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int
) -> list[str]:
    """Greedy completions for ``prompts`` (raw user prompts, chat-formatted here)."""
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    dev = next(model.parameters()).device
    out: list[str] = []
    try:
        for b in range(0, len(prompts), batch_size):
            texts = [format_prompt(tokenizer, p) for p in prompts[b : b + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            gen = model.generate(
                input_ids=enc.input_ids.to(dev), attention_mask=enc.attention_mask.to(dev),
                max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            for seq in gen[:, enc.input_ids.shape[1] :].tolist():
                out.append(_cut(tokenizer, seq))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def _cut(tokenizer: Any, ids: list[int]) -> str:
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    ids = [i for i in ids if i != tokenizer.pad_token_id]
    return tokenizer.decode(ids, skip_special_tokens=False)


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

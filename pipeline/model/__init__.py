"""Model API: the tokenizer, the tiny MoE, checkpoints and the chat format.

- ``ModelParams``: the ``model`` section of params.yaml.
- ``train_tokenizer(texts, vocab_size)``: byte-level BPE with our special tokens and chat template.
- ``build_tiny_moe(params, tokenizer, seed=0)``: a qwen2_moe (routed top-k + shared expert).
- ``save_checkpoint(model, tokenizer, out_dir)`` / ``load_model(path)``: HF folders, atomic, offline.
- ``tiny_test_model()``: a very small (model, tokenizer) for unit tests.
- ``format_prompt(tokenizer, prompt)``: the chat-formatted model input.
"""

from pipeline.model.chat import (
    ASSISTANT,
    CHAT_TEMPLATE,
    END,
    PAD,
    SPECIAL_TOKENS,
    THINK_CLOSE,
    THINK_OPEN,
    USER,
    format_prompt,
)
from pipeline.model.checkpoint import copy_checkpoint, load_model, save_checkpoint
from pipeline.model.moe import (
    TINY_MOE,
    ModelParams,
    build_tiny_moe,
    count_parameters,
    vllm_cpu_problems,
)
from pipeline.model.tiny import tiny_test_model
from pipeline.model.tokenizer import train_tokenizer

__all__ = [
    "ASSISTANT",
    "CHAT_TEMPLATE",
    "END",
    "PAD",
    "SPECIAL_TOKENS",
    "THINK_CLOSE",
    "THINK_OPEN",
    "TINY_MOE",
    "USER",
    "ModelParams",
    "build_tiny_moe",
    "copy_checkpoint",
    "count_parameters",
    "format_prompt",
    "load_model",
    "save_checkpoint",
    "tiny_test_model",
    "train_tokenizer",
    "vllm_cpu_problems",
]

"""The chat format every stage uses to turn a task prompt into model input.

Our pipeline-trained tokenizer carries a chat template that renders exactly
``<|user|>\\n{prompt}\\n<|assistant|>\\n``; the model's response then runs to ``<|end|>`` (its
EOS token). A real Hugging Face checkpoint brings its own template; :func:`format_prompt`
always goes through ``tokenizer.apply_chat_template`` so both paths share one code path.

Responses are ``<think>…</think>`` followed by the final answer (math answers in ``\\boxed{}``).
"""

from __future__ import annotations

from typing import Any

USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
PAD = "<|pad|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS = (PAD, END, USER, ASSISTANT, THINK_OPEN, THINK_CLOSE)

# Jinja chat template stored in our tokenizer_config.json.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + "\n{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + "\n{{ m['content'] }}" + END + "\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "\n{% endif %}"
)


def format_prompt(tokenizer: Any, prompt: str) -> str:
    """Chat-formatted model input for a user prompt, ending where the response starts."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )

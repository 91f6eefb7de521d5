"""The final answer of a response: the text after the last ``</think>``.

``final_answer(response) -> (answer_text, problem_or_None)``:

- ``"<think>steps</think> 42"`` -> ``("42", None)`` (the LAST ``</think>`` counts, so an answer
  cannot hide a second think block);
- no think block at all -> the whole text, stripped;
- ``<think>`` without ``</think>`` -> ``("", "unterminated_think")``: a truncated response, which
  every verifier scores 0.

A trailing end-of-response token ``<|end|>`` (and padding) is dropped, in case the caller decoded
special tokens.
"""

from __future__ import annotations

# The same strings as pipeline.model.chat (a test checks); not imported from there because
# pipeline.model pulls in torch, and verifier workers must stay light.
THINK_OPEN, THINK_CLOSE, END, PAD = "<think>", "</think>", "<|end|>", "<|pad|>"
UNTERMINATED = "unterminated_think"


def final_answer(response: str) -> tuple[str, str | None]:
    """Split off the final answer; see the module docstring."""
    if not isinstance(response, str):
        raise TypeError(f"response must be str, got {type(response).__name__}")
    cut = response.rfind(THINK_CLOSE)
    if cut >= 0:
        text = response[cut + len(THINK_CLOSE) :]
    elif THINK_OPEN in response:
        return "", UNTERMINATED
    else:
        text = response
    text = text.replace(PAD, "")
    end = text.find(END)
    if end >= 0:
        text = text[:end]
    return text.strip(), None

"""Generation engines: one interface, two backends (torch and vLLM).

Every stage that samples from a model (distill with an LLM teacher, select, difficulty, RL
rollouts, bench) goes through :class:`GenerationEngine`::

    engine = make_engine("torch", model=model, tokenizer=tok)          # in-memory model
    engine = make_engine("vllm", model_path="models/sft/epoch_2")      # HF folder
    out = engine.generate(prompts, n=4, max_new_tokens=128, temperature=1.0, top_p=1.0, seed=0)
    out[i][j].text, out[i][j].token_ids, out[i][j].logprobs, out[i][j].finish_reason
    engine.update_weights(policy)   # after an RL step: the engine now samples from `policy`
    engine.close()

Log-prob convention (both engines): ``logprobs[t]`` is the log-probability of the sampled token
under the *temperature-scaled* distribution ``log_softmax(logits / T)`` without top-p
truncation (T = 0, greedy, reports ``log_softmax(logits)``). That is the distribution RL's
importance ratio uses, and it is exactly what :func:`pipeline.engines.scoring.token_logprobs`
recomputes by teacher forcing, so for the torch engine the rollout/trainer mismatch is ~0.

``token_ids`` include the final EOS token when ``finish_reason == "stop"`` (RL trains on it);
``text`` is the decoded response without the EOS token, special tokens such as ``<think>`` kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

FINISH_REASONS = ("stop", "length")


@dataclass(frozen=True)
class Completion:
    """One sampled response: decoded text, token ids, per-token log-probs, why it ended."""

    text: str
    token_ids: list[int] = field(repr=False)
    logprobs: list[float] = field(repr=False)
    finish_reason: str  # "stop" (EOS) | "length" (max_new_tokens)


@runtime_checkable
class GenerationEngine(Protocol):
    """The one generation interface (see module docstring for the log-prob convention)."""

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seed: int,
    ) -> list[list[Completion]]:
        """``result[i]`` holds ``n`` completions of the chat-formatted ``prompts[i]``."""
        ...

    def update_weights(self, model: Any) -> None:
        """Make later ``generate`` calls sample from ``model``'s current weights."""
        ...

    def close(self) -> None:
        """Release the engine's resources (processes, memory)."""
        ...


def check_sampling_args(n: int, max_new_tokens: int, temperature: float, top_p: float) -> None:
    """Raise ValueError naming the first bad sampling argument."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def check_prompts(prompts: Sequence[str]) -> None:
    """Raise TypeError/ValueError naming the first prompt that is not a non-empty string."""
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] is {type(p).__name__}, expected a chat-formatted str")
        if not p:
            raise ValueError(f"prompts[{i}] is empty")


def make_engine(
    kind: str,
    model_path: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    **opts: Any,
) -> GenerationEngine:
    """Build an engine of ``kind`` ("torch" | "vllm").

    torch: pass ``model`` + ``tokenizer`` (in-memory, e.g. the live RL policy) or ``model_path``.
    vllm: needs ``model_path`` (an HF folder); ``model``/``tokenizer`` are ignored except that a
    given ``model`` is synced into the engine right after start. Extra ``opts`` go to the backend
    (see :class:`TorchEngine` / :class:`VllmEngine`).
    """
    if kind == "torch":
        from pipeline.engines.torch_engine import TorchEngine

        return TorchEngine(model=model, tokenizer=tokenizer, model_path=model_path, **opts)
    if kind == "vllm":
        from pipeline.engines.vllm_engine import VllmEngine

        if model_path is None:
            raise ValueError("the vllm engine needs model_path (an HF checkpoint folder)")
        engine = VllmEngine(model_path, **opts)
        if model is not None:
            engine.update_weights(model)
        return engine
    raise ValueError(f"unknown engine kind {kind!r}: expected 'torch' or 'vllm'")


__all__ = [
    "FINISH_REASONS",
    "Completion",
    "GenerationEngine",
    "check_prompts",
    "check_sampling_args",
    "make_engine",
]

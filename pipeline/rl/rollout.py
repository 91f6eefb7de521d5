"""Rollouts: sample K responses for each of a step's prompts, score them.

The step's prompts come from :class:`pipeline.rl.prompts.PromptStream`; the engine is seeded
with ``seed * 1_000_003 + s`` (plus a constant per extra rollout round), so a resumed run
samples exactly what the uninterrupted run sampled. :func:`sample_tasks` (independent draws
seeded by the caller) is kept for the throughput script.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.model.chat import format_prompt

ScoreFn = Callable[[Sequence[Mapping[str, Any]], Sequence[str]], Sequence[Any]]


def sample_tasks(tasks: Sequence[Mapping[str, Any]], n: int, mix: Mapping[str, float],
                 rng: np.random.Generator) -> list[Mapping[str, Any]]:
    """``n`` tasks: a domain by ``mix`` weight (domains present only), then a task uniformly.

    An empty ``mix`` samples tasks uniformly. A mix naming no domain present is an error.
    """
    if not tasks:
        raise ValueError("no tasks to sample RL prompts from")
    if not mix:
        return [tasks[int(i)] for i in rng.integers(0, len(tasks), size=n)]
    by_domain: dict[str, list[int]] = {}
    for i, t in enumerate(tasks):
        by_domain.setdefault(str(t["domain"]), []).append(i)
    domains = sorted(d for d in mix if d in by_domain and mix[d] > 0)
    if not domains:
        raise ValueError(f"domain_mix {dict(mix)} names no domain present in the tasks "
                         f"({sorted(by_domain)})")
    w = np.array([mix[d] for d in domains], dtype=np.float64)
    picks = rng.choice(len(domains), size=n, p=w / w.sum())
    return [tasks[by_domain[domains[d]][int(rng.integers(0, len(by_domain[domains[d]])))]]
            for d in picks]


@dataclass
class Rollout:
    """One rollout batch, flat in prompt-major order (response i = prompt i // K, sample i % K)."""

    tasks: list[Mapping[str, Any]]  # L tasks
    prompt_ids: list[list[int]]  # L tokenised chat prompts
    token_ids: list[list[int]]  # L*K responses (EOS included when it stopped)
    engine_logprobs: list[list[float]]
    texts: list[str]
    finish: list[str]
    rewards: np.ndarray  # (L, K)
    correct: np.ndarray  # (L, K) bool

    @property
    def k(self) -> int:
        return self.rewards.shape[1]


def generate(engine: Any, tokenizer: Any, tasks: Sequence[Mapping[str, Any]], *, n: int,
             max_new_tokens: int, temperature: float, top_p: float, seed: int
             ) -> tuple[list[list[int]], list[Any]]:
    """(prompt ids per task, flat completions prompt-major) from the generation engine."""
    prompts = [format_prompt(tokenizer, str(t["prompt"])) for t in tasks]
    outs = engine.generate(prompts, n=n, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_p=top_p, seed=seed)
    prompt_ids = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    return prompt_ids, [c for group in outs for c in group]


def score(score_fn: ScoreFn, tasks: Sequence[Mapping[str, Any]], texts: Sequence[str],
          k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rewards (L, K), correct (L, K)) from the shared verifier for prompt-major ``texts``.

    A verdict is a function of the task and the response, so each distinct (task, response)
    pair is scored once and its verdict shared by its copies (a sharp policy often samples the
    same short answer several times in a group; a code answer costs a sandbox run).
    """
    first: dict[tuple[int, str], int] = {}
    slot = [first.setdefault((i // k, text), len(first)) for i, text in enumerate(texts)]
    unique = list(first)
    scored = score_fn([tasks[p] for p, _ in unique], [text for _, text in unique])
    scores = [scored[j] for j in slot]
    rewards = np.array([float(s.reward) for s in scores], dtype=np.float64).reshape(-1, k)
    correct = np.array([bool(s.correct) for s in scores]).reshape(-1, k)
    return rewards, correct


def rollout(engine: Any, tokenizer: Any, tasks: Sequence[Mapping[str, Any]], *, k: int,
            max_new_tokens: int, temperature: float, top_p: float, seed: int
            ) -> Rollout:
    """Sample (no scoring yet: ``rewards``/``correct`` are filled by :func:`score`)."""
    prompt_ids, comps = generate(engine, tokenizer, tasks, n=k, max_new_tokens=max_new_tokens,
                                 temperature=temperature, top_p=top_p, seed=seed)
    empty = np.zeros((len(tasks), k))
    return Rollout(
        tasks=list(tasks), prompt_ids=prompt_ids,
        token_ids=[list(c.token_ids) for c in comps],
        engine_logprobs=[list(c.logprobs) for c in comps],
        texts=[c.text for c in comps], finish=[c.finish_reason for c in comps],
        rewards=empty, correct=empty.astype(bool),
    )


def merge(parts: Sequence[Rollout]) -> Rollout:
    """One rollout of several rounds (their prompts in order, each with its K responses)."""
    if len(parts) == 1:
        return parts[0]
    return Rollout(
        tasks=[t for r in parts for t in r.tasks],
        prompt_ids=[x for r in parts for x in r.prompt_ids],
        token_ids=[x for r in parts for x in r.token_ids],
        engine_logprobs=[x for r in parts for x in r.engine_logprobs],
        texts=[x for r in parts for x in r.texts],
        finish=[x for r in parts for x in r.finish],
        rewards=np.concatenate([r.rewards for r in parts]),
        correct=np.concatenate([r.correct for r in parts]),
    )

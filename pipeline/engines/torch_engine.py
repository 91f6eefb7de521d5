"""The torch generation engine: a transformers causal LM, our own batched decode loop.

Works everywhere (CPU or GPU) and on an in-memory model (the live RL policy). Per call:
1. every prompt is repeated ``n`` times; rows are decoded in chunks of ``batch_size``;
2. a chunk is left-padded and prefilled once (KV cache: transformers ``DynamicCache``);
3. each step samples one token per row from ``softmax(logits / T)`` restricted to the top-p
   nucleus, and records ``log_softmax(logits / T)[token]`` (no top-p truncation, see
   ``pipeline.engines`` for why);
4. rows that emit EOS leave the batch (their KV rows are dropped), so late steps run on the
   rows still going; a row stops at EOS ("stop") or after ``max_new_tokens`` ("length").
Seeded by a ``torch.Generator`` per chunk: the same call with the same seed gives the same
samples. A progress bar shows for calls with more than ``progress_min_rows`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from pipeline.engines import Completion, check_prompts, check_sampling_args
from pipeline.engines.scoring import positions


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row of ``logits`` (B, V): (tokens (B,), logprobs (B,)).

    T = 0 is greedy (log-prob from ``log_softmax(logits)``). Otherwise the token is drawn from
    the top-p nucleus of ``softmax(logits / T)`` (the smallest set of most likely tokens whose
    mass reaches ``top_p``) and its log-prob is read from the untruncated ``log_softmax(logits/T)``.
    """
    logits = logits.float()
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)
        tokens = logits.argmax(-1)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits / temperature, dim=-1)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_p.cumsum(-1) - sorted_p  # mass of strictly more likely tokens
        sorted_p = sorted_p.masked_fill(mass_before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


@contextmanager
def _eval_mode(model: torch.nn.Module):
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


class TorchEngine:
    """GenerationEngine over a transformers causal LM (see module docstring)."""

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        model_path: str | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        progress_min_rows: int = 256,
    ) -> None:
        if model is None:
            if model_path is None:
                raise ValueError("TorchEngine needs model (+ tokenizer) or model_path")
            model, tokenizer = _load(model_path)
        if tokenizer is None:
            raise ValueError("TorchEngine needs the tokenizer of the in-memory model")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos_token_id: cannot detect the end of a response")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress_min_rows = progress_min_rows
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.eos_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id

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
        """``result[i]`` = ``n`` completions of ``prompts[i]`` (chat-formatted strings)."""
        check_sampling_args(n, max_new_tokens, temperature, top_p)
        check_prompts(prompts)
        if not prompts:
            return []
        encoded = [self.tokenizer.encode(p, add_special_tokens=False) for p in prompts]
        rows = [ids for ids in encoded for _ in range(n)]
        done: list[Completion] = []
        bar = tqdm(total=len(rows), desc="torch generate", unit="seq",
                   disable=len(rows) < self.progress_min_rows)
        with _eval_mode(self.model):
            for chunk_no, start in enumerate(range(0, len(rows), self.batch_size)):
                gen = torch.Generator(device=self.device).manual_seed(seed * 100_003 + chunk_no)
                chunk = rows[start : start + self.batch_size]
                done.extend(self._decode(chunk, max_new_tokens, temperature, top_p, gen))
                bar.update(len(chunk))
        bar.close()
        return [done[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _decode(
        self,
        rows: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        gen: torch.Generator,
    ) -> list[Completion]:
        ids, attention = _left_pad(rows, self.pad_id)
        ids, attention = ids.to(self.device), attention.to(self.device)
        cache = DynamicCache(config=self.model.config)
        pos = positions(attention)
        out = self.model(input_ids=ids, attention_mask=attention, position_ids=pos,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits, next_pos = out.logits[:, -1], pos[:, -1] + 1  # (B, V), (B,)
        live = torch.arange(len(rows), device=self.device)  # original row of each batch row
        tokens: list[list[int]] = [[] for _ in rows]
        logprobs: list[list[float]] = [[] for _ in rows]
        for step in range(max_new_tokens):
            tok, lp = sample_next(logits, temperature, top_p, gen)
            for r, t, v in zip(live.tolist(), tok.tolist(), lp.tolist(), strict=True):
                tokens[r].append(t)
                logprobs[r].append(v)
            keep = tok != self.eos_id
            if step == max_new_tokens - 1 or not bool(keep.any()):
                break
            if not bool(keep.all()):  # drop finished rows from the batch and the cache
                idx = keep.nonzero().squeeze(1)
                cache.batch_select_indices(idx)
                attention, tok, next_pos, live = attention[idx], tok[idx], next_pos[idx], live[idx]
            attention = torch.cat([attention, attention.new_ones(attention.shape[0], 1)], dim=1)
            out = self.model(input_ids=tok[:, None], attention_mask=attention,
                             position_ids=next_pos[:, None], past_key_values=cache, use_cache=True)
            logits, next_pos = out.logits[:, -1], next_pos + 1
        return [self._completion(t, lp) for t, lp in zip(tokens, logprobs, strict=True)]

    def _completion(self, token_ids: list[int], logprobs: list[float]) -> Completion:
        stopped = bool(token_ids) and token_ids[-1] == self.eos_id
        body = token_ids[:-1] if stopped else token_ids
        text = self.tokenizer.decode(body, skip_special_tokens=False)
        return Completion(text, token_ids, logprobs, "stop" if stopped else "length")

    def update_weights(self, model: Any) -> None:
        """Sample from ``model`` from now on: no-op for the engine's own model, else a copy."""
        model = getattr(model, "module", model)  # a DeepSpeed/DDP wrapper holds the HF model
        if model is self.model:
            return
        self.model.load_state_dict(model.state_dict())

    def close(self) -> None:
        """Nothing to release (the model belongs to the caller)."""


def _load(model_path: str) -> tuple[Any, Any]:
    """(model, tokenizer) from an HF folder, through pipeline.model when it is there."""
    try:
        from pipeline.model import load_model
    except ImportError:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        return model, AutoTokenizer.from_pretrained(model_path)
    return load_model(model_path)

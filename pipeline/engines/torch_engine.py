"""The torch generation engine: a transformers causal LM, our own batched decode loop.

Works everywhere (CPU or GPU) and on an in-memory model (the live RL policy). Per call:
1. prompts are decoded in chunks of ``max(1, batch_size // n)`` prompts, i.e. about
   ``batch_size`` rows of ``n`` samples each;
2. a chunk's distinct prompts are left-padded and prefilled once (KV cache: transformers
   ``DynamicCache``), then the cache is repeated ``n`` times, one row per sample;
3. each step samples one token per row from ``softmax(logits / T)`` restricted to the top-p
   nucleus, and records ``log_softmax(logits / T)[token]`` (no top-p truncation, see
   ``pipeline.engines`` for why);
4. rows that emit EOS leave the batch (their KV rows are dropped), so late steps run on the
   rows still going; a row stops at EOS ("stop") or after ``max_new_tokens`` ("length").
The decode steps of qwen2_moe models (the embedded default) run through
:mod:`pipeline.engines.fast_decode` (same arithmetic, fewer ops, a static in-place KV cache);
other models, or ``fast_decode=False``, decode through the transformers forward.
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
from pipeline.engines.fast_decode import MoeDecoder, supported
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
    # inverse-CDF draw: one uniform per row (torch.multinomial draws one exponential per
    # vocabulary entry, the largest single cost of a tiny model's decode step)
    cdf = probs.cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[1] - 1)
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
        batch_size: int = 256,
        device: str | None = None,
        progress_min_rows: int = 256,
        fast_decode: bool = True,
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
        self.fast_decode = fast_decode
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
        per_chunk = max(1, self.batch_size // n)
        done: list[Completion] = []
        bar = tqdm(total=len(encoded) * n, desc="torch generate", unit="seq",
                   disable=len(encoded) * n < self.progress_min_rows)
        with _eval_mode(self.model):
            fast = MoeDecoder(self.model) if self.fast_decode and supported(self.model) else None
            for chunk_no, start in enumerate(range(0, len(encoded), per_chunk)):
                gen = torch.Generator(device=self.device).manual_seed(seed * 100_003 + chunk_no)
                chunk = encoded[start : start + per_chunk]
                done.extend(self._decode(chunk, n, max_new_tokens, temperature, top_p, gen, fast))
                bar.update(len(chunk) * n)
        bar.close()
        return [done[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _decode(
        self,
        prompts: Sequence[Sequence[int]],
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        gen: torch.Generator,
        fast: MoeDecoder | None = None,
    ) -> list[Completion]:
        """``n`` completions of each of ``prompts`` (token ids), prompt-major."""
        ids, attention = _left_pad(prompts, self.pad_id)
        ids, attention = ids.to(self.device), attention.to(self.device)
        cache = DynamicCache(config=self.model.config)
        pos = positions(attention)
        out = self.model(input_ids=ids, attention_mask=attention, position_ids=pos,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        # one row per sample: prompt i's rows are i*n .. i*n + n-1
        attention, pos = attention.repeat_interleave(n, 0), pos.repeat_interleave(n, 0)
        logits = out.logits[:, -1].repeat_interleave(n, 0)  # (B, V)
        next_pos = pos[:, -1] + 1  # (B,)
        if fast is not None:  # the static cache repeats the prefill rows as it copies them
            return self._decode_fast(fast, cache, n, attention, logits, next_pos,
                                     max_new_tokens, temperature, top_p, gen)
        if n > 1:
            cache.batch_repeat_interleave(n)
        rows = [p for p in prompts for _ in range(n)]
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

    def _decode_fast(self, fast: MoeDecoder, cache: DynamicCache, n: int,
                     attention: torch.Tensor, logits: torch.Tensor, next_pos: torch.Tensor,
                     max_new_tokens: int, temperature: float, top_p: float,
                     gen: torch.Generator) -> list[Completion]:
        """Decode steps through :class:`MoeDecoder` after the transformers prefill (``cache``
        holds one row per prompt; the other arguments one row per sample, ``n`` per prompt).

        Finished rows stay in the batch (their samples ignored) until a quarter of the batch
        has finished; then the batch and the static cache are compacted in one copy.
        """
        n_rows, width = attention.shape
        keys, values = fast.new_cache(cache, width + max_new_tokens, repeat=n)
        mask = torch.zeros(n_rows, width + max_new_tokens, device=self.device)
        mask[:, :width].masked_fill_(attention == 0, float("-inf"))  # additive padding mask
        rope = fast.rope_table(int(next_pos.max()) + max_new_tokens, self.device)
        live = torch.arange(n_rows, device=self.device)  # original row of each batch row
        going = torch.ones(n_rows, dtype=torch.bool, device=self.device)
        # every step's samples of every batch row, by original row; a row's own tokens are
        # the first ``length[row]`` (later columns hold a finished row's ignored samples)
        sampled = torch.zeros(n_rows, max_new_tokens, dtype=torch.long, device=self.device)
        sampled_lp = torch.zeros(n_rows, max_new_tokens, device=self.device)
        length = torch.full((n_rows,), max_new_tokens, dtype=torch.long, device=self.device)
        for step in range(max_new_tokens):
            tok, lp = sample_next(logits, temperature, top_p, gen)
            sampled[live, step] = tok
            sampled_lp[live, step] = lp.to(sampled_lp.dtype)
            ended = going & (tok == self.eos_id)
            length[live[ended]] = step + 1
            going = going & ~ended
            n_going = int(going.sum())
            if step == max_new_tokens - 1 or n_going == 0:
                break
            if len(going) - n_going >= max(1, len(going) // 4):
                idx = going.nonzero().squeeze(1)
                keys, values = [k[idx] for k in keys], [v[idx] for v in values]
                mask, tok, next_pos, live = mask[idx], tok[idx], next_pos[idx], live[idx]
                going = going[idx]
            logits = fast.step(tok, next_pos, width + step, keys, values, mask, rope)
            next_pos = next_pos + 1
        return [self._completion(t[:n], lp[:n])
                for t, lp, n in zip(sampled.tolist(), sampled_lp.tolist(), length.tolist(),
                                    strict=True)]

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

"""A byte-level BPE tokenizer trained by the pipeline on its own curated text.

``train_tokenizer(texts, vocab_size)`` returns a transformers ``PreTrainedTokenizerFast`` that

- is byte-level (every string round-trips exactly through encode/decode: newlines, code,
  ``\\boxed{}``, any unicode),
- splits digits one by one before BPE (``123`` -> ``1 2 3``), so numbers are spelled the same
  way everywhere: a tiny model learns arithmetic on digits, not on arbitrary merges,
- has our chat tokens from :mod:`pipeline.model.chat` as single ids: ``<|pad|>`` (pad),
  ``<|end|>`` (EOS), ``<|user|>``, ``<|assistant|>`` are *special* (dropped by
  ``skip_special_tokens=True``); ``<think>`` and ``</think>`` are added tokens that are *not*
  special, so decoded responses keep them whatever the caller's ``skip_special_tokens`` is
  (the verifiers need ``</think>``),
- carries the chat template :data:`pipeline.model.chat.CHAT_TEMPLATE`.

Example::

    tok = train_tokenizer(["<think>2+3=5</think> \\\\boxed{5}"], vocab_size=300)
    format_prompt(tok, "hi")   # "<|user|>\\nhi\\n<|assistant|>\\n"
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pipeline.model.chat import (
    ASSISTANT,
    CHAT_TEMPLATE,
    END,
    PAD,
    SPECIAL_TOKENS,
    THINK_CLOSE,
    THINK_OPEN,
    USER,
)

# Control tokens (ids 0..3, in this order) and reasoning markers (kept when decoding).
CONTROL_TOKENS = (PAD, END, USER, ASSISTANT)
MARKER_TOKENS = (THINK_OPEN, THINK_CLOSE)
BYTE_ALPHABET_SIZE = 256


def _without_specials(texts: Iterable[str]) -> Iterator[str]:
    """Training text with our special strings blanked: they get their own ids, not merges."""
    for text in texts:
        for s in SPECIAL_TOKENS:
            text = text.replace(s, " ")
        yield text


def _backend(texts: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    """Train the `tokenizers` BPE model; ids 0..3 are the control tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(MARKER_TOKENS),
        min_frequency=min_frequency,
        special_tokens=list(CONTROL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_without_specials(texts), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKER_TOKENS])
    return tok


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer of at most ``vocab_size`` ids on ``texts``.

    The result has ``len(tok) <= vocab_size`` (fewer when the text has too few distinct
    pairs to merge), pad = ``<|pad|>`` (id 0), eos = ``<|end|>`` (id 1), no BOS, and the
    project chat template. Raises ``ValueError`` if ``vocab_size`` cannot hold the 256 byte
    symbols plus our 6 special tokens.
    """
    floor = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
    if vocab_size < floor:
        raise ValueError(f"vocab_size={vocab_size}: must be >= {floor} (bytes + special tokens)")
    backend = _backend(texts, vocab_size, min_frequency)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=END,
        additional_special_tokens=[USER, ASSISTANT],
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        padding_side="left",  # generation batches prompts: left padding keeps them flush
    )
    return tok

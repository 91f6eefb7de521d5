"""Sequence packing without cross-contamination between packed samples.

A *sample* is one tokenized chat (prompt + response) with a mask of the response tokens. A
*row* concatenates several samples into one sequence of at most ``row_tokens`` tokens:

- ``position_ids`` restart at 0 at every sample start. With ``attention_mask=None``,
  transformers (``masking_utils.find_packed_sequence_indices``) turns those restarts into a
  block-diagonal causal mask, so a token attends only to earlier tokens of its own sample;
  RoPE sees the same positions as in an unpacked run.
- ``labels[t]`` is the next token of the *same* sample when that next token is a response
  token, else ``-100``: the loss is on response tokens only and never predicts across a sample
  boundary. Labels are already shifted: loss = CE(logits[t], labels[t]) with no further shift.

A micro-batch stacks ``micro_batch_rows`` rows (:func:`stack_rows`); only the gap between a row
and the longest row of its micro-batch is padding (a few %: first-fit decreasing fills rows
well). Short rows (e.g. 256) keep attention cheap: its cost grows with the row length, and the
block-diagonal mask is dense on CPU (sdpa math kernel). Packing is first-fit decreasing over a seeded shuffle (deterministic per seed).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sample:
    input_ids: tuple[int, ...]
    response_mask: tuple[bool, ...]  # True where the token belongs to the response

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.response_mask):
            raise ValueError("Sample: input_ids and response_mask differ in length")

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class PackedRow:
    input_ids: torch.Tensor  # (1, T) long
    position_ids: torch.Tensor  # (1, T) long, restarting at each sample
    labels: torch.Tensor  # (1, T) long, next response token of the same sample or -100
    n_samples: int
    n_tokens: int  # real (non-pad) tokens

    @property
    def n_loss_tokens(self) -> int:
        return int((self.labels != -100).sum())


def sample_labels(sample: Sample) -> list[int]:
    """Shifted labels of one sample: ``ids[t+1]`` if token t+1 is a response token."""
    ids, mask = sample.input_ids, sample.response_mask
    return [ids[t + 1] if mask[t + 1] else -100 for t in range(len(ids) - 1)] + [-100]


def pack_row(samples: list[Sample]) -> PackedRow:
    """Concatenate ``samples`` into one row with restarting positions and per-sample labels."""
    ids: list[int] = []
    pos: list[int] = []
    labels: list[int] = []
    for s in samples:
        ids += s.input_ids
        pos += range(len(s))
        labels += sample_labels(s)
    return PackedRow(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([pos], dtype=torch.long),
        labels=torch.tensor([labels], dtype=torch.long),
        n_samples=len(samples),
        n_tokens=len(ids),
    )


def plan_rows(lengths: list[int], row_tokens: int, seed: int) -> list[list[int]]:
    """Group sample indices into rows of total length <= ``row_tokens`` (first-fit decreasing).

    Samples are shuffled with ``seed`` first (ties in length keep a seeded order), and the rows
    are shuffled again so that long and short rows interleave. A sample longer than
    ``row_tokens`` is an error (filter them before packing).
    """
    too_long = [i for i, n in enumerate(lengths) if n > row_tokens]
    if too_long:
        raise ValueError(
            f"sample {too_long[0]} has {lengths[too_long[0]]} tokens > row_tokens={row_tokens}"
        )
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    order.sort(key=lambda i: -lengths[i])  # stable: seeded order among equal lengths
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(row_tokens - lengths[i])
    rng.shuffle(rows)
    return rows


def pack(samples: list[Sample], row_tokens: int, seed: int) -> list[PackedRow]:
    """All samples packed into rows (one epoch's worth, in a seeded order)."""
    plan = plan_rows([len(s) for s in samples], row_tokens, seed)
    return [pack_row([samples[i] for i in row]) for row in plan]


def padded_tokens(lengths: list[int], batch_size: int) -> int:
    """Tokens a padded batching pays (each batch padded to its longest), for comparison."""
    total = 0
    for b in range(0, len(lengths), batch_size):
        chunk = lengths[b : b + batch_size]
        total += max(chunk) * len(chunk)
    return total


def stack_rows(rows: list[PackedRow], pad_id: int) -> PackedRow:
    """Stack rows into one (B, T) micro-batch, padding short rows to the longest.

    The padding forms its own segment (positions restart at 0, labels -100), so it neither
    attends to nor is attended by real tokens, and adds nothing to the loss.
    """
    if len(rows) == 1:
        return rows[0]
    width = max(r.n_tokens for r in rows)
    ids, pos, labels = [], [], []
    for r in rows:
        pad = width - r.n_tokens
        ids.append(torch.cat([r.input_ids[0], torch.full((pad,), pad_id, dtype=torch.long)]))
        pos.append(torch.cat([r.position_ids[0], torch.arange(pad, dtype=torch.long)]))
        labels.append(torch.cat([r.labels[0], torch.full((pad,), -100, dtype=torch.long)]))
    return PackedRow(torch.stack(ids), torch.stack(pos), torch.stack(labels),
                     sum(r.n_samples for r in rows), sum(r.n_tokens for r in rows))

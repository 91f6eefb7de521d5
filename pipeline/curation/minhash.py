"""MinHash signatures and LSH banding over whole arrays, compatible with datasketch.

The per-document Python loop of ``datasketch.MinHash.update`` is the bottleneck of near-dup
dedup; here every step works on whole arrays (numpy, polars, one compiled loop):

1. ``word_hashes``: the normalised texts are split into words and hashed by polars (Rust).
2. ``shingle_hashes``: word k-grams are combined with a polynomial rolling hash (uint64 wrap,
   computed for every window of the flat word array by shifted slices) and mixed to 32 bits. A
   document shorter than k words is one shingle (optional).
3. ``signatures``: datasketch's default ``affine32`` scheme, ``min_s (a * fmix32(h_s) + b)
   mod 2^32`` per permutation (a compiled loop: ``kernels``), with the permutations ``(a, b)``
   that datasketch itself draws for ``(num_perm, seed)``: our signature of a shingle set
   equals ``datasketch.MinHash`` fed the same 32-bit shingle hashes (see
   tests/test_curation_minhash.py).
4. ``candidate_pairs``: LSH with ``bands`` x ``rows``; per band the row block is hashed to one
   uint64 key, keys are sorted, and every document in a run of equal keys is paired with the
   run's first (smallest-index) document.
5. ``verify_pairs``: keep pairs whose estimated Jaccard (share of equal signature slots) is at
   least ``threshold`` and, optionally, whose number/operator keys agree.
6. ``components``: connected components of the verified pairs (scipy); the representative of a
   component is its smallest index (callers sort documents by id first).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import polars as pl
from datasketch import MinHash
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pipeline.curation.kernels import minhash_signatures

MAX32 = np.uint32(0xFFFFFFFF)
_ROLL = np.uint64(0x100000001B3)  # FNV-64 prime: rolling multiplier for word k-grams
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_WORD_SEED = 42


def word_hashes(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Hash the words of normalised ``texts`` (single spaces, stripped: see ``normalize``).

    Returns ``(hashes, lengths)``: uint64 word hashes of all documents concatenated, and the
    number of words per document (int64, 0 for an empty text).
    """
    texts = texts.fill_null("")
    words = texts.str.split(" ")
    lengths = words.list.len().cast(pl.Int64).to_numpy().copy()
    lengths[(texts == "").to_numpy()] = 0  # "".split(" ") == [""]
    flat = words.explode()
    flat = flat.filter(flat != "")
    return flat.hash(seed=_WORD_SEED).to_numpy().astype(np.uint64), lengths


def _mix64_to32(h: np.ndarray) -> np.ndarray:
    """Murmur-style 64-bit finaliser, then the high 32 bits (uint32)."""
    h = h ^ (h >> np.uint64(33))  # a new array: the rest works in place on it
    h *= _MIX1
    h ^= h >> np.uint64(33)
    h *= _MIX2
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(32)).astype(np.uint32)


def shingle_hashes(
    hashes: np.ndarray, lengths: np.ndarray, k: int, whole_short: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of the word k-grams of each document.

    ``hashes``/``lengths`` come from :func:`word_hashes`. A document with fewer than ``k`` words
    gives one shingle of all its words when ``whole_short`` (near-dup dedup) and none otherwise
    (n-gram decontamination). Returns ``(shingles, counts)``: uint32 shingle hashes, documents
    concatenated in order, and the number of shingles per document.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    short = (lengths > 0) & (lengths < k) if whole_short else np.zeros_like(lengths, bool)
    counts = np.where(lengths >= k, lengths - k + 1, 0) + short.astype(np.int64)
    n_win = len(hashes) - k + 1
    if n_win > 0:  # every k-word window of the flat array by shifted slices (no gathers)
        win = hashes[:n_win].astype(np.uint64)  # a copy: updated in place (wraps mod 2^64)
        for j in range(1, k):
            win *= _ROLL
            win += hashes[j : j + n_win]
        # keep the windows that end inside the document they start in: drop those starting
        # at the last k-1 positions of each document (all of a document shorter than k)
        ok = np.ones(n_win, dtype=bool)
        ends = starts + lengths
        for j in range(1, k):
            pos = ends - j
            ok[pos[(pos >= starts) & (pos < n_win)]] = False
        long_sh = win[ok]
    else:
        long_sh = np.zeros(0, dtype=np.uint64)
    if not short.any():
        return _mix64_to32(long_sh), counts
    out = np.zeros(int(counts.sum()), dtype=np.uint64)
    offsets = np.cumsum(counts) - counts  # first shingle of each document in ``out``
    sd = np.flatnonzero(short)  # documents shorter than k: one shingle of all their words
    slot = np.zeros(len(out), dtype=bool)
    slot[offsets[sd]] = True
    out[~slot] = long_sh
    h = np.zeros(len(sd), dtype=np.uint64)
    for j in range(k - 1):
        m = lengths[sd] > j
        h[m] = h[m] * _ROLL + hashes[starts[sd[m]] + j]
    out[offsets[sd]] = h
    return _mix64_to32(out), counts


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The affine32 permutation parameters ``(a, b)`` datasketch draws for (num_perm, seed)."""
    a, b = MinHash(num_perm=num_perm, seed=seed).permutations
    return a.astype(np.uint32), b.astype(np.uint32)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch pre-mixes every input hash with it)."""
    h = h.astype(np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def signatures(shingles: np.ndarray, counts: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures, shape (D, num_perm) uint32; a document with no shingle is all MAX32.

    One compiled pass (``kernels.minhash_signatures``) keeps each document's running minima
    in a row of 32-bit registers while its shingles stream by.
    """
    a, b = permutations(num_perm, seed)
    return minhash_signatures(fmix32(shingles), counts, a, b)


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 LSH key per document and band, shape (D, bands): band ``b``'s row block
    ``sig[:, b*rows:(b+1)*rows]`` folded into one hash. Documents with equal keys in a band
    share that band's bucket."""
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {sig.shape[1]}")
    keys = np.empty((sig.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        block = sig[:, band * rows : (band + 1) * rows].astype(np.uint64)
        key = np.zeros(sig.shape[0], dtype=np.uint64)
        for r in range(rows):
            key = (key ^ block[:, r]) * _MIX1
        keys[:, band] = key
    return keys


def candidate_pairs(
    sig: np.ndarray, bands: int, rows: int, valid: np.ndarray | None = None
) -> np.ndarray:
    """LSH candidate pairs ``(i, j)``, i < j, unique, shape (M, 2) int64.

    ``valid`` masks documents that take part (documents without shingles would all collide).
    """
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} exceeds num_perm = {sig.shape[1]}")
    idx = np.arange(sig.shape[0]) if valid is None else np.flatnonzero(valid)
    if len(idx) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    out = []
    keys = band_keys(sig[idx], bands, rows)
    for band in range(bands):
        key = keys[:, band]
        order = np.argsort(key, kind="stable")  # equal keys keep ascending document order
        ks = key[order]
        new_run = np.concatenate(([True], ks[1:] != ks[:-1]))
        run_first = np.maximum.accumulate(np.where(new_run, np.arange(len(ks)), 0))
        member = ~new_run
        out.append(np.stack([idx[order[run_first[member]]], idx[order[member]]], axis=1))
    pairs = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
    if len(pairs) == 0:
        return pairs.astype(np.int64)
    n = np.int64(sig.shape[0])
    code = np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1])
    return np.stack([code // n, code % n], axis=1)


def estimated_jaccard(sig: np.ndarray, pairs: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """Share of equal signature slots for each pair (the MinHash Jaccard estimate)."""
    sims = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        sims[s : s + chunk] = (sig[p[:, 0]] == sig[p[:, 1]]).mean(axis=1)
    return sims


def verify_pairs(
    sig: np.ndarray, pairs: np.ndarray, threshold: float, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Keep candidate pairs with estimated Jaccard >= threshold (and equal ``keys`` if given)."""
    sims = estimated_jaccard(sig, pairs)
    ok = sims >= threshold
    if keys is not None and len(pairs):
        ok &= keys[pairs[:, 0]] == keys[pairs[:, 1]]
    return pairs[ok], sims[ok]


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """For each of ``n`` documents, the smallest index in its connected component."""
    if len(pairs) == 0:
        return np.arange(n)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    rep = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(rep, labels, np.arange(n))
    return rep[labels]

"""Vectorised MinHash/LSH vs datasketch and vs exact set arithmetic."""

from __future__ import annotations

import numpy as np
import polars as pl
from datasketch import MinHash

from pipeline.curation import minhash as mh


def _docs(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(f"w{x}" for x in rng.integers(0, 300, rng.integers(1, 40))) for _ in range(n)]


def test_signature_equals_datasketch_minhash_on_the_same_shingles():
    rng = np.random.default_rng(0)
    texts = _docs(rng, 30) + [""]
    words, lengths = mh.word_hashes(pl.Series(texts))
    shingles, counts = mh.shingle_hashes(words, lengths, 3)
    sig = mh.signatures(shingles, counts, num_perm=64, seed=7)
    off = np.concatenate(([0], np.cumsum(counts)))
    for d in range(len(texts)):
        ref = MinHash(num_perm=64, seed=7, hashfunc=lambda h: h)  # datasketch's own affine32 path
        for h in shingles[off[d] : off[d + 1]]:
            ref.update(int(h))
        assert np.array_equal(ref.hashvalues, sig[d]), d
    assert (sig[-1] == mh.MAX32).all()  # an empty document has no shingle


def test_shingle_counts_and_equal_kgrams_hash_equal():
    words, lengths = mh.word_hashes(pl.Series(["a b c d e", "x a b c", "a b", ""]))
    assert lengths.tolist() == [5, 4, 2, 0]
    sh, counts = mh.shingle_hashes(words, lengths, 3)
    assert counts.tolist() == [3, 2, 1, 0]  # n-k+1; a short doc is one shingle; empty none
    assert sh[0] == sh[4]  # "a b c" in doc 0 and doc 1
    assert len(set(sh[:3].tolist())) == 3
    _, counts = mh.shingle_hashes(words, lengths, 3, whole_short=False)
    assert counts.tolist() == [3, 2, 0, 0]


def test_jaccard_estimate_is_close_to_the_true_jaccard():
    base = [f"w{i}" for i in range(200)]
    texts, truth = [], []
    for keep in (200, 160, 120, 80):  # doc B = first `keep` words of A + new words
        b = base[:keep] + [f"z{keep}_{i}" for i in range(200 - keep)]
        texts += [" ".join(base), " ".join(b)]
    words, lengths = mh.word_hashes(pl.Series(texts))
    sh, counts = mh.shingle_hashes(words, lengths, 2)
    off = np.concatenate(([0], np.cumsum(counts)))
    sets = [set(sh[off[i] : off[i + 1]].tolist()) for i in range(len(texts))]
    sig = mh.signatures(sh, counts, num_perm=256, seed=3)
    pairs = np.array([[i, i + 1] for i in range(0, len(texts), 2)])
    est = mh.estimated_jaccard(sig, pairs)
    for (i, j), e in zip(pairs, est, strict=True):
        true = len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        truth.append(true)
        assert abs(e - true) <= 4 * np.sqrt(true * (1 - true) / 256) + 1e-9, (true, e)
    assert truth[0] == 1.0 and truth[-1] < 0.5


def test_lsh_pairs_verification_and_components_on_a_hand_made_case():
    rng = np.random.default_rng(2)
    a = " ".join(f"w{x}" for x in rng.integers(0, 10_000, 60))
    a2 = a.replace(a.split()[30], "changed", 1)  # one word: Jaccard of 3-grams ~ 0.9
    b = " ".join(f"v{x}" for x in rng.integers(0, 10_000, 60))
    texts = [a, b, a2, "", a]
    words, lengths = mh.word_hashes(pl.Series(texts))
    sh, counts = mh.shingle_hashes(words, lengths, 3)
    sig = mh.signatures(sh, counts, 128, 1)
    pairs = mh.candidate_pairs(sig, 16, 8, valid=counts > 0)
    pairs, sims = mh.verify_pairs(sig, pairs, 0.8)
    assert pairs.tolist() == [[0, 2], [0, 4]]
    assert sims[1] == 1.0 and 0.8 <= sims[0] < 1.0
    assert mh.components(5, pairs).tolist() == [0, 1, 0, 3, 0]
    # numbers keys veto a pair: same text shape, different key
    kept, _ = mh.verify_pairs(sig, np.array([[0, 4]]), 0.8, keys=np.array([1, 0, 0, 0, 2]))
    assert len(kept) == 0


def test_components_smallest_index_represents_each_cluster():
    pairs = np.array([[1, 3], [3, 5], [0, 2]])
    assert mh.components(6, pairs).tolist() == [0, 1, 0, 1, 4, 1]

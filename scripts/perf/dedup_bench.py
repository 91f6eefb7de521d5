"""Near-dup dedup benchmark: our vectorised MinHash/LSH vs datatrove's MinHash dedup.

Builds a synthetic corpus (default 200k documents) with injected near-duplicates whose ground
truth is known: random 80-150-word documents over a 20k-word vocabulary; a subset of originals
gets 1-3 edited copies (word swaps, deletions, insertions; about one edit per 60 words). Both
systems dedup the same texts in the same process, single-threaded (POLARS_MAX_THREADS=1,
OMP_NUM_THREADS=1; datatrove's four steps are called directly, without its executor or
multiprocessing, with a str.split word tokenizer), and are scored against the ground truth:

- a system drops some documents; in a true cluster of size k, up to k-1 drops are correct;
- recall = correct drops / sum(k-1); precision = correct drops / all drops
  (a drop in a singleton cluster or a k-th drop in a cluster is a false positive).

Run::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/perf/dedup_bench.py            # 200k docs
    .venv/bin/python scripts/perf/dedup_bench.py --docs 20000                  # quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from pipeline.curation import minhash as mh  # noqa: E402
from pipeline.curation.normalize import normalize_series  # noqa: E402


def make_corpus(n_docs: int, dup_share: float, seed: int) -> tuple[list[str], np.ndarray]:
    """Texts and the ground-truth cluster id of each (the index of its original)."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}{chr(97 + i % 26)}" for i in range(20_000)])
    n_dups = int(n_docs * dup_share)
    n_orig = n_docs - n_dups
    originals = [rng.integers(0, len(vocab), rng.integers(80, 151)) for _ in range(n_orig)]
    parents = rng.integers(0, max(1, n_dups // 2), n_dups)  # ~2 copies per duplicated original
    docs, cluster = list(originals), list(range(n_orig))
    for p in parents:
        words = list(originals[p])
        for _ in range(max(1, round(len(words) / 60))):
            op, i = rng.integers(0, 3), int(rng.integers(0, len(words) - 1))
            if op == 0:
                words[i], words[i + 1] = words[i + 1], words[i]
            elif op == 1:
                del words[i]
            else:
                words.insert(i, int(rng.integers(0, len(vocab))))
        docs.append(np.array(words))
        cluster.append(int(p))
    order = rng.permutation(n_docs)
    texts = [" ".join(vocab[docs[i]]) for i in order]
    return texts, np.asarray(cluster)[order]


def score(dropped: np.ndarray, cluster: np.ndarray) -> tuple[float, float, int]:
    """(recall, precision, drops) of a boolean drop mask against ground-truth clusters."""
    sizes = np.bincount(cluster)
    drops = np.bincount(cluster[dropped], minlength=len(sizes))
    correct = np.minimum(drops, np.maximum(sizes - 1, 0)).sum()
    should = np.maximum(sizes - 1, 0).sum()
    n_drop = int(dropped.sum())
    return correct / max(should, 1), correct / max(n_drop, 1), n_drop


def ours(texts: list[str], shingle: int, bands: int, rows: int, threshold: float) -> np.ndarray:
    """Our dedup: polars normalise + vectorised MinHash + LSH + verification + components."""
    norm = normalize_series(pl.Series(texts, dtype=pl.String))
    words, lengths = mh.word_hashes(norm)
    shingles, counts = mh.shingle_hashes(words, lengths, shingle)
    sig = mh.signatures(shingles, counts, bands * rows, seed=1)
    pairs = mh.candidate_pairs(sig, bands, rows, valid=counts > 0)
    pairs, _ = mh.verify_pairs(sig, pairs, threshold)
    rep = mh.components(len(texts), pairs)
    return rep != np.arange(len(texts))


def datatrove(texts: list[str], shingle: int) -> np.ndarray:
    """datatrove 0.10 MinHash dedup (default config: 14 buckets x 8 hashes), steps 1-4."""
    import xxhash
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        """str.split: the corpus is space-separated words (spaCy, datatrove's default for
        English, is not installed; str.split is also faster, so this favours datatrove)."""

        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    cfg = MinhashConfig(n_grams=shingle)
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory() as tmp:
        sig_step = MinhashDedupSignature(f"{tmp}/sigs", config=cfg, language=SplitTokenizer())
        # xxhash 4.x refuses str; datatrove 0.10 passes str: encode, keep its xxh64 hashing
        sig_step._hash_func = lambda s: xxhash.xxh64_intdigest(s.encode())
        sig_step.run(iter(docs), 0, 1)
        for b in range(cfg.num_buckets):
            MinhashDedupBuckets(f"{tmp}/sigs", f"{tmp}/buckets", config=cfg).run(
                None, b, cfg.num_buckets
            )
        MinhashDedupCluster(f"{tmp}/buckets", f"{tmp}/remove", config=cfg).run(None, 0, 1)
        kept = {int(d.id) for d in MinhashDedupFilter(f"{tmp}/remove").run(iter(docs), 0, 1)}
    return np.array([i not in kept for i in range(len(texts))])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--dup-share", type=float, default=0.2)
    ap.add_argument("--shingle", type=int, default=5)
    ap.add_argument("--bands", type=int, default=20)
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    texts, cluster = make_corpus(args.docs, args.dup_share, args.seed)
    print(
        f"corpus: {len(texts)} docs, {len(texts) - len(np.unique(cluster))} injected near-dups "
        f"({time.perf_counter() - t0:.1f}s to build)",
        flush=True,
    )
    results = {}
    for name, fn in (
        ("ours", lambda: ours(texts, args.shingle, args.bands, args.rows, args.threshold)),
        ("datatrove", lambda: datatrove(texts, args.shingle)),
    ):
        t = time.perf_counter()
        dropped = fn()
        secs = time.perf_counter() - t
        rec, prec, n_drop = score(dropped, cluster)
        results[name] = len(texts) / secs
        print(
            f"{name:10s} {secs:7.1f}s {len(texts) / secs:9.0f} docs/s  recall {rec:.4f}  "
            f"precision {prec:.4f}  dropped {n_drop}",
            flush=True,
        )
    print(f"throughput ratio ours/datatrove: {results['ours'] / results['datatrove']:.1f}x")


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark metrics over k sampled responses per problem.

- avg@k: mean over problems of (correct samples / samples) -- the paper's headline metric
  (Ring-lite reports avg@k at temperature 1.0, top-p 0.95).
- pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained
  on Code", Eq. 1): with n samples of which c are correct,

      pass@k = 1 - C(n - c, k) / C(n, k)        (1 when n - c < k)

  averaged over problems. Computed as the product 1 - prod_{i=n-c+1}^{n} (1 - k / i), which
  equals the binomial ratio and avoids huge integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` correct."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n} c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k} n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def avg_at_k(correct: Sequence[bool]) -> float:
    """Mean accuracy of one problem's samples."""
    if not correct:
        raise ValueError("avg_at_k: no samples")
    return sum(bool(x) for x in correct) / len(correct)


def summarize(per_problem: Iterable[Sequence[bool]], ks: Sequence[int]) -> dict[str, float]:
    """Counts, ``avg_at_k`` (k = samples per problem) and ``pass_at_<k>`` for each k in ``ks``.

    A k larger than some problem's sample count is skipped (reported nowhere), not clipped.
    """
    problems = [list(c) for c in per_problem]
    out: dict[str, float] = {"problems": len(problems), "samples": sum(len(c) for c in problems)}
    if not problems:
        return out
    out["avg_at_k"] = float(np.mean([avg_at_k(c) for c in problems]))
    n_min = min(len(c) for c in problems)
    for k in ks:
        if k <= n_min:
            out[f"pass_at_{k}"] = float(np.mean([pass_at_k(len(c), sum(c), k) for c in problems]))
    return out


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) of per-problem scores; SE 0 for fewer than 2."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0
    return float(x.mean()), se


def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 10_000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean of after - before, CI low, CI high): a percentile bootstrap over problems.

    ``before[i]`` and ``after[i]`` are the same problem's scores (e.g. avg@k) under two models;
    resampling whole problems keeps the pairing, so the interval reflects how much the
    difference would move on another draw of problems from the same generator.
    """
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap: need two equal-length 1-D arrays, got {a.shape} "
                         f"and {b.shape}")
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    d = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for s in range(0, n_boot, 1000):  # chunks keep the index matrix small
        m = min(1000, n_boot - s)
        means[s:s + m] = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(lo), float(hi)

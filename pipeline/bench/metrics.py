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

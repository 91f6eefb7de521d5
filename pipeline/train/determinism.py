"""Bit-reproducible training on CPU: same seeds, same thread count -> same weights.

Without this, two runs of an RL stage with the same seeds drift apart (measured: weights
differing by 1e-7 after 3 steps, 2.7e-3 after 20, and 2 benchmark points). The cause is the
backward of advanced indexing, ``x[index]`` with repeated indices: on CPU it is an
``index_put_(accumulate=True)`` that adds rows from several threads in whatever order they
arrive. The RL forward repeats each prompt's KV cache to its K rows that way, and the
transformers MoE layers gather each token's rows for its experts the same way. With
``torch.use_deterministic_algorithms`` torch switches those ops to a sorted, fixed-order sum
(20 repeats of such a backward at 2 threads gave 20 different gradients without it and one
with it; tests/test_determinism.py checks the latter). Matrix products (MKL) were checked to be
reproducible at a fixed thread count and are left alone.

On CUDA the same switch needs a cuBLAS workspace setting, set here before CUDA starts;
``warn_only`` keeps ops that have no deterministic kernel running (with a warning) instead of
failing a long job.
"""

from __future__ import annotations

import os

import torch


def set_deterministic(enabled: bool) -> None:
    """Turn torch's deterministic algorithms on (or off) for this process."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)

"""Benchmarks: metrics (avg@k, unbiased pass@k), loaders for benchmark files, reports, registry."""

"""SFT checkpoint selection by policy entropy, and model-aware difficulty filtering.

- :mod:`pipeline.selection.entropy`: mean full-vocabulary token entropy over generated tokens.
- :mod:`pipeline.selection.rule`: the pure entropy-band rule that picks one checkpoint.
- :mod:`pipeline.selection.difficulty`: the pass-rate filter of the RL pool.
"""

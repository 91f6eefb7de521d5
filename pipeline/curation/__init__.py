"""Data curation for the curate stage: ingest, validate, normalise, dedup (exact + MinHash/LSH),
decontaminate against benchmark sets, split. See docs/curate.md."""

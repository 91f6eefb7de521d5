"""Text normalisation for dedup and decontamination (polars expressions, vectorised).

Lower-case, Unicode NFKC, operators spaced out, other punctuation dropped, whitespace collapsed.
Digits, decimal points inside numbers and the operators ``+ - * / = ^ < > ( ) %`` are kept, so
"What is 12 + 7?" and "What is 13 + 7?" stay different texts (datatrove folds digits to 0; that
would merge every arithmetic problem of one template).

``numbers_key`` is the sequence of numbers and operators of a normalised text: near-duplicate
checks require it to match, so two problems that differ only in a number are never merged.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.curation.kernels import normalize_ascii

OPERATORS = r"+\-*/=^<>()%"
_DOT = "\u2024"  # placeholder for a decimal point while sentence dots are removed


def normalize_expr(col: str | pl.Expr, nfkc: bool = True) -> pl.Expr:
    """Polars expression: the normalised form of a string column (see :func:`normalize_series`
    for the faster form that applies NFKC to non-ASCII rows only)."""
    e = pl.col(col) if isinstance(col, str) else col
    if nfkc:
        e = e.str.normalize("NFKC")
    return (
        e.str.to_lowercase()
        .str.replace_all(r"(\d)\.(\d)", f"${{1}}{_DOT}${{2}}")
        .str.replace_all(f"([{OPERATORS}])", " ${1} ")
        .str.replace_all(f"[^\\p{{L}}\\p{{N}}{OPERATORS}{_DOT}]", " ")  # whitespace too
        .str.replace_all(_DOT, ".", literal=True)
        .str.replace_all(" {2,}", " ")
        .str.strip_chars(" ")
    )


def normalize_series(texts: pl.Series) -> pl.Series:
    """Normalised texts: pure-ASCII rows by one compiled pass (``kernels.normalize_ascii``, equal
    to :func:`normalize_expr` there), the others by NFKC and the expression."""
    texts = texts.fill_null("")
    out = normalize_ascii(texts)
    wide = texts.str.contains(r"[^\x00-\x7f]").to_numpy()
    if wide.any():
        idx = np.flatnonzero(wide)
        rows = pl.DataFrame({"t": texts.gather(idx)}).select(normalize_expr("t"))["t"]
        out = out.scatter(idx, rows)
    return out


def numbers_key_expr(col: str | pl.Expr) -> pl.Expr:
    """Polars expression: the numbers and operators of a *normalised* column, joined."""
    e = pl.col(col) if isinstance(col, str) else col
    return e.str.extract_all(f"\\d+(?:\\.\\d+)?|[{OPERATORS}]").list.join(" ")


def normalize(texts: list[str]) -> list[str]:
    """Normalise a list of strings (convenience for tests and small inputs)."""
    return normalize_series(pl.Series(texts, dtype=pl.String)).to_list()

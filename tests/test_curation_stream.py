"""Streaming near-dup dedup (signatures and buckets on disk) against the in-memory path.

The in-memory path (numpy argsort LSH, ``dedup.near_clusters``) is the independent method: the
streaming path groups buckets with polars out of core and reads signatures back from disk, and
must give the same clusters on the same documents.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "curate"))
from planted import write_planted  # noqa: E402

from pipeline.curation import minhash as mh  # noqa: E402
from pipeline.curation import stream  # noqa: E402
from pipeline.curation.config import CurateParams, DedupParams  # noqa: E402
from pipeline.curation.core import curate  # noqa: E402
from pipeline.curation.dedup import near_clusters  # noqa: E402
from pipeline.curation.ingest import file_candidates  # noqa: E402
from pipeline.curation.normalize import normalize_series, numbers_key_expr  # noqa: E402
from pipeline.params import ParamsError, build  # noqa: E402


def _word(x: int) -> str:
    """A word without digits (digits inside words are numbers to the numbers key)."""
    return "w" + chr(97 + x % 26) + chr(97 + x // 26 % 26)


def _corpus(n: int = 1500, seed: int = 0) -> list[str]:
    """Random word documents with a number, edited copies (one word changed), copies whose
    number changed (must stay apart), short (< 3 words) and empty documents."""
    rng = np.random.default_rng(seed)
    docs = [" ".join(_word(x) for x in rng.integers(0, 400, rng.integers(30, 60)))
            + f" costs {rng.integers(1, 9)} dollars." for _ in range(n)]
    out = list(docs)
    for i in rng.integers(0, n, n // 3):
        words = docs[i].split()
        words[int(rng.integers(0, len(words) - 3))] = "CHANGED"
        out.append(" ".join(words))
    for i in rng.integers(0, n, n // 10):
        out.append(docs[i].replace(" dollars", "0 dollars"))  # another number
    out += ["", "a b", "A B!", "x", "??"]
    return [out[i] for i in rng.permutation(len(out))]


def _in_memory(norm: pl.Series, numkey: pl.Series, p: DedupParams):
    words, lengths = mh.word_hashes(norm)
    sh, counts = mh.shingle_hashes(words, lengths, p.shingle_size)
    sig = mh.signatures(sh, counts, p.num_perm, p.seed)
    rep, _ = near_clusters(sig, counts, numkey.hash(seed=7).to_numpy() if p.same_numbers
                           else None, p)
    return rep, sig


def _norm(texts: list[str]) -> tuple[pl.Series, pl.Series]:
    norm = normalize_series(pl.Series(texts, dtype=pl.String))
    return norm, pl.DataFrame({"n": norm}).select(numbers_key_expr("n"))["n"]


@pytest.mark.parametrize(
    ("chunk", "parts", "p"),
    [(10_000, 1, DedupParams()), (333, 7, DedupParams()),
     (500, 4, DedupParams(bands=32, rows=4, threshold=0.6)),
     (700, 3, DedupParams(same_numbers=False))],
)
def test_stream_gives_the_in_memory_clusters(tmp_path, chunk, parts, p):
    norm, numkey = _norm(_corpus())
    rep_mem, sig = _in_memory(norm, numkey, p)
    rep, sims, report = stream.near_clusters_stream(
        stream.chunks_of_frame(norm, numkey, chunk), p, tmp_path / "w", parts)
    assert np.array_equal(rep, rep_mem)
    gone = np.flatnonzero(rep != np.arange(len(rep)))
    assert len(gone) > 300  # the planted copies (and the exact ones) are found
    np.testing.assert_array_equal(sims[gone], (sig[gone] == sig[rep[gone]]).mean(axis=1))
    assert report.docs == len(norm) and report.dropped == len(gone)
    assert report.chunks == -(-len(norm) // chunk)  # ceil: really chunk by chunk
    assert len(list((tmp_path / "w" / "sig").glob("*.npy"))) == report.chunks
    assert report.peak_rss_mb > 0


def test_hand_made_case_and_number_guard(tmp_path):
    base = " ".join(_word(i) for i in range(30))
    texts = [base + " pay 5", base.replace("wha", "qqq") + " pay 5", base + " pay 6", "z y x w v"]
    norm, numkey = _norm(texts)
    rep, sims, _ = stream.near_clusters_stream(
        stream.chunks_of_frame(norm, numkey, 2), DedupParams(), tmp_path / "w", 3)
    # doc 1 is doc 0 with one word changed (3-gram Jaccard 27/33 = 0.82); doc 2 differs in a
    # number, so it stays even though its words are those of doc 0
    assert rep.tolist() == [0, 0, 2, 3]
    assert 0.7 < sims[1] < 1.0 and sims[0] == 1.0


def test_local_workers_give_the_same_clusters(tmp_path):
    norm, numkey = _norm(_corpus(600, seed=3))
    p = DedupParams()
    rep_mem, _ = _in_memory(norm, numkey, p)
    rep, _, _ = stream.near_clusters_stream(
        stream.chunks_of_frame(norm, numkey, 250), p, tmp_path / "w", 4, workers=2)
    assert np.array_equal(rep, rep_mem)


def test_dedup_parquet_reads_files_in_chunks(tmp_path):
    texts = _corpus(800, seed=5)
    half = len(texts) // 2
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    pl.DataFrame({"text": texts[:half], "x": 1}).write_parquet(files[0], row_group_size=100)
    pl.DataFrame({"text": texts[half:]}).write_parquet(files[1])
    out = tmp_path / "out" / "dropped.parquet"
    report = stream.dedup_parquet(files, "text", out, tmp_path / "w", DedupParams(), 128, 5)
    norm, numkey = _norm(texts)
    rep_mem, _ = _in_memory(norm, numkey, DedupParams())
    gone = np.flatnonzero(rep_mem != np.arange(len(rep_mem)))
    got = pl.read_parquet(out)
    assert got["doc"].to_list() == gone.tolist() and got["rep"].to_list() == rep_mem[gone].tolist()
    assert json.loads(out.with_suffix(".report.json").read_text())["dropped"] == len(gone)
    assert report.docs == len(texts)


def test_bad_input_errors_name_file_and_column(tmp_path):
    f = tmp_path / "c.parquet"
    pl.DataFrame({"prompt": ["a b c"], "n": [3]}).write_parquet(f)
    with pytest.raises(KeyError, match=r"c\.parquet: no column 'text'"):
        list(stream.parquet_chunks([f], "text", 10))
    with pytest.raises(TypeError, match=r"c\.parquet: column 'n' is Int64, expected strings"):
        list(stream.parquet_chunks([f], "n", 10))
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "left.txt").write_text("x")
    with pytest.raises(FileExistsError, match="must be empty"):
        stream.near_clusters_stream(iter(()), DedupParams(), tmp_path / "w", 2)


def test_params_are_checked_by_name():
    with pytest.raises(ParamsError, match=r"curate\.dedup\.engine: expected one of"):
        build(CurateParams, {"dedup": {"engine": "streaming"}}, "curate")
    with pytest.raises(ParamsError, match=r"curate\.dedup.*chunk_doc"):
        build(CurateParams, {"dedup": {"chunk_doc": 10}}, "curate")
    with pytest.raises(ValueError, match=r"curate\.dedup\.chunk_docs: must be >= 1, got 0"):
        build(CurateParams, {"dedup": {"chunk_docs": 0}}, "curate")


def test_curate_with_engine_stream_writes_the_same_frames(tmp_path):
    """The whole curate core (exact dedup, near dedup, decontamination, split) with
    ``dedup.engine: stream`` and tiny chunks gives the frames and stats of the default engine."""
    files = list(write_planted(tmp_path))  # a copy: the fixture's list is shared
    rng = np.random.default_rng(1)
    extra = tmp_path / "user" / "many.jsonl"
    with extra.open("w") as fh:
        for i in range(300):
            words = " ".join(_word(x) for x in rng.integers(0, 400, 40))
            for _ in range(1 + i % 3):  # copies with one word changed
                w = words.split()
                w[int(rng.integers(0, 40))] = "v" + _word(int(rng.integers(0, 400)))
                fh.write(json.dumps({"problem": " ".join(w) + f" What is {i % 7} + 1?",
                                     "answer": str(i % 7 + 1)}) + "\n")
    files.append({"path": "user/many.jsonl", "domain": "math", "prompt_field": "problem",
                  "reference_fields": {"answer": "answer"}})
    frames = {}
    for engine in ("memory", "stream"):
        params = build(CurateParams, {
            "user_files": files, "validation": {"max_prompt_chars": 500, "max_bad_share": 0.9},
            "dedup": {"engine": engine, "chunk_docs": 37, "partitions": 3}}, "curate")
        cands = [c for spec in params.user_files for c in file_candidates(spec, tmp_path)]
        res = curate(cands, params, seed=0)
        frames[engine] = res
        assert res.perf["near_dedup_docs_per_s"] > 0 and res.perf["peak_rss_mb"] > 0
    a, b = frames["memory"], frames["stream"]
    assert a.stats == b.stats
    assert a.stats["dropped_by_reason"]["near_duplicate"] > 50  # not a vacuous comparison
    for name in ("sft", "rl", "val", "bench", "quarantine", "dropped"):
        assert a.frames[name].equals(b.frames[name]), name


@pytest.mark.integration  # datatrove starts its process pools (about 20 s)
def test_datatrove_executors_with_local_workers_give_the_same_clusters(tmp_path):
    """The streaming steps as datatrove jobs (2 tasks each on 2 local processes): the same
    dropped documents and representatives as the in-memory path."""
    pytest.importorskip("datatrove")
    from pipeline.curation import distributed

    texts = _corpus(600, seed=7)
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    half = len(texts) // 2
    pl.DataFrame({"text": texts[:half]}).write_parquet(files[0], row_group_size=120)
    pl.DataFrame({"text": texts[half:]}).write_parquet(files[1], row_group_size=200)
    # 865 docs: a has 432 rows in row groups 120/120/120/72, b 433 in 200/200/33
    assert len(texts) == 865
    assert [u.rows for u in distributed.plan(files, "text")] == [120, 120, 120, 72, 200, 200, 33]
    out = tmp_path / "out" / "dropped.parquet"
    job = distributed.dedup_executors(files, "text", out, tmp_path / "w", DedupParams(),
                                      chunk_docs=64, partitions=4, tasks=2)
    job.run()
    norm, numkey = _norm(texts)
    rep_mem, _ = _in_memory(norm, numkey, DedupParams())
    gone = np.flatnonzero(rep_mem != np.arange(len(rep_mem)))
    got = pl.read_parquet(out)
    assert len(gone) > 100
    assert got["doc"].to_list() == gone.tolist() and got["rep"].to_list() == rep_mem[gone].tolist()
    # one signature file per chunk of <= 64 rows of a row group: 2+2+2+2 in a, 4+4+1 in b
    assert len(list((tmp_path / "w" / "sig").glob("*.npy"))) == 17

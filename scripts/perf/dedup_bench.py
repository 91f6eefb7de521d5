"""Near-dup dedup benchmark: this project's dedup (in-memory and streaming) vs datatrove's.

Corpus (known ground truth, ``make_corpus``): math-word-problem-like texts (3-5 sentences from
24 templates with names, items, places and numbers, one clause of 5-12 filler words, one
question; 40-80 words), of which 10% are **near-copies** of an original (1, 2 or 3 word edits:
substitution, deletion, insertion or swap of non-number words, drawn uniformly; half of them
also change case or punctuation, which normalisation folds) and 2% are **hard negatives**
(an exact copy of an original with one number changed: a different problem, must be kept).

Every system runs in its own fresh process (so each peak RSS is its own), single-threaded
(``POLARS_MAX_THREADS=1``, ``OMP_NUM_THREADS=1``), on the same Parquet file:

- ``memory``: today's in-memory path (``dedup.near_clusters``: normalise, MinHash of the whole
  corpus, LSH, verification, components);
- ``stream``: ``pipeline.curation.stream`` (signatures and buckets on disk, chunk by chunk);
- ``datatrove``: datatrove 0.10.1's four MinHash steps with its default config (5-grams,
  14 buckets x 8 hashes), called directly in one process, a ``str.split`` word tokenizer
  (spaCy is not installed), its xxhash call patched to encode strings for xxhash 4.x, and
  ``save_cluster_id`` so that its clusters can be scored.

Our settings are ``curate.dedup`` from params.yaml (``default``), ``recall`` (``RECALL``: a lower
LSH candidate threshold and verification threshold) and any ``--setting``. Scores, from each
system's clusters (documents that share a cluster were merged; one per cluster is kept):

- precision = correct drops / drops, where a cluster of size s holding t distinct true
  documents has s-1 drops of which s-t are correct; recall = correct drops / sum over true
  clusters of (size - 1);
- recall by number of edits, and by the true Jaccard of the copy's 3-word shingles to its
  original (normalised text), e.g. the 0.7-0.8 band: share of copies in their original's cluster;
- hard negatives merged: share of hard negatives in the same cluster as their original.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/perf/dedup_bench.py --docs 1000000
    .venv/bin/python scripts/perf/dedup_bench.py --docs 20000 --systems memory,stream  # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("POLARS_MAX_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pipeline.curation.config import CurateParams, DedupParams  # noqa: E402
from pipeline.params import load_section  # noqa: E402

TEMPLATES = [
    "{a} has {n} {x}.",
    "{a} buys {n} more {x} at the {p}.",
    "Each {x} costs {n} dollars.",
    "{b} gives {a} {n} {x}.",
    "{a} sells {n} {x} to {b} on {d}.",
    "There are {n} {x} in each {y}.",
    "{a} walks {n} miles to the {p} every {d}.",
    "The {p} opens at {n} and closes {n} hours later.",
    "{a} reads {n} pages of a book about {x}.",
    "{a} splits {n} {x} equally among {n} friends.",
    "A box of {x} weighs {n} pounds.",
    "{b} eats {n} of the {x} before lunch.",
    "{a} earns {n} dollars per hour at the {p}.",
    "On {d} {a} bakes {n} trays of {x}.",
    "{a} saves {n} dollars each week for a new {y}.",
    "The {y} holds {n} liters of water.",
    "{b} has {n} times as many {x} as {a}.",
    "{a} loses {n} {x} on the way to the {p}.",
    "A train leaves the {p} at {n} miles per hour.",
    "{a} plants {n} rows of {x} with {n} plants in each row.",
    "{b} spends {n} minutes cleaning the {y}.",
    "{a} and {b} share {n} {x} at the {p}.",
    "The price of a {y} drops by {n} percent.",
    "{a} collects {n} {x} every {d}.",
]
QUESTIONS = [
    "How many {x} does {a} have now?",
    "How much money does {a} spend in total?",
    "How many {x} are left?",
    "How many hours does {b} work?",
    "What is the total weight of the {x}?",
    "How many {x} does each friend get?",
    "How far does {a} walk in a week?",
    "How much does {a} save after {n} weeks?",
]
RECALL = "recall:bands=32,rows=4,threshold=0.6"  # the recall setting (docs/curate.md)
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _words(rng: np.random.Generator, n: int, syll: int) -> list[str]:
    parts = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"] + ["an", "el", "or", "is"]
    out = {"".join(rng.choice(parts, syll)) for _ in range(n * 2)}
    return sorted(out)[:n]


def make_corpus(n_docs: int, near_share: float, hard_share: float, seed: int
                ) -> pl.DataFrame:
    """The corpus: ``text``, ``truth`` (index of the original a copy was made from, else its
    own index), ``kind`` (original | near | hard), ``edits`` (word edits of a near-copy),
    ``src`` (the original of a copy, else -1). Rows are in random order."""
    rng = np.random.default_rng(seed)
    names = [w.capitalize() for w in _words(rng, 400, 2)]
    items, places = _words(rng, 300, 3), _words(rng, 100, 3)
    fill = _words(rng, 5000, 3)
    n_near, n_hard = int(n_docs * near_share), int(n_docs * hard_share)
    n_orig = n_docs - n_near - n_hard
    texts = []
    for _ in range(n_orig):
        a, b = rng.choice(len(names), 2, replace=False)
        x, y = rng.choice(len(items), 2, replace=False)
        slots = {"a": names[a], "b": names[b], "x": items[x], "y": items[y],
                 "p": places[rng.integers(len(places))], "d": DAYS[rng.integers(7)]}
        sents = [TEMPLATES[t] for t in rng.choice(len(TEMPLATES), rng.integers(3, 6), False)]
        sents.insert(int(rng.integers(1, len(sents))),
                     " ".join(fill[w] for w in rng.integers(0, len(fill), rng.integers(5, 13)))
                     .capitalize() + ".")
        sents.append(QUESTIONS[rng.integers(len(QUESTIONS))])
        text = " ".join(sents)
        while "{n}" in text:
            text = text.replace("{n}", str(int(rng.integers(2, 500))), 1)
        texts.append(text.format(**slots))
    truth, kind, edits, src = list(range(n_orig)), ["original"] * n_orig, [0] * n_orig, [-1] * n_orig
    for _ in range(n_near):
        o = int(rng.integers(n_orig))
        toks = texts[o].split(" ")
        k = int(rng.integers(1, 4))
        for _ in range(k):
            words = [i for i, t in enumerate(toks) if not any(c.isdigit() for c in t)]
            i = words[int(rng.integers(len(words)))]
            op = int(rng.integers(4))
            if op == 0:
                toks[i] = fill[rng.integers(len(fill))]
            elif op == 1 and len(toks) > 10:
                del toks[i]
            elif op == 2:
                toks.insert(i, fill[rng.integers(len(fill))])
            else:
                j = i + 1 if i + 1 < len(toks) and i + 1 in words else i - 1
                toks[i], toks[j] = toks[j], toks[i]
        text = " ".join(toks)
        style = int(rng.integers(8))
        if style == 0:
            text = text.lower()
        elif style == 1:
            text = text.upper()
        elif style == 2:
            text = text.replace(".", "").replace("?", "")
        elif style == 3:
            text = text.replace(". ", "! ").replace(" ", "  ")
        texts.append(text)
        truth.append(o)
        kind.append("near")
        edits.append(k)
        src.append(o)
    for _ in range(n_hard):
        o = int(rng.integers(n_orig))
        toks = texts[o].split(" ")
        nums = [i for i, t in enumerate(toks) if t.strip(".?").isdigit()]
        i = nums[int(rng.integers(len(nums)))]
        old = toks[i].strip(".?")
        new = old
        while new == old:
            new = str(int(rng.integers(2, 500)))
        toks[i] = toks[i].replace(old, new)
        texts.append(" ".join(toks))
        truth.append(len(texts) - 1)
        kind.append("hard")
        edits.append(0)
        src.append(o)
    order = rng.permutation(len(texts))
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))  # new position of each old row
    truth_a, src_a = np.asarray(truth), np.asarray(src)
    return pl.DataFrame({
        "text": [texts[i] for i in order],
        "truth": pos[truth_a[order]],
        "kind": [kind[i] for i in order],
        "edits": np.asarray(edits)[order],
        "src": np.where(src_a[order] >= 0, pos[np.maximum(src_a[order], 0)], -1),
    })


def shingle_jaccard(corpus: pl.DataFrame, k: int = 3) -> np.ndarray:
    """True Jaccard of each copy's k-word shingle set (normalised text) to its original's;
    NaN for originals."""
    from pipeline.curation.normalize import normalize_series

    norm = normalize_series(corpus["text"]).to_list()
    src = corpus["src"].to_numpy()
    out = np.full(len(norm), np.nan)

    def sh(t: str) -> set:
        w = t.split()
        return {tuple(w[i : i + k]) for i in range(len(w) - k + 1)}

    for i in np.flatnonzero(src >= 0):
        a, b = sh(norm[i]), sh(norm[src[i]])
        out[i] = len(a & b) / max(len(a | b), 1)
    return out


def score(labels: np.ndarray, corpus: pl.DataFrame, jac: np.ndarray) -> dict:
    """Precision, recall, recall by edits and Jaccard band, hard negatives merged."""
    truth = corpus["truth"].to_numpy()
    df = pl.DataFrame({"label": labels, "truth": truth})
    g = df.group_by("label").agg(s=pl.len(), t=pl.col("truth").n_unique())
    drops = int((g["s"] - 1).sum())
    correct = int((g["s"] - g["t"]).sum())
    should = int((np.bincount(truth) - 1).clip(0).sum())
    src, kind, edits = corpus["src"].to_numpy(), corpus["kind"].to_numpy(), corpus["edits"].to_numpy()
    found = (src >= 0) & (labels == labels[np.maximum(src, 0)])
    near, hard = kind == "near", kind == "hard"
    out = {
        "precision": correct / max(drops, 1),
        "recall": correct / max(should, 1),
        "dropped": drops,
        "hard_negatives_merged": float(found[hard].mean()) if hard.any() else 0.0,
    }
    for k in (1, 2, 3):
        sel = near & (edits == k)
        out[f"recall_{k}_edits"] = float(found[sel].mean()) if sel.any() else float("nan")
    for lo, hi in ((0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 1.01)):
        sel = near & (jac >= lo) & (jac < hi)
        out[f"recall_jaccard_{lo}_{min(hi, 1.0)}"] = float(found[sel].mean()) if sel.any() else float("nan")
        out[f"copies_jaccard_{lo}_{min(hi, 1.0)}"] = int(sel.sum())
    return out


# ---- the systems (each runs in a child process: `--child SYSTEM`) ----

def run_memory(path: Path, p: DedupParams, args) -> np.ndarray:
    from pipeline.curation import minhash as mh
    from pipeline.curation.dedup import near_clusters
    from pipeline.curation.normalize import normalize_series, numbers_key_expr

    texts = pl.read_parquet(path, columns=["text"])["text"]
    norm = normalize_series(texts)
    del texts
    keys = pl.DataFrame({"n": norm}).select(numbers_key_expr("n"))["n"].hash(seed=7).to_numpy()
    words, lengths = mh.word_hashes(norm)
    shingles, counts = mh.shingle_hashes(words, lengths, p.shingle_size, whole_short=True)
    sig = mh.signatures(shingles, counts, p.num_perm, p.seed)
    rep, _ = near_clusters(sig, counts, keys if p.same_numbers else None, p)
    return rep


def run_stream(path: Path, p: DedupParams, args) -> np.ndarray:
    from pipeline.curation import stream

    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        rep, _, report = stream.near_clusters_stream(
            stream.parquet_chunks([path], "text", args.chunk_docs), p, Path(tmp) / "w",
            args.partitions, workers=1)
    print(json.dumps({"step_seconds": report.step_seconds}), file=sys.stderr)
    return rep


def run_datatrove(path: Path, p: DedupParams, args) -> np.ndarray:
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
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    texts = pl.read_parquet(path, columns=["text"])["text"]
    n = len(texts)

    def docs():
        for i, t in enumerate(texts):
            yield Document(text=t, id=str(i))

    cfg = MinhashConfig()
    labels = np.arange(n, dtype=np.int64) + (1 << 40)  # unclustered: a label of its own
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        sig_step = MinhashDedupSignature(f"{tmp}/sigs", config=cfg, language=SplitTokenizer())
        sig_step._hash_func = lambda s: xxhash.xxh64_intdigest(s.encode())
        sig_step.run(docs(), 0, 1)
        for b in range(cfg.num_buckets):
            MinhashDedupBuckets(f"{tmp}/sigs", f"{tmp}/buckets", config=cfg).run(
                None, b, cfg.num_buckets)
        MinhashDedupCluster(f"{tmp}/buckets", f"{tmp}/remove", config=cfg,
                            save_cluster_id=True).run(None, 0, 1)
        for _ in MinhashDedupFilter(f"{tmp}/remove").run(docs(), 0, 1):
            pass  # step 4 (timed like the others); the clusters are read from step 3's file
        clusters = f"{tmp}/remove/000000.clusters"
        if os.path.exists(clusters):  # (doc, cluster id) of every clustered document
            pairs = np.fromfile(clusters, dtype="<u4").reshape(-1, 2)
            labels[pairs[:, 0]] = pairs[:, 1]
    return labels


SYSTEMS = {"memory": run_memory, "stream": run_stream, "datatrove": run_datatrove}
# imported before the clock starts (module imports are not dedup work)
IMPORTS = {
    "memory": ["pipeline.curation.dedup", "pipeline.curation.normalize"],
    "stream": ["pipeline.curation.stream", "pyarrow.compute"],
    "datatrove": ["datatrove.pipeline.dedup.minhash", "datatrove.data",
                  "datatrove.utils.word_tokenizers", "xxhash"],
}


def child(args) -> None:
    import importlib

    from pipeline.curation.stream import peak_rss_mb

    for module in IMPORTS[args.child]:
        importlib.import_module(module)
    p = DedupParams(**json.loads(args.params))
    t = time.perf_counter()
    labels = SYSTEMS[args.child](args.corpus, p, args)
    secs = time.perf_counter() - t
    np.save(args.labels_out, labels)
    # VmHWM: ru_maxrss would carry the parent's peak (Linux keeps it across fork and exec)
    print(json.dumps({"seconds": secs, "peak_rss_mb": peak_rss_mb()}))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--near-share", type=float, default=0.10)
    ap.add_argument("--hard-share", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--systems", default="memory:default,stream:default,stream:recall,datatrove",
                    help="comma-separated SYSTEM[:SETTING] (SYSTEM: memory, stream, datatrove)")
    ap.add_argument("--setting", action="append", default=[],
                    help="NAME:KEY=VALUE,... a named setting: curate.dedup with these overrides "
                         f"(built in: default, and {RECALL})")
    ap.add_argument("--chunk-docs", type=int, default=None,
                    help="stream: documents per chunk (default curate.dedup.chunk_docs)")
    ap.add_argument("--partitions", type=int, default=None,
                    help="stream: bucket partitions (default curate.dedup.partitions)")
    ap.add_argument("--work-dir", default=None, help="temp space (default: the system's)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("--labels-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    default = load_section("curate", CurateParams, REPO / "params.yaml").dedup
    args.chunk_docs = args.chunk_docs or default.chunk_docs
    args.partitions = args.partitions or default.partitions
    settings = {"default": default}
    for spec in [RECALL, *args.setting]:
        name, _, kvs = spec.partition(":")
        over = {k: v == "true" if isinstance(getattr(default, k), bool)
                else type(getattr(default, k))(v)
                for k, v in (kv.split("=") for kv in kvs.split(",") if kv)}
        settings[name] = dataclasses.replace(default, **over)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    corpus = make_corpus(args.docs, args.near_share, args.hard_share, args.seed)
    jac = shingle_jaccard(corpus)
    print(f"corpus: {corpus.height} docs, {int((corpus['kind'] == 'near').sum())} near-copies "
          f"(1-3 word edits), {int((corpus['kind'] == 'hard').sum())} hard negatives "
          f"({time.perf_counter() - t0:.0f}s to build)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        path = Path(tmp) / "corpus.parquet"
        corpus.select("text").write_parquet(path, row_group_size=args.chunk_docs)
        for spec in args.systems.split(","):
            system, _, setting = spec.partition(":")
            setting = setting or "default"
            p = settings[setting]
            lab = Path(tmp) / "labels.npy"
            cmd = [sys.executable, __file__, "--child", system, "--corpus", str(path),
                   "--params", json.dumps(dataclasses.asdict(p)), "--labels-out", str(lab),
                   "--chunk-docs", str(args.chunk_docs), "--partitions", str(args.partitions)]
            if args.work_dir:
                cmd += ["--work-dir", args.work_dir]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{spec} failed:\n{proc.stderr[-3000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            s = score(np.load(lab), corpus, jac)
            name = system if system == "datatrove" else f"{system}:{setting}"
            row = {"system": name, "docs": corpus.height, **run,
                   "docs_per_s": corpus.height / run["seconds"], **s}
            if system != "datatrove":
                row["params"] = {k: getattr(p, k) for k in ("bands", "rows", "threshold")}
            results.append(row)
            print(f"{name:15s} {run['seconds']:7.1f}s {row['docs_per_s']:8.0f} docs/s  "
                  f"peak RSS {run['peak_rss_mb']:6.0f} MB  precision {s['precision']:.4f}  "
                  f"recall {s['recall']:.4f} (1/2/3 edits {s['recall_1_edits']:.3f}/"
                  f"{s['recall_2_edits']:.3f}/{s['recall_3_edits']:.3f}; J 0.7-0.8 "
                  f"{s['recall_jaccard_0.7_0.8']:.3f})  hard negatives merged "
                  f"{s['hard_negatives_merged']:.1%}", flush=True)
    dt = [r for r in results if r["system"] == "datatrove"]
    if dt:
        for r in results:
            r["x_datatrove"] = r["docs_per_s"] / dt[0]["docs_per_s"]
            print(f"{r['system']:15s} {r['x_datatrove']:.1f}x datatrove's docs/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"docs": corpus.height, "run": run_record(load_start), "results": results}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


def run_record(load_start: tuple[float, ...]) -> dict:
    """Where and when the benchmark ran: commit, versions, cores and the load averages."""
    from importlib.metadata import PackageNotFoundError, version

    def commit() -> str:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"],
                             cwd=REPO, capture_output=True, text=True)
        return out.stdout.strip() or "unknown"

    def ver(pkg: str) -> str:
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    return {"commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "cpu_count": os.cpu_count(),
            "load_avg_start": [round(x, 2) for x in load_start],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "versions": {p: ver(p) for p in ("polars", "numpy", "numba", "datatrove")}}


if __name__ == "__main__":
    sys.exit(main())

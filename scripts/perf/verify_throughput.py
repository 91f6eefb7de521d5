"""Verifier throughput per domain: ``score_batch`` (process pool) side by side with its peer, a
plain sequential ``score()`` loop in one process, printing items/s and the ratio.

Inputs are generated tasks (``pipeline.tasks.generate``) answered by their teacher traces
(``teacher_trace``), every other one corrupted by swapping in the trace of the next task, so both
accept and reject paths are timed; the script also checks the verdicts (teacher traces accepted,
the two paths agree). For ``code`` the items/s are sandbox executions per second. Pool start-up
(spawn + imports) is done once before timing and reported apart.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/perf/verify_throughput.py --n 100 --workers 2
    .venv/bin/python scripts/perf/verify_throughput.py --domains code math --n 40 --out t.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.atomic import write_json  # noqa: E402
from pipeline.tasks import DOMAINS, generate, teacher_trace  # noqa: E402
from pipeline.verify import score, score_batch  # noqa: E402
from pipeline.verify.batch import pool  # noqa: E402


def inputs(domain: str, n: int, seed: int) -> tuple[list[dict], list[str], list[bool]]:
    """Tasks, responses (odd items answered with the next task's trace) and the expected verdict."""
    tasks = generate(domain, n + 1, seed=seed)
    traces = [teacher_trace(t) for t in tasks]
    responses = [traces[i] if i % 2 == 0 else traces[i + 1] for i in range(n)]
    return tasks[:n], responses, [i % 2 == 0 for i in range(n)]


def measure(domain: str, n: int, seed: int, workers: int, timeout_s: float) -> dict:
    tasks, responses, teacher = inputs(domain, n, seed)
    score_batch(tasks[:2], responses[:2], workers=workers, timeout_s=timeout_s)  # warm both
    [score(t, r) for t, r in zip(tasks[:2], responses[:2], strict=True)]  # paths' imports
    t0 = time.perf_counter()
    batch = score_batch(tasks, responses, workers=workers, timeout_s=timeout_s)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    seq = [score(t, r) for t, r in zip(tasks, responses, strict=True)]
    t_seq = time.perf_counter() - t0
    accepted = [s.correct for s, ok in zip(batch, teacher, strict=True) if ok]
    return {
        "domain": domain, "items": n, "batch_items_per_s": n / t_batch,
        "sequential_items_per_s": n / t_seq, "ratio": t_seq / t_batch,
        "teacher_accept_rate": sum(accepted) / max(1, len(accepted)),
        "corrupted_accept_rate": sum(s.correct for s, ok in zip(batch, teacher, strict=True)
                                     if not ok) / max(1, n - len(accepted)),
        "paths_agree": [s.correct for s in batch] == [s.correct for s in seq],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS)
    ap.add_argument("--n", type=int, default=100, help="items per domain")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    pool(args.workers).run("json:loads", [("1",)] * args.workers, 120.0)
    print(f"pool start ({args.workers} workers, spawn + imports): {time.perf_counter() - t0:.1f} s")
    print(f"{'domain':<15}{'items':>6}{'batch/s':>10}{'seq/s':>10}{'ratio':>7}"
          f"{'teacher ok':>11}{'swapped ok':>11}{'agree':>7}")  # fmt: skip
    rows = []
    for domain in args.domains:
        r = measure(domain, args.n, args.seed, args.workers, args.timeout_s)
        rows.append(r)
        print(f"{domain:<15}{r['items']:>6}{r['batch_items_per_s']:>10.1f}"
              f"{r['sequential_items_per_s']:>10.1f}{r['ratio']:>7.2f}"
              f"{r['teacher_accept_rate']:>11.0%}{r['corrupted_accept_rate']:>11.0%}"
              f"{str(r['paths_agree']):>7}", flush=True)  # fmt: skip
    if args.out:
        write_json(args.out, rows)


if __name__ == "__main__":
    main()

"""Score many responses in parallel without ever hanging the caller.

``score_batch(tasks, responses, workers=2, timeout_s=30.0) -> list[Score]`` (same order as the
inputs):

1. every task is parsed in the caller first (a bad task raises ``ValueError`` naming it);
2. ``open_qa`` items are scored in the caller, batched through the reward model (one forward
   pass per batch instead of loading torch and the model in every worker);
3. the other items go to a pool of spawned worker processes (:class:`WorkerPool`) that import
   the verifiers but never torch. Each item gets ``timeout_s`` of wall time from the moment it
   is handed to a worker: past that the worker is killed (its sandboxes die with it) and the
   item scores ``Score(0.0, False, "timeout")``; a worker that dies scores its item
   ``Score(0.0, False, "error: worker died (exit N)")``; a checker exception scores
   ``Score(0.0, False, "error: <type>: <message>")``. Killed workers are replaced.

``workers=0`` scores inline in the caller (no pool, no timeout: for debugging). Pools are kept
per worker count for the life of the process, so repeated calls (RL steps) pay the worker start
(~1-2 s: spawn + imports) once. Call from code under ``if __name__ == "__main__":`` (spawn).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Mapping, Sequence
from multiprocessing.connection import wait
from typing import Any

from pipeline.verify import final_answer, parse_task, score
from pipeline.verify.result import Score

log = logging.getLogger(__name__)
# Imported by each worker before it takes items, so no item's timeout pays for imports.
WARM_MODULES = ("pipeline.verify.math", "pipeline.verify.games", "pipeline.verify.ifeval",
                "pipeline.verify.code", "math_verify")  # fmt: skip
STARTUP_TIMEOUT_S = 120.0


def score_one(task: Mapping[str, Any], response: str) -> Score:
    """:func:`pipeline.verify.score`, with checker exceptions turned into a zero score."""
    try:
        return score(task, response)
    except Exception as e:  # noqa: BLE001 - one bad item must not sink a batch
        log.warning("verify: task %s: %s: %s", task.get("id", "?"), type(e).__name__, e)
        return Score(0.0, False, f"error: {type(e).__name__}: {e}"[:300])


def _worker_main(conn, warm: Sequence[str]) -> None:
    """Worker loop: receive (target, [args, ...]); send one ("ok", value) or ("exc", message)
    per args tuple, as each finishes."""
    for name in warm:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a missing checker only fails its own items
            pass
    conn.send(("ready", None))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        target, chunk = msg
        module, attr = target.split(":")
        for args in chunk:
            try:
                value = getattr(importlib.import_module(module), attr)(*args)
                conn.send(("ok", value))
            except Exception as e:  # noqa: BLE001 - reported to the caller, the worker lives on
                conn.send(("exc", f"{type(e).__name__}: {e}"[:300]))


class _Worker:
    def __init__(self, ctx, warm: Sequence[str]):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, tuple(warm)), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.born = time.monotonic()
        self.job: deque[int] = deque()  # item indices sent and not yet answered, in order
        self.since = 0.0  # when the current item (job[0]) started: last send or last result

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


class WorkerPool:
    """``n`` spawned worker processes running ``"module:function"`` targets with a per-item timeout.

    ``run(target, args_list, timeout_s)`` returns one ``(status, value)`` per args tuple, in
    order: ``("ok", result)``, ``("exc", message)``, ``("timeout", None)`` or ``("died", exit
    code)``. Items go out in small chunks (fewer round trips for cheap checks); each item gets
    ``timeout_s`` from the moment the worker reaches it. A timed-out or dead worker is killed
    and replaced and the rest of its chunk goes back to the queue.
    """

    def __init__(self, workers: int = 2, warm: Sequence[str] = WARM_MODULES, max_chunk: int = 16):
        if workers < 1:
            raise ValueError(f"WorkerPool: workers must be >= 1, got {workers}")
        self.ctx = mp.get_context("spawn")
        self.warm = tuple(warm)
        self.max_chunk = max_chunk
        self.workers = [_Worker(self.ctx, self.warm) for _ in range(workers)]

    def run(self, target: str, args_list: Sequence[tuple], timeout_s: float) -> list[tuple]:
        out: list[tuple | None] = [None] * len(args_list)
        pending = deque(range(len(args_list)))
        while pending or any(w.job for w in self.workers):
            self._dispatch(pending, target, args_list)
            self._await(out, pending, timeout_s)
        return out  # type: ignore[return-value]

    def _dispatch(self, pending: deque, target: str, args_list: Sequence[tuple]) -> None:
        for w in self.workers:
            if w.ready and not w.job and pending:
                size = max(1, min(self.max_chunk, len(pending) // (2 * len(self.workers))))
                w.job = deque(pending.popleft() for _ in range(size))
                w.conn.send((target, [args_list[i] for i in w.job]))
                w.since = time.monotonic()

    def _await(self, out: list, pending: deque, timeout_s: float) -> None:
        now = time.monotonic()
        left = min((w.since + timeout_s - now for w in self.workers if w.job), default=1.0)
        handles = [w.conn for w in self.workers] + [w.proc.sentinel for w in self.workers]
        wait(handles, timeout=max(0.0, min(left, 1.0)))
        for k, w in enumerate(self.workers):
            self.workers[k] = self._check(w, out, pending, timeout_s)

    def _check(self, w: _Worker, out: list, pending: deque, timeout_s: float) -> _Worker:
        """Collect results, or replace the worker if it died or timed out."""
        try:
            got = False
            while w.conn.poll():
                status, value = w.conn.recv()
                got = True
                if status == "ready":
                    w.ready = True
                elif w.job:
                    out[w.job.popleft()] = (status, value)
                    w.since = time.monotonic()
            if got:
                return w
        except (EOFError, OSError):
            pass
        if w.proc.is_alive():
            if w.job and time.monotonic() - w.since > timeout_s:
                out[w.job.popleft()] = ("timeout", None)
            elif not w.ready and time.monotonic() - w.born > STARTUP_TIMEOUT_S:
                raise RuntimeError(f"verify worker did not start in {STARTUP_TIMEOUT_S:.0f} s")
            else:
                return w
        elif w.job:
            out[w.job.popleft()] = ("died", w.proc.exitcode)
        elif not w.ready:
            raise RuntimeError(f"verify worker failed to start (exit {w.proc.exitcode})")
        pending.extendleft(reversed(w.job))  # the rest of its chunk is scored by others
        w.kill()
        return _Worker(self.ctx, self.warm)

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self.workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                w.kill()
        self.workers = []


_POOLS: dict[int, WorkerPool] = {}


def pool(workers: int) -> WorkerPool:
    """The process-wide pool with ``workers`` workers (started on first use)."""
    if workers not in _POOLS:
        _POOLS[workers] = WorkerPool(workers)
    return _POOLS[workers]


@atexit.register
def close_pools() -> None:
    while _POOLS:
        _POOLS.popitem()[1].close()


def _as_score(result: tuple) -> Score:
    status, value = result
    if status == "ok":
        return value
    if status == "timeout":
        return Score(0.0, False, "timeout")
    if status == "died":
        return Score(0.0, False, f"error: worker died (exit {value})")
    return Score(0.0, False, f"error: {value}")


def _score_open_qa(tasks, responses, idx: list[int], out: list) -> None:
    from pipeline.verify import reward_model as rm

    params = rm.settings()
    live = []
    for i in idx:
        answer, problem = final_answer(responses[i])
        if problem:
            out[i] = Score(0.0, False, problem)
        else:
            live.append((i, answer, rm.reference_text(parse_task(tasks[i])[1])))
    prompts = [tasks[i].get("prompt", "") for i, _, _ in live]
    got = rm.rewards([a for _, a, _ in live], [r for _, _, r in live], prompts, params)
    for (i, _, _), reward in zip(live, got, strict=True):
        out[i] = rm.to_score(reward, params.threshold)


def score_batch(
    tasks: Sequence[Mapping[str, Any]],
    responses: Sequence[str],
    workers: int = 2,
    timeout_s: float = 30.0,
) -> list[Score]:
    """Scores for ``responses[i]`` to ``tasks[i]``, in order (see the module docstring)."""
    if len(tasks) != len(responses):
        raise ValueError(f"score_batch: {len(tasks)} tasks but {len(responses)} responses")
    domains = [parse_task(t)[0] for t in tasks]
    out: list[Score | None] = [None] * len(tasks)
    qa = [i for i, d in enumerate(domains) if d == "open_qa"]
    if qa:
        _score_open_qa(tasks, responses, qa, out)
    rest = [i for i, d in enumerate(domains) if d != "open_qa"]
    if workers <= 0:
        for i in rest:
            out[i] = score_one(tasks[i], responses[i])
    elif rest:
        args = [(dict(tasks[i]), responses[i]) for i in rest]
        results = pool(workers).run("pipeline.verify.batch:score_one", args, timeout_s)
        for i, r in zip(rest, results, strict=True):
            out[i] = _as_score(r)
    return out  # type: ignore[return-value]

"""The embedded engine: many files on every core of one machine, nothing but the package needed.

:func:`run` reads files ahead in a thread pool, groups them by length into batches bounded by
memory, processes the batches in worker processes (or in this process with ``workers=1``) and
writes behind in one writer thread. The main process alone claims, writes and records, so a
worker that dies takes no file with it half-written. One bad file fails only itself; Ctrl-C or
SIGTERM stops cleanly (the write in hand completes, every other claim is released, nothing
partial is left) and the summary says ``interrupted``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import MelinvertError, check
from .base import Job, ProgressCallback, RunSummary, Task, available_cores, check_jobs, one_line
from .manifest import Ledger, Manifest, fingerprint

#: Environment variables that set native thread pools in worker processes.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
#: Most items in one automatic batch.
MAX_AUTO_BATCH = 32

_TASK: Task | None = None


# ---------------------------------------------------------------------- processing (any process)


def process_batch(task: Task, items: list[Any]) -> tuple[list[tuple[bool, Any]], float]:
    """Process a batch; if it fails, each item alone, so that a bad item fails only itself.

    Returns
    -------
    results : list of (bool, Any)
        Per item ``(True, output)`` or ``(False, one-line reason)``.
    seconds : float
        Wall time spent.
    """
    t0 = time.perf_counter()
    try:
        outs = task.process(items)
        check(len(outs) == len(items), f"task returned {len(outs)} outputs for {len(items)} items")
        return [(True, o) for o in outs], time.perf_counter() - t0
    except Exception as e:
        if len(items) == 1:
            return [(False, one_line(e))], time.perf_counter() - t0
    results: list[tuple[bool, Any]] = []
    for item in items:
        results.extend(process_batch(task, [item])[0])
    return results, time.perf_counter() - t0


def set_threads(threads: int) -> None:
    """Native and torch thread pools of this process to ``threads``."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # only settable before the first parallel op
        torch.set_num_interop_threads(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)  # the run was killed: do not linger


def _worker_init(task: Task, threads: int, parent: int) -> None:
    global _TASK
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how to stop
    set_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    task.setup()
    _TASK = task


def _process_in_worker(items: list[Any]) -> tuple[list[tuple[bool, Any]], float]:
    assert _TASK is not None
    return process_batch(_TASK, items)


class _Inline:
    """Processing in this process (``workers=1``): no start-up, no copies."""

    slots = 1

    def __init__(self, task: Task):
        self.task = task
        task.setup()

    def submit(self, items: list[Any]) -> Future:
        f: Future = Future()
        f.set_result(process_batch(self.task, items))
        return f

    def close(self, *, kill: bool) -> None:
        pass


class _Pool:
    """Worker processes (spawned: safe with torch), each with ``threads`` threads and one setup."""

    def __init__(self, task: Task, workers: int, threads: int):
        import multiprocessing

        self.slots = workers + 1  # one batch queued behind the running ones keeps workers busy
        self._args = (task, threads, os.getpid())  # the pool pickles it for each worker
        self._workers = workers
        self._ctx = multiprocessing.get_context("spawn")
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self._workers, mp_context=self._ctx, initializer=_worker_init, initargs=self._args
        )

    def submit(self, items: list[Any]) -> Future:
        return self.pool.submit(_process_in_worker, items)

    def restart(self) -> None:
        self.close(kill=True)
        self.pool = self._start()

    def close(self, *, kill: bool) -> None:
        if kill:
            for p in list(getattr(self.pool, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    p.terminate()
        self.pool.shutdown(wait=not kill, cancel_futures=True)


# ---------------------------------------------------------------------- the scheduler


@dataclasses.dataclass
class _Item:
    job: Job
    data: Any
    fp: dict[str, Any]
    seconds: float
    length: int
    nbytes: int
    load_s: float
    attempts: int = 0


def _memory_budget(workers: int) -> int:
    """Bytes of working memory one batch may take: a quarter of the free memory per worker,
    between 64 MiB and 2 GiB."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return int(min(max(free // (4 * workers), 64 << 20), 2 << 30))


class _Run:
    """The main loop: claim and load ahead, batch by length, process, write behind."""

    def __init__(self, task: Task, ledger: Ledger, executor: Any, *, batch: int | None, budget: int):
        self.task, self.ledger, self.executor = task, ledger, executor
        self.batch = batch or MAX_AUTO_BATCH
        self.budget = budget if batch is None else 1 << 62
        self.window = 2 * self.batch * executor.slots
        self.todo: deque[Job] = deque()
        self.deferred: list[Job] = []
        self.loader = ThreadPoolExecutor(2, thread_name_prefix="melinvert-load")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="melinvert-write")
        self.loading: dict[Future, Job] = {}
        self.ready: list[_Item] = []
        self.processing: dict[Future, list[_Item]] = {}
        self.writing: dict[Future, Job] = {}
        self.notice: Any = None
        self._waiting_said = False

    def loop(self, progress: ProgressCallback | None) -> None:
        last = 0.0
        while True:
            self._fill()
            self._dispatch()
            futures = [*self.loading, *self.processing, *self.writing]
            if futures:
                done, _ = wait(futures, timeout=0.25, return_when=FIRST_COMPLETED)
                for f in done:
                    self._collect(f)
            elif not self.ready:
                if not self.todo and not self.deferred:
                    break
                if not self.todo:
                    self._retry_deferred()
            if progress is not None and time.perf_counter() - last > 0.25:
                last = time.perf_counter()
                progress(self.ledger.progress())

    def _fill(self) -> None:
        ready_bytes = sum(i.nbytes for i in self.ready)
        begun = 0
        while (
            self.todo
            and begun < 256
            and len(self.loading) + len(self.ready) < self.window
            and ready_bytes < 2 * self.budget * self.executor.slots
        ):
            job = self.todo.popleft()
            begun += 1
            state = self.ledger.begin(job)
            if state == "todo":
                self.loading[self.loader.submit(self._load, job)] = job
            elif state == "busy":
                self.deferred.append(job)

    def _load(self, job: Job) -> _Item:
        t0 = time.perf_counter()
        try:
            fp = fingerprint(job.input)
        except OSError as e:
            raise MelinvertError(f"cannot read {str(job.input)!r}: {e.strerror or e}") from None
        data = self.task.load(job)
        t = self.task
        return _Item(job, data, fp, t.item_seconds(data), t.item_length(data), t.item_bytes(data),
                     time.perf_counter() - t0)  # fmt: skip

    def _dispatch(self) -> None:
        while (
            self.ready and len(self.processing) < self.executor.slots and len(self.writing) < 2 * self.batch
        ):
            if self.processing and self._suspects():
                return  # after a worker died, its files run one at a time, alone: a crash then names its file
            more_coming = bool(self.loading) or (
                bool(self.todo) and len(self.ready) < self.window and not self._full()
            )
            if more_coming and not self._full():
                return
            items = self._take_batch()
            self.processing[self.executor.submit([i.data for i in items])] = items

    def _suspects(self) -> bool:
        """Whether a file that was in a dying worker's batch is waiting or running."""
        running = (i for items in self.processing.values() for i in items)
        return any(i.attempts for i in self.ready) or any(i.attempts for i in running)

    def _full(self) -> bool:
        return len(self.ready) >= self.batch or sum(i.nbytes for i in self.ready) >= self.budget

    def _take_batch(self) -> list[_Item]:
        """Up to ``batch`` items of the most common length first (equal lengths batch exactly),
        then of the nearest lengths, within the memory budget."""
        retry = [i for i in self.ready if i.attempts]
        if retry:  # after a worker died, its items run alone: a poison file then fails by itself
            batch = retry[:1]
        else:
            counts: dict[int, int] = {}
            for i in self.ready:
                counts[i.length] = counts.get(i.length, 0) + 1
            common = max(counts, key=lambda n: (counts[n], -n))
            order = sorted(self.ready, key=lambda i: (abs(i.length - common), i.length))
            batch, total = [], 0
            for item in order:
                if batch and (len(batch) >= self.batch or total + item.nbytes > self.budget):
                    break
                batch.append(item)
                total += item.nbytes
        taken = {id(i) for i in batch}
        self.ready = [i for i in self.ready if id(i) not in taken]
        return batch

    def _collect(self, f: Future) -> None:
        if f in self.loading:
            job = self.loading.pop(f)
            try:
                self.ready.append(f.result())
            except Exception as e:
                self.ledger.finish_failed(job, one_line(e))
        elif f in self.processing:
            items = self.processing.pop(f)
            try:
                results, seconds = f.result()
            except BrokenProcessPool:
                self._worker_died(items)
                return
            except Exception as e:
                results, seconds = [(False, one_line(e))] * len(items), 0.0
            total = sum(i.nbytes for i in items) or 1
            for item, (ok, out) in zip(items, results):
                if ok:
                    share = seconds * item.nbytes / total
                    self.writing[self.writer.submit(self._write, item, out, share)] = item.job
                else:
                    self.ledger.finish_failed(item.job, out)
        elif f in self.writing:
            self.writing.pop(f)
            f.result()
        # else: a batch of a pool that died, already requeued by _worker_died

    def _worker_died(self, items: list[_Item]) -> None:
        """A worker process died (killed, out of memory): retry each item once alone."""
        self.executor.restart()
        lost = [*items]
        for g in list(self.processing):
            lost.extend(self.processing.pop(g))
        for item in lost:
            if item.attempts >= 1:
                self.ledger.finish_failed(
                    item.job, "the worker process died while processing this file (killed or out of memory)"
                )
            else:
                item.attempts += 1
                self.ready.append(item)

    def _write(self, item: _Item, out: Any, process_s: float) -> None:
        t0 = time.perf_counter()
        try:
            notices = self.task.write(item.job, out)
            wall = item.load_s + process_s + time.perf_counter() - t0
            self.ledger.finish_ok(item.job, item.fp, audio_s=item.seconds, wall_s=wall, notices=notices)
        except Exception as e:
            self.ledger.finish_failed(item.job, one_line(e))

    def _retry_deferred(self) -> None:
        """Jobs another live run holds: wait for their claims, then judge them (finished or not)."""
        if not self._waiting_said and self.notice is not None:
            self.notice(
                f"waiting for {len(self.deferred)} files another run is making, e.g. "
                + self.ledger.busy_reason(self.deferred[0])
            )
            self._waiting_said = True
        still = []
        for job in self.deferred:
            state = self.ledger.begin(job)
            if state == "todo":
                self.todo.append(job)
            elif state == "busy":
                still.append(job)
        self.deferred = still
        if still and not self.todo:
            time.sleep(0.3)

    def shutdown(self, *, interrupted: bool) -> None:
        self.loader.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True, cancel_futures=interrupted)
        self.executor.close(kill=interrupted)


# ---------------------------------------------------------------------- signals and the entry


class _Stop:
    name: str | None = None


@contextlib.contextmanager
def stop_signals() -> Iterator[_Stop]:
    """SIGTERM raises KeyboardInterrupt like SIGINT (main thread only); says which arrived."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_term(signum: int, frame: Any) -> None:
        stop.name = "SIGTERM"
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, on_term)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """No SIGINT/SIGTERM while cleaning up (a second Ctrl-C must not leave claims behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def run(
    jobs: Sequence[Job],
    task: Task,
    *,
    manifest: Manifest,
    workers: int | None = None,
    batch: int | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    notice: Any = None,
) -> RunSummary:
    """Run ``task`` over ``jobs`` on this machine.

    Parameters
    ----------
    jobs : sequence of Job
        Input -> output pairs (see :func:`melinvert.engines.plan.plan_jobs`).
    task : Task
        What to do with each file (:class:`~melinvert.engines.tasks.InvertTask`, ``MelTask``).
    manifest : Manifest
        The run manifest (usually ``Manifest.in_folder(output_folder)``): records are appended,
        earlier runs' records decide what is already finished.
    workers : int, optional
        Worker processes; default: the cores this process may use. Each gets ``cores //
        workers`` torch threads. ``1`` processes in this process (no start-up cost, the
        caller's thread settings). Workers are spawned: a script calling :func:`run` with
        ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    batch : int, optional
        Items per batch; default: up to 32, bounded by a quarter of the free memory per worker
        (from the task's :meth:`~melinvert.engines.base.Task.item_bytes`).
    overwrite : bool
        Make every output again (an existing file is replaced once the new one is complete).
        Without it, outputs known finished from these inputs are skipped, others refused.
    progress : callable, optional
        Called with a :class:`~melinvert.engines.base.Progress` a few times a second and once
        with ``finished=True`` (e.g. :class:`~melinvert.engines.base.ProgressBar`).
    notice : callable, optional
        ``notice(line)`` for one-line notices (waiting for another run's files).

    Returns
    -------
    RunSummary
        Counts, failed files with reasons, ``interrupted`` and :attr:`~RunSummary.exit_code`.
    """
    jobs = check_jobs(jobs)
    cores = available_cores()
    workers = cores if workers is None else workers
    check(
        isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1,
        f"{workers=} must be >= 1",
    )
    check(batch is None or (isinstance(batch, int) and batch >= 1), f"{batch=} must be an integer >= 1")
    ledger = Ledger(manifest, task, overwrite=overwrite, engine="local")
    ledger.prepare(jobs)
    executor = _Inline(task) if workers == 1 else _Pool(task, workers, max(1, cores // workers))
    r = _Run(task, ledger, executor, batch=batch, budget=_memory_budget(workers))
    r.todo.extend(jobs)
    r.notice = notice
    interrupted = False
    with stop_signals() as stop:
        try:
            r.loop(progress)
        except KeyboardInterrupt:
            interrupted = True
            ledger.summary.interrupted = stop.name or "SIGINT"
        finally:
            with _shielded():
                r.shutdown(interrupted=interrupted)
                ledger.abandon_all()
                ledger.close()
    return _finish(ledger, progress)


def _finish(ledger: Ledger, progress: ProgressCallback | None) -> RunSummary:
    s = ledger.summary
    s.not_run = s.files - s.done - s.skipped - len(s.failed)
    if progress is not None:
        p = ledger.progress()
        p.finished = True
        progress(p)
    return s

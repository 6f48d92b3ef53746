"""The Ray engine (``pip install 'melinvert[ray]'``): the local engine's contract on a cluster.

:func:`run` claims and judges every job on the driver (the same manifest, claims and skipping
as :func:`melinvert.engines.local.run`), then streams the jobs to do through a Ray Data
pipeline: ``from_items(jobs)`` -> ``map_batches`` with a pool of actors, each calling
``task.setup()`` once (one model per actor, one GPU per actor when the cluster has GPUs), and
each loading its batch, processing it grouped by length and writing every output atomically
into the output folder. The driver appends the manifest records as results stream back.

On a cluster the input and output folders must be visible at the same paths on every node (a
shared file system); the driver keeps the manifest and the claims.

Start a cluster with ``ray start --head`` on one machine and ``ray start --address HEAD:6379``
on the others, then pass ``address="auto"`` (on a cluster node) or ``"ray://HEAD:10001"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from ..errors import MelinvertError, check
from .base import Job, ProgressCallback, RunSummary, Task, check_jobs, one_line
from .local import _finish, _shielded, process_batch, stop_signals
from .manifest import Ledger, Manifest, fingerprint


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MelinvertError(
            "the Ray engine needs Ray: pip install 'melinvert[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


class _Actor:
    """One Ray actor: the task set up once; batches of jobs loaded, processed, written."""

    def __init__(self, task: Task, threads: int):
        from .local import set_threads

        set_threads(threads)
        self.task = task
        self.task.setup()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [Job(i, o) for i, o in zip(batch["input"], batch["output"])]
        results: dict[int, dict[str, Any]] = {}
        loaded = []
        for k, job in enumerate(rows):
            t0 = time.perf_counter()
            try:
                fp = fingerprint(job.input)
                item = self.task.load(job)
                loaded.append((k, job, item, fp, time.perf_counter() - t0))
            except Exception as e:
                results[k] = {"status": "failed", "error": one_line(e)}
        loaded.sort(key=lambda r: self.task.item_length(r[2]))  # similar lengths together
        if loaded:
            outs, seconds = process_batch(self.task, [r[2] for r in loaded])
            share = seconds / len(loaded)
            for (k, job, item, fp, load_s), (ok, out) in zip(loaded, outs):
                results[k] = self._write(job, item, fp, ok, out, load_s + share)
        keys = ("status", "error", "audio_s", "wall_s", "fp", "out_fp", "notices")
        return {
            "i": list(batch["i"]),
            **{key: [json.dumps(results[k].get(key)) for k in range(len(rows))] for key in keys},
        }

    def _write(self, job: Job, item: Any, fp: dict, ok: bool, out: Any, spent: float) -> dict[str, Any]:
        if not ok:
            return {"status": "failed", "error": out}
        t0 = time.perf_counter()
        try:
            notices = self.task.write(job, out)
            return {
                "status": "ok",
                "audio_s": self.task.item_seconds(item),
                "wall_s": spent + time.perf_counter() - t0,
                "fp": fp,
                "out_fp": fingerprint(job.output),
                "notices": notices,
            }
        except Exception as e:
            return {"status": "failed", "error": one_line(e)}


def _stat(path: os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _pipeline(ray: Any, todo: list[Job], task: Task, *, actors: int | None, batch: int | None) -> Any:
    """The Ray Data pipeline over ``todo``: an iterator of result rows."""
    res = ray.cluster_resources()
    cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
    node_cpus = max([int(n.get("Resources", {}).get("CPU", 1)) for n in ray.nodes() if n.get("Alive")] or [1])
    size = actors or max(1, min(gpus or cpus, len(todo)))
    # one CPU per actor by default (no oversubscription); fewer actors than CPUs get more threads
    threads = 1 if gpus or actors is None else max(1, min(cpus // size, node_cpus))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the engine's own progress covers the run
    ds = ray.data.from_items(
        [{"i": k, "input": str(j.input), "output": str(j.output)} for k, j in enumerate(todo)]
    )
    ds = ds.map_batches(
        _Actor,
        fn_constructor_args=(task, threads),  # Ray's cloudpickle carries it (by value for __main__)
        batch_size=batch or 16,
        compute=ray.data.ActorPoolStrategy(size=size),
        num_cpus=0 if gpus else threads,
        num_gpus=1 if gpus else 0,
        batch_format="numpy",
    )
    return ds.iter_rows()


def run(
    jobs: Sequence[Job],
    task: Task,
    *,
    manifest: Manifest,
    address: str | None = None,
    actors: int | None = None,
    batch: int | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    notice: Any = None,
) -> RunSummary:
    """Run ``task`` over ``jobs`` with Ray Data: the contract of :func:`melinvert.engines.local.run`.

    Parameters
    ----------
    jobs, task, manifest, batch, overwrite, progress, notice :
        As :func:`melinvert.engines.local.run` (``batch``: jobs per actor call, default 16).
    address : str, optional
        None starts a local Ray runtime (or uses the one this process already joined);
        ``"auto"`` or ``"ray://HOST:10001"`` joins a running cluster.
    actors : int, optional
        Actors in the pool; default one per GPU of the cluster, else one per CPU.

    Returns
    -------
    RunSummary
    """
    ray = _require_ray()
    jobs = check_jobs(jobs)
    check(actors is None or (isinstance(actors, int) and actors >= 1), f"{actors=} must be >= 1")
    ledger = Ledger(manifest, task, overwrite=overwrite, engine="ray")
    ledger.prepare(jobs)
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    before: dict[Job, tuple[int, int] | None] = {}
    with stop_signals() as stop:
        try:
            pending = list(jobs)
            while pending:
                pending = _round(
                    ray, pending, task, ledger, before, actors=actors, batch=batch, progress=progress
                )
                if pending:
                    if notice is not None:
                        notice(f"waiting for {len(pending)} files another run is making")
                    time.sleep(0.5)
        except KeyboardInterrupt:
            ledger.summary.interrupted = stop.name or "SIGINT"
        except Exception as e:  # the pipeline itself failed (an actor died, the cluster went away)
            reason = f"the Ray pipeline failed: {one_line(e)}"
            for job in list(ledger.claims):
                ledger.finish_failed(job, reason)
        finally:
            with _shielded():
                if started:
                    ray.shutdown()  # stops the actors: nothing more is written
                _release_untouched(ledger, before)
                ledger.close()
    return _finish(ledger, progress)


def _round(
    ray: Any,
    jobs: list[Job],
    task: Task,
    ledger: Ledger,
    before: dict[Job, Any],
    *,
    actors: int | None,
    batch: int | None,
    progress: ProgressCallback | None,
) -> list[Job]:
    """Judge ``jobs``, run those to make; return those another live run holds."""
    todo, busy = [], []
    for job in jobs:
        state = ledger.begin(job)
        if state == "todo":
            before[job] = _stat(job.output)
            todo.append(job)
        elif state == "busy":
            busy.append(job)
    if todo:
        last = 0.0
        for row in _pipeline(ray, todo, task, actors=actors, batch=batch):
            job = todo[int(row["i"])]
            r = {
                k: json.loads(row[k])
                for k in ("status", "error", "audio_s", "wall_s", "fp", "out_fp", "notices")
            }
            if r["status"] == "ok":
                ledger.finish_ok(
                    job,
                    r["fp"],
                    audio_s=r["audio_s"],
                    wall_s=r["wall_s"],
                    notices=r["notices"],
                    output_fp=r["out_fp"],
                )
            else:
                ledger.finish_failed(job, r["error"])
            if progress is not None and time.perf_counter() - last > 0.25:
                last = time.perf_counter()
                progress(ledger.progress())
    return busy


def _release_untouched(ledger: Ledger, before: dict[Job, Any]) -> None:
    """After an interruption: release the claims of outputs no actor touched; keep (stale, to be
    redone by the next run) those an actor may have replaced without a manifest record."""
    for job in list(ledger.claims):
        if _stat(job.output) == before.get(job):
            ledger.abandon(job)
        else:
            with contextlib.suppress(KeyError):
                del ledger.claims[job]

"""Jobs one at a time in this process, each streamed by a caller's function, under the engines' rules.

Some files are better made alone than batched: a mel longer than one block of the pipeline
(inverted block by block into an :class:`~melinvert.io.AudioWriter`, so memory holds one
block, not the file) or a long recording (its mel computed block by block). :func:`run_streamed`
runs such jobs with the same claims, the same known-finished decision, the same manifest
records (one per file, the same provenance: the task's digest) and the same
:class:`~melinvert.engines.base.RunSummary` as :func:`melinvert.engines.local.run`, so that a
file made here is skipped by a batched rerun and the other way round.

The caller's ``make(job, report)`` reads ``job.input``, writes ``job.output`` atomically, calls
``report(seconds)`` with the audio seconds made so far in this file (for the progress bar) and
returns ``(audio seconds, notices)``. On Ctrl-C or SIGTERM it may publish a best estimate at
the output and raise :class:`PartialWritten`: the manifest then records a ``partial`` output,
which the next run from the same input redoes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import MelinvertError
from .base import Job, Progress, ProgressCallback, RunSummary, Task, check_jobs, one_line
from .local import _finish, _shielded, stop_signals
from .manifest import Ledger, Manifest, fingerprint

#: ``make(job, report) -> (audio seconds, notices)``; ``report(seconds made so far in this file)``.
Maker = Callable[[Job, Callable[[float], None]], tuple[float, list[str]]]


class PartialWritten(KeyboardInterrupt):
    """Raised by a maker interrupted after it published a best estimate at the job's output.

    Parameters
    ----------
    audio_s : float
        Seconds of audio the estimate covers.
    notices : list of str
        The writer's notices (clipping).
    """

    def __init__(self, audio_s: float, notices: list[str] | None = None):
        super().__init__(f"partial output of {audio_s:.1f} s")
        self.audio_s = audio_s
        self.notices = list(notices or [])


def run_streamed(
    jobs: Sequence[Job],
    task: Task,
    make: Maker,
    *,
    manifest: Manifest,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    notice: Any = None,
) -> RunSummary:
    """Run ``make`` over ``jobs`` one at a time in this process, as an engine would.

    Parameters
    ----------
    jobs : sequence of Job
    task : Task
        Only its :meth:`~melinvert.engines.base.Task.describe` and ``summary`` are used (the
        provenance recorded with each output): pass the task the batched engine gets.
    make : callable
        See :data:`Maker` and the module docstring.
    manifest, overwrite, progress, notice :
        As :func:`melinvert.engines.local.run`. ``progress`` also gets a snapshot whenever
        ``make`` reports (the file in hand counted by its seconds made so far).

    Returns
    -------
    RunSummary
    """
    jobs = check_jobs(jobs)
    ledger = Ledger(manifest, task, overwrite=overwrite, engine="stream")
    ledger.prepare(jobs)
    with stop_signals() as stop:
        try:
            _loop(jobs, make, ledger, progress, notice)
        except KeyboardInterrupt:
            ledger.summary.interrupted = stop.name or "SIGINT"
        finally:
            with _shielded():
                ledger.abandon_all()
                ledger.close()
    return _finish(ledger, progress)


def _loop(
    jobs: list[Job], make: Maker, ledger: Ledger, progress: ProgressCallback | None, notice: Any
) -> None:
    pending, said = list(jobs), False
    while pending:
        busy = []
        for job in pending:
            state = ledger.begin(job)
            if state == "busy":
                busy.append(job)
            elif state == "todo":
                _one(job, make, ledger, progress)
        if busy:
            if not said and notice is not None:
                notice(
                    f"waiting for {len(busy)} files another run is making, e.g. "
                    + ledger.busy_reason(busy[0])
                )
                said = True
            time.sleep(0.3)
        pending = busy


def _one(job: Job, make: Maker, ledger: Ledger, progress: ProgressCallback | None) -> None:
    """Make one claimed job and record it (ok, failed or partial)."""
    t0 = time.perf_counter()
    last = [0.0]

    def report(seconds: float) -> None:
        if progress is not None and time.perf_counter() - last[0] > 0.1:
            last[0] = time.perf_counter()
            p: Progress = ledger.progress()
            p.audio_s += seconds
            progress(p)

    try:
        fp = fingerprint(job.input)
    except OSError as e:
        ledger.finish_failed(job, f"cannot read {str(job.input)!r}: {e.strerror or e}")
        return
    try:
        audio_s, notices = make(job, report)
    except PartialWritten as p:
        ledger.finish_partial(job, fp, audio_s=p.audio_s, wall_s=time.perf_counter() - t0, notices=p.notices)
        raise
    except KeyboardInterrupt:
        raise  # the claim is released by abandon_all: the next run makes the file
    except Exception as e:
        ledger.finish_failed(job, one_line(e), wall_s=time.perf_counter() - t0)
        return
    try:
        ledger.finish_ok(job, fp, audio_s=audio_s, wall_s=time.perf_counter() - t0, notices=notices)
    except (MelinvertError, OSError) as e:
        ledger.finish_failed(job, one_line(e))
    if progress is not None:
        progress(ledger.progress())

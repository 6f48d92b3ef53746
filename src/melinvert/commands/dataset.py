"""What ``invert`` and ``mel`` share for runs over many files: the engine options, the run
manifest, one progress bar, the summary and the exit status.

A run's jobs split in two: files made alone, streamed block by block in this process (a long
file, or the only one: bounded memory, and Ctrl-C keeps the best estimate), and the rest,
batched across files by an engine (:func:`melinvert.engines.local.run` on this machine's
cores, or :func:`melinvert.engines.ray_engine.run` with ``--ray``). Both go through the same
manifest (``melinvert-manifest.jsonl`` in the output folder; for one output file, its folder)
and the same claims, so a file made by either is known finished to both.

The manifest is the machine-readable log of batch jobs: one JSON object per file and run
(status ``ok``/``failed``/``skipped``/``partial``, input, output, audio seconds, wall
seconds, error, notices, the run's id, provenance); the summary names it.

Exit statuses: 0 every file done; 2 bad usage (nothing ran), or the failure of the only input
file (one ``melinvert: error:`` line); 3 some files of a run over several failed (each named
with its reason at the end, the others done); 130 Ctrl-C, 143 SIGTERM (rerun to finish).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MelinvertError, check
from .common import Console, Terminated

if TYPE_CHECKING:
    from ..engines.base import Job, Progress, RunSummary, Task
    from ..engines.stream import Maker

#: Notices printed at the end of a run over many files; the rest are in the manifest.
MAX_NOTICES = 20


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return v


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--workers N``, ``--batch N`` and ``--ray [ADDRESS]`` for commands over many files."""
    g = parser.add_argument_group("many files")
    g.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="worker processes (default: one per core this process may use, at most one per file; 1 runs "
        "in this process); with --ray, the number of actors",
    )
    g.add_argument(
        "--batch",
        type=positive_int,
        metavar="N",
        help="files processed together (default: up to 32 of similar length, bounded by free memory)",
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help='run on Ray (pip install "melinvert[ray]"): bare --ray starts a local runtime, --ray=auto or '
        "--ray=ray://HEAD:10001 joins a cluster (inputs and outputs on a file system every node sees)",
    )


def run_files(
    args: argparse.Namespace,
    ui: Console,
    jobs: Sequence[Job],
    task: Task,
    *,
    alone: Callable[[Job], bool],
    make: Maker,
    what: str,
    bar: str = "always",
    detail: Callable[[Path], str] | None = None,
) -> int:
    """Run ``task`` over ``jobs``: the long ones (``alone(job)``) and a lone file through
    ``make`` in this process, the others through the chosen engine; report; the exit status.

    Parameters
    ----------
    args : argparse.Namespace
        With ``inputs``, ``output``, ``overwrite``, ``quiet``, ``workers``, ``batch``, ``ray``.
    jobs : sequence of Job
        From :func:`melinvert.engines.plan.plan_jobs`.
    task : Task
        What the engine runs; its description is every output's recorded recipe.
    alone : callable
        Whether a job is streamed alone (called once per job, before any work).
    make : Maker
        How a job is streamed (see :mod:`melinvert.engines.stream`).
    what : str
        The progress bar's label, e.g. ``"inverting"``.
    bar : {"always", "terminal"}
        When to show the progress bar (never with ``--quiet``): always, or only when stderr is
        a terminal.
    detail : callable, optional
        ``detail(output) -> str`` appended to the ``IN -> OUT`` line of a file made (``""``
        when there is nothing to add).
    """
    from ..engines import Manifest
    from ..engines.base import ProgressBar
    from ..io import check_output

    single = len(jobs) == 1 and len(args.inputs) == 1 and Path(args.inputs[0]).is_file()
    check_engine(args)
    out = Path(args.output)
    folder = jobs[0].output.parent if single and jobs[0].output == out else out
    manifest = Manifest.in_folder(folder)
    check_output(manifest.path, overwrite=True)  # a file where the output folder should be
    if single:
        check_output(jobs[0].output, overwrite=True, protect=[jobs[0].input])
    created = _missing_folders(folder)
    had_manifest = manifest.path.exists()
    streamed = [j for j in jobs if single or alone(j)]
    batched = [j for j in jobs if not (single or alone(j))]
    show = not args.quiet and (bar == "always" or sys.stderr.isatty())
    progress = _Bar(ProgressBar(what, enabled=show), len(jobs))
    notice = ui.note
    summaries: list[RunSummary] = []
    try:
        if batched:
            summaries.append(_run_engine(args, batched, task, manifest, progress, notice))
        if streamed and not (summaries and summaries[0].interrupted):
            from ..engines.stream import run_streamed

            progress.base = summaries[0] if summaries else None
            summaries.append(
                run_streamed(
                    streamed,
                    task,
                    make,
                    manifest=manifest,
                    overwrite=args.overwrite,
                    progress=progress,
                    notice=notice,
                )
            )
    finally:
        progress.close()
    summary = merge(summaries, len(jobs))
    if single and summary.failed:
        _remove_created(manifest.path, had_manifest, created)
        raise MelinvertError(summary.failed[0][2])
    _report(ui, summary, manifest.path, single=single, quiet=args.quiet, detail=detail)
    if summary.interrupted:
        raise Terminated() if summary.interrupted == "SIGTERM" else KeyboardInterrupt()
    return summary.exit_code


def _run_engine(
    args: argparse.Namespace, jobs: list[Job], task: Task, manifest: Any, bar: _Bar, notice: Any
) -> RunSummary:
    if args.ray is not None:
        from ..engines import ray_engine

        address = None if args.ray == "local" else args.ray
        return ray_engine.run(
            jobs,
            task,
            manifest=manifest,
            address=address,
            actors=args.workers,
            batch=args.batch,
            overwrite=args.overwrite,
            progress=bar,
            notice=notice,
        )
    from ..engines import local
    from ..engines.base import available_cores

    workers = args.workers or max(1, min(available_cores(), len(jobs)))
    return local.run(
        jobs,
        task,
        manifest=manifest,
        workers=workers,
        batch=args.batch,
        overwrite=args.overwrite,
        progress=bar,
        notice=notice,
    )


class _Bar:
    """One progress bar over both parts of a run: the engine's snapshots, then the streamed
    files' snapshots counted on top of the engine's totals (``base``)."""

    def __init__(self, bar: Any, files: int):
        self.bar, self.files = bar, files
        self.base: RunSummary | None = None

    def __call__(self, p: Progress) -> None:
        from dataclasses import replace

        b = self.base
        q = replace(p, files_total=self.files, finished=False)
        if b is not None:
            q.files_done += b.done
            q.files_failed += len(b.failed)
            q.files_skipped += b.skipped
            q.audio_s += b.audio_s
            q.elapsed_s += b.wall_s
        self.bar(q)

    def close(self) -> None:
        self.bar.bar.close()


def merge(summaries: Sequence[RunSummary], files: int) -> RunSummary:
    """One summary of a run made of several parts (the engine's, the streamed files')."""
    from ..engines.base import RunSummary

    s = RunSummary(files=files)
    for p in summaries:
        s.done += p.done
        s.skipped += p.skipped
        s.failed.extend(p.failed)
        s.audio_s += p.audio_s
        s.wall_s += p.wall_s
        s.made.extend(p.made)
        s.notices.extend(p.notices)
        s.interrupted = s.interrupted or p.interrupted
    s.not_run = files - s.done - s.skipped - len(s.failed)
    return s


def _report(
    ui: Console,
    s: RunSummary,
    manifest: Path,
    *,
    single: bool,
    quiet: bool,
    detail: Callable[[Path], str] | None,
) -> None:
    """Outputs made on stdout; notices, skips, the counts and every failure on stderr."""
    for src, dst in s.made:
        extra = detail(dst) if detail is not None else ""
        ui.out(f"{src} -> {dst}" + (f" {extra}" if extra else ""))
    shown = s.notices if single else s.notices[:MAX_NOTICES]
    for n in shown:
        ui.note(n)
    if len(s.notices) > len(shown):
        ui.note(f"{len(s.notices) - len(shown)} more notices are in the run manifest {str(manifest)!r}")
    if s.skipped:
        ui.note(
            f"skipped {s.skipped} {'file' if s.skipped == 1 else 'files'} finished earlier from the same "
            "input with the same settings (the run manifest says so; --overwrite redoes them)"
        )
    if single:
        return
    lines = s.lines()
    if s.failed or s.interrupted or not quiet:
        ui.note(f"{lines[0]}; run manifest (JSON lines): {manifest}")
    for line in lines[1:]:
        ui.error(line)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    p = folder.absolute()
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


def _remove_created(manifest: Path, had_manifest: bool, folders: list[Path]) -> None:
    """After the only file failed: leave nothing this run created (its manifest, its folders)."""
    if not had_manifest:
        with contextlib.suppress(OSError):
            os.unlink(manifest)
    for f in folders:
        with contextlib.suppress(OSError):
            f.rmdir()


def check_engine(args: argparse.Namespace) -> None:
    """Usage errors of the engine options, before any planning: ``--ray`` without Ray
    installed (one line: ``pip install "melinvert[ray]"``), or ``--ray`` given an existing
    path (an input swallowed as its address: ``--ray IN...``)."""
    text = args.ray
    if text is None:
        return
    check(
        text == "local" or not os.path.exists(text),
        f"--ray took {text!r} as a cluster address; put --ray after the inputs or write --ray=ADDRESS",
    )
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MelinvertError('--ray needs Ray: pip install "melinvert[ray]"') from None

"""What every engine shares: jobs, the task contract, progress, the run summary and exit codes.

An engine runs a :class:`Task` over many :class:`Job` (one input file -> one output file):

* ``task.setup()`` once per worker process or actor (load models, build filterbanks);
* ``task.load(job) -> item`` in a read-ahead thread (a one-line
  :class:`~melinvert.errors.MelinvertError` for a bad file fails that file only);
* ``task.process(items) -> outputs`` on a batch of items of similar length (``len(outputs) ==
  len(items)``, each equal to processing its item alone);
* ``task.write(job, output) -> notices`` atomically (a temporary file and a rename), behind.

Exit statuses for the command line (:attr:`RunSummary.exit_code`):

====  ===============================================================================
0     every file done (made now, or known finished by an earlier run)
2     bad usage: nothing ran (a MelinvertError before the run; raised, not returned)
3     the run went through, but some files failed or were refused (named in the summary)
130   interrupted by SIGINT (Ctrl-C); 143 by SIGTERM: nothing half-written, rerun to finish
====  ===============================================================================

1 stays "internal error" (a bug). 3 is kept apart from 2 so that a script can tell "fix the
command" from "look at the failed files", and from 1 so that a bad file is never reported as
a bug.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: Every file done.
EXIT_OK = 0
#: Bad usage: nothing ran.
EXIT_USAGE = 2
#: Some files failed or were refused; the others are done.
EXIT_SOME_FAILED = 3
#: Stopped by SIGINT.
EXIT_INTERRUPTED = 130
#: Stopped by SIGTERM.
EXIT_TERMINATED = 143


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file and the output file made from it."""

    input: Path
    output: Path

    def __post_init__(self) -> None:
        if not isinstance(self.input, Path):
            object.__setattr__(self, "input", Path(self.input))
        if not isinstance(self.output, Path):
            object.__setattr__(self, "output", Path(self.output))


class Task:
    """The work of one job kind; subclasses must be picklable (they travel to workers and actors).

    Subclasses implement :meth:`load`, :meth:`process`, :meth:`write` and :meth:`describe`; the
    sizing methods have defaults from the arrays' sizes.
    """

    #: Short name recorded in the manifest, e.g. ``"invert"``.
    name = "task"

    def describe(self) -> dict[str, Any]:
        """Everything that decides the outputs (method, config, seed, format, model): JSON-safe."""
        raise NotImplementedError

    def summary(self) -> str:
        """One short phrase for messages, e.g. ``"invert, method fast, hifigan-22k-80"``."""
        return self.name

    def setup(self) -> None:
        """Once per worker process or actor, before any :meth:`process`."""

    def load(self, job: Job) -> Any:
        """Read and validate the job's input; raise MelinvertError for a bad file."""
        raise NotImplementedError

    def process(self, items: list[Any]) -> list[Any]:
        """Outputs for a batch of items, each equal to processing it alone."""
        raise NotImplementedError

    def write(self, job: Job, output: Any) -> list[str]:
        """Write ``output`` to ``job.output`` atomically (an existing file is replaced only
        when complete); return notices (e.g. clipping)."""
        raise NotImplementedError

    def item_length(self, item: Any) -> int:
        """Grouping key: items of equal length batch together best."""
        return int(item.shape[-1])

    def item_bytes(self, item: Any) -> int:
        """Estimated working memory of processing the item, in bytes (bounds the batch)."""
        return int(item.nbytes) * 8

    def item_seconds(self, item: Any) -> float:
        """Seconds of audio the item stands for (progress, manifest)."""
        return 0.0


@dataclasses.dataclass
class Progress:
    """Where a run stands, given to the progress callback (at most a few times a second)."""

    files_total: int
    files_done: int = 0
    files_failed: int = 0
    files_skipped: int = 0
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    finished: bool = False

    @property
    def x_real_time(self) -> float:
        """Audio seconds made per wall second."""
        return self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left, from the mean audio per file made so far and the rate (None until known)."""
        left = self.files_total - self.files_done - self.files_failed - self.files_skipped
        if self.files_done == 0 or self.audio_s <= 0:
            return None
        return left * (self.audio_s / self.files_done) / max(self.x_real_time, 1e-9)


ProgressCallback = Callable[[Progress], None]


class ProgressBar:
    """A tqdm bar over audio seconds for the whole run: files done/failed, x real time, ETA.

    Pass an instance as ``progress=``; call :meth:`close` at the end (the engines do when they
    get ``finished``).
    """

    def __init__(self, desc: str = "files", *, file: Any = None, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(
            total=None,
            unit="s",
            desc=desc,
            file=file or sys.stderr,
            disable=not enabled,
            bar_format="{desc}: {n:.1f} s audio [{elapsed}{postfix}]",
        )

    def __call__(self, p: Progress) -> None:
        eta = p.eta_s
        eta_s = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        failed = f", {p.files_failed} failed" if p.files_failed else ""
        skipped = f", {p.files_skipped} skipped" if p.files_skipped else ""
        self.bar.set_postfix_str(
            f"{p.files_done}/{p.files_total} files{failed}{skipped}, {p.x_real_time:.1f}x real time, ETA {eta_s}",
            refresh=False,
        )
        self.bar.update(p.audio_s - self.bar.n)
        if p.finished:
            self.bar.close()


@dataclasses.dataclass
class RunSummary:
    """The result of a run: counts, the failed files with their reasons, the exit status."""

    files: int
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Path, Path, str]] = dataclasses.field(default_factory=list)
    not_run: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    interrupted: str | None = None  # "SIGINT" or "SIGTERM"
    #: ``(input, output)`` of every file made by this run, in the order they were finished.
    made: list[tuple[Path, Path]] = dataclasses.field(default_factory=list)
    #: Notices of the files made (clipping, resampling, clamping), one line each.
    notices: list[str] = dataclasses.field(default_factory=list)

    @property
    def status(self) -> str:
        """``"done"``, ``"failed"`` (some files) or ``"interrupted"``."""
        if self.interrupted:
            return "interrupted"
        return "failed" if self.failed else "done"

    @property
    def exit_code(self) -> int:
        """0 all done, 3 some failed, 130 SIGINT, 143 SIGTERM (see the module docstring)."""
        if self.interrupted:
            return EXIT_TERMINATED if self.interrupted == "SIGTERM" else EXIT_INTERRUPTED
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def lines(self) -> list[str]:
        """A human summary: one line of counts, then one line per failed file."""
        head = (
            f"{self.done} made, {self.skipped} already finished, {len(self.failed)} failed"
            + (f", {self.not_run} not run ({self.interrupted})" if self.interrupted else "")
            + f" of {self.files} files; {self.audio_s:.1f} s of audio in {self.wall_s:.1f} s"
        )
        return [head] + [f"failed: {src}: {reason}" for src, _, reason in self.failed]


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def one_line(e: BaseException, limit: int = 240) -> str:
    """An exception as one line: MelinvertError's own message; anything else named as internal."""
    from ..errors import MelinvertError

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    line = text.splitlines()[0].strip() if text else ""
    if not isinstance(e, MelinvertError):
        line = f"internal error ({type(e).__name__}{': ' + line if line else ''})"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def check_jobs(jobs: Sequence[Job]) -> list[Job]:
    """Jobs as a list, each a :class:`Job` (pairs are converted)."""
    from ..errors import check

    out = [j if isinstance(j, Job) else Job(*j) for j in jobs]
    check(all(isinstance(j, Job) for j in out), "jobs must be Job(input, output) pairs")
    return out

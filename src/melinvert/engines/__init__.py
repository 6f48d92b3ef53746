"""How many files run: the embedded local engine, Ray for clusters, and what they share.

* :mod:`.plan`: inputs -> :class:`Job` (input, output) pairs, checked in linear time.
* :mod:`.manifest`: the run manifest, per-file claims and the "known finished" decision.
* :mod:`.local`: :func:`run` on this machine (worker processes, batches, read-ahead, writer).
* :mod:`.ray_engine`: the same ``run`` contract on a Ray cluster (``melinvert[ray]``).
* :mod:`.tasks`: :class:`InvertTask` (mel -> audio) and :class:`MelTask` (audio -> mel).
* :mod:`.base`: the task contract, progress, the summary and the exit statuses.

Nothing here parses arguments: the command line builds jobs, a task and a manifest and calls
``run``.
"""

from __future__ import annotations

from .base import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Job,
    Progress,
    ProgressBar,
    RunSummary,
    Task,
)
from .manifest import MANIFEST_NAME, Manifest, read_manifest
from .plan import plan_jobs

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "MANIFEST_NAME",
    "Job",
    "Manifest",
    "Progress",
    "ProgressBar",
    "RunSummary",
    "Task",
    "plan_jobs",
    "read_manifest",
]

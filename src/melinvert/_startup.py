"""Ctrl-C while the command line is still loading: one line and exit status 130, no traceback.

:mod:`melinvert` calls :func:`guard` before its imports when the process is the ``melinvert``
command (:func:`is_cli`); :mod:`melinvert.commands` calls :func:`release` once its modules are
loaded, and from then on :func:`melinvert.commands.main` handles interrupts. The guard is only set
when SIGINT has Python's default handler, in the main thread (a program that ignores SIGINT,
or handles it itself, keeps its own behaviour).
"""

from __future__ import annotations

import os
import signal
import sys

_installed = False


def _interrupted(signum: int, frame: object) -> None:
    try:
        sys.stderr.write("melinvert: error: interrupted\n")
        sys.stderr.flush()
    finally:
        os._exit(130)  # nothing is written while loading: nothing to clean up


def guard() -> None:
    """Answer SIGINT with the one-line message and 130 until :func:`release`."""
    global _installed
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted)
            _installed = True
    except ValueError:  # not the main thread
        pass


def release() -> None:
    """Give SIGINT back to Python's default handler (``KeyboardInterrupt``)."""
    global _installed
    if _installed:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _installed = False


def is_cli() -> bool:
    """Whether this process is the ``melinvert`` command (the script, or ``python -m melinvert``
    while it loads)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name in ("melinvert", "melinvert.exe", "-m")

"""The command line's old home, kept so that ``melinvert.cli:main`` (the console script) and
``from melinvert.cli import main`` keep working: everything lives in :mod:`melinvert.commands`."""

from __future__ import annotations

from .commands import main

__all__ = ["main"]

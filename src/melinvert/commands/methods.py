"""``melinvert methods``: list the inversion methods and their stages."""

from __future__ import annotations

import argparse

from .common import Command, Console


def cmd_methods(args: argparse.Namespace, ui: Console) -> int:
    """List the inversion methods and stages."""
    from ..pipeline import list_methods

    items = list_methods()
    width = max(len(k) for k in items)
    for k, v in items.items():
        ui.out(f"{k:<{width}}  {v}")
    return 0


COMMAND = Command(
    "methods", cmd_methods, "list the inversion methods and their stages", examples=("melinvert methods",)
)

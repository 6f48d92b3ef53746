"""``melinvert presets``: list the built-in configurations, or show one in full."""

from __future__ import annotations

import argparse

from ..errors import check
from .common import Command, Console, arg


def short_project(text: str) -> str:
    """The project's name for the table: ``text`` up to its first ``:``, ``,`` or ``;`` followed
    by a space outside parentheses, so a row never ends inside a parenthesis."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch in ":,;" and depth == 0 and text[i + 1 : i + 2] == " ":
            return text[:i]
    return text


def cmd_presets(args: argparse.Namespace, ui: Console) -> int:
    """List the presets, or show one in full."""
    from ..config import PRESETS, get_preset

    if args.name:
        cfg = get_preset(args.name)
        preset = PRESETS[args.name]
        if args.json:
            ui.out(cfg.to_json())
            return 0
        ui.out(f"{preset.name}: {cfg.describe()}")
        ui.out(f"project: {preset.project}")
        ui.out(f"source: {preset.source}")
        if preset.notes:
            ui.out(f"notes: {preset.notes}")
        ui.out("config (save with 'melinvert presets NAME --json > FILE.json'):")
        ui.out(cfg.to_json())
        return 0
    check(not args.json, "--json needs a preset NAME")
    header = ("name", "rate", "n_fft", "hop", "n_mels", "fmin-fmax", "compression", "project")
    rows = [header]
    for name, p in PRESETS.items():
        c = p.config
        rows.append(
            (
                name,
                str(c.sample_rate),
                str(c.n_fft),
                str(c.hop_length),
                str(c.n_mels),
                f"{c.fmin:g}-{c.fmax_hz:g}",
                c.compression.short(),
                short_project(p.project),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        cells = [
            r[i].ljust(widths[i]) if i in (0, 5, 6) else r[i].rjust(widths[i]) for i in range(len(widths))
        ]
        ui.out("  ".join([*cells, r[-1]]))
    return 0


COMMAND = Command(
    "presets",
    cmd_presets,
    "list the built-in configurations, or show one in full",
    options=(
        arg("name", nargs="?", metavar="NAME", help="show this preset in full"),
        arg("--json", action="store_true", help="print only the config JSON (for --config)"),
    ),
    examples=("melinvert presets", "melinvert presets hifigan-22k-80 --json > hifigan.json"),
)

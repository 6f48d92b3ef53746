"""``melinvert presets``: list the built-in configurations, or show one in full."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from ..errors import check
from .common import Command, Console, arg

if TYPE_CHECKING:
    from ..config import MelConfig


def _short_compression(cfg: MelConfig) -> str:
    c = cfg.compression
    if c.kind in ("ln", "log10"):
        return f"{c.kind} {c.floor:.0e}".replace("e-0", "e-")
    if c.kind == "db":
        return f"dB floor {c.floor:.0e}" + (f" top {c.top_db:g}" if c.top_db else "")
    return c.kind


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
                _short_compression(c),
                re.split(r"[:,;] ", p.project)[0],
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

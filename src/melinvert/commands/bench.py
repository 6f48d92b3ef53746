"""``melinvert bench``: compare methods on the user's clips (the work is
:func:`melinvert.bench.run_bench`; this module parses and reports)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .common import (
    Command,
    Console,
    add_device,
    add_inputs,
    add_overwrite,
    add_required_config,
    arg,
    config_from_args,
    interrupted_status,
    seed_value,
)


def command_line(args: argparse.Namespace) -> str:
    """The command line: as typed when run from the ``melinvert`` script (or ``python -m
    melinvert``), else the ``melinvert bench`` command equivalent to ``args``."""
    argv = sys.argv
    script = os.path.basename(argv[0]) if argv else ""
    from_script = script == "melinvert" or (script == "__main__.py" and "melinvert" in argv[0])
    if from_script and len(argv) > 1 and argv[1] == "bench":
        return shlex.join(["melinvert", *argv[1:]])
    parts = ["melinvert", "bench", *[os.fspath(i) for i in args.inputs]]
    for flag in ("preset", "config", "stats"):
        if getattr(args, flag, None):
            parts += [f"--{flag}", os.fspath(getattr(args, flag))]
    parts += ["--methods", args.methods, "-o", os.fspath(args.output)]
    if args.with_librosa:
        parts.append("--with-librosa")
    if args.no_extras:
        parts.append("--no-extras")
    if args.seed != 0:
        parts += ["--seed", str(args.seed)]
    if args.device != "auto":
        parts += ["--device", args.device]
    if args.resume:
        parts.append("--resume")
    if args.overwrite:
        parts.append("--overwrite")
    return shlex.join(parts)


def cmd_bench(args: argparse.Namespace, ui: Console) -> int:
    """Run, report, and return 0 (130 after Ctrl-C, 143 after SIGTERM, 2 if no clip ran)."""
    from ..bench import INDEX_HTML, RESULTS_CSV, SUMMARY_MD, BenchSettings, run_bench
    from ..report import require_matplotlib

    require_matplotlib()
    cfg = config_from_args(args, required=True)
    assert cfg is not None
    from ..dsp import resolve_device

    resolve_device(args.device)  # a device this machine lacks: refused before anything is written
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    settings = BenchSettings(
        inputs=args.inputs,
        config=cfg,
        methods=methods,
        out_dir=Path(args.output),
        device=args.device,
        seed=args.seed,
        extras=not args.no_extras,
        with_librosa=args.with_librosa,
        resume=args.resume,
        overwrite=args.overwrite,
        command=command_line(args),
    )
    result = run_bench(settings, note=ui.note)
    out = settings.out_dir
    ui.out(result.summary)
    ui.out(
        f"{result.pairs_run} pairs run, {result.pairs_resumed} resumed, {len(result.skipped)} clips skipped; "
        f"wrote {out / RESULTS_CSV}, {out / SUMMARY_MD}, {out / INDEX_HTML}"
    )
    if result.interrupted:
        ui.error(f"interrupted: the page shows the finished pairs; rerun with --resume to finish ({out})")
        return interrupted_status()
    if not result.rows:
        ui.error(f"no clip could be benchmarked; see {out / SUMMARY_MD}")
        return 2
    return 0


COMMAND = Command(
    "bench",
    cmd_bench,
    "compare methods on your clips: results.csv, summary.md, figures and a listening page",
    options=(
        add_inputs,
        arg("-o", "--output", required=True, metavar="OUT_DIR", help="folder for results and page"),
        add_required_config,
        arg("--methods", default="default,fast", help="comma-separated methods (default: default,fast)"),
        arg("--with-librosa", action="store_true", help="add librosa's mel_to_audio as a reference row"),
        arg("--seed", type=seed_value, default=0, help="seed of the inversions (default 0)"),
        arg("--no-extras", action="store_true", help="skip PESQ and STOI"),
        arg("--resume", action="store_true", help="continue OUT_DIR, skipping finished pairs"),
        add_overwrite,
        add_device,
    ),
    examples=("melinvert bench speech/ --preset hifigan-22k-80 --methods default,fast -o bench/",),
)

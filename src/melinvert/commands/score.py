"""``melinvert score``: objective scores of an estimate against its reference."""

from __future__ import annotations

import argparse
import json
import os

from .common import (
    Command,
    Console,
    add_config_options,
    add_overwrite,
    add_threads,
    arg,
    config_from_args,
    fmt_metric,
    json_value,
    note_missing_extras,
)


def cmd_score(args: argparse.Namespace, ui: Console) -> int:
    """Objective scores of an estimate against its reference."""
    from ..io import check_output, load_audio, write_text
    from ..metrics import score

    cfg = config_from_args(args)
    protect = [args.reference, args.estimate]
    if args.json:
        check_output(args.json, overwrite=args.overwrite, protect=protect)
    ref, sr, notes = load_audio(args.reference, cfg.sample_rate if cfg is not None else None)
    est, _, notes2 = load_audio(args.estimate, sr)
    for n in notes + notes2:
        ui.note(n)
    result = score(ref, est, sr, config=cfg, extras=not args.no_extras, mos=args.mos)
    if args.mos:
        from ..metrics import mos_status

        for model, why in mos_status().items():
            if why:
                ui.note(f"{model}: {why}")
    width = max(len(k) for k in result)
    ui.out(f"{'reference':<{width}}  {args.reference}")
    ui.out(f"{'estimate':<{width}}  {args.estimate}")
    ui.out(f"{'sample_rate':<{width}}  {sr}")
    for k, v in result.items():
        ui.out(f"{k:<{width}}  {fmt_metric(v)}")
    note_missing_extras(ui, [result], not args.no_extras)
    if args.json:
        doc = {
            "reference": os.fspath(args.reference),
            "estimate": os.fspath(args.estimate),
            "sample_rate": sr,
            "config": cfg.to_dict() if cfg is not None else None,
            "metrics": {k: json_value(v) for k, v in result.items()},
        }
        write_text(
            args.json,
            json.dumps(doc, indent=2, allow_nan=False) + "\n",
            overwrite=args.overwrite,
            protect=protect,
        )
        ui.out(f"wrote {args.json}")
    return 0


COMMAND = Command(
    "score",
    cmd_score,
    "objective scores (PESQ, STOI, log-mel L1, ...) of an estimate against its reference",
    options=(
        arg("reference", metavar="REF", help="reference audio"),
        arg("estimate", metavar="DEG", help="estimate to score (resampled to the reference's rate)"),
        add_config_options,
        arg("--json", metavar="OUT.json", help="also write the scores as JSON"),
        arg("--no-extras", action="store_true", help="skip PESQ and STOI"),
        arg(
            "--mos",
            action="store_true",
            help="add no-reference MOS of the estimate (DistillMOS, DNSMOS; pip install 'melinvert[mos]')",
        ),
        add_overwrite,
        add_threads,
    ),
    description="Objective scores of an estimate against its reference. With --preset/--config, "
    "log-mel L1, spectral convergence and LSD use that config's STFT and mel band (as 'melinvert "
    "bench' does); without, a fixed 80-mel analysis up to Nyquist.",
    examples=("melinvert score ref.wav out.wav --preset hifigan-22k-80 --json scores.json",),
)

"""``melinvert roundtrip``: audio -> mel -> audio with one method, then the scores."""

from __future__ import annotations

import argparse

from ..errors import check
from .common import (
    Command,
    Console,
    add_device,
    add_method_options,
    add_output,
    add_overwrite,
    add_required_config,
    add_subtype,
    arg,
    config_from_args,
    print_scores,
)


def cmd_roundtrip(args: argparse.Namespace, ui: Console) -> int:
    """Audio -> mel -> audio with one method, then the score table."""
    import time

    from ..dsp import mel_spectrogram
    from ..io import check_output, load_audio, save_audio
    from ..metrics import score
    from ..pipeline import invert

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    check_output(args.output, overwrite=args.overwrite, protect=[args.input])
    y, sr, notes = load_audio(args.input, cfg.sample_rate)
    for n in notes:
        ui.note(n)
    check(
        y.shape[0] >= cfg.min_samples,
        f"{args.input!r} has {y.shape[0]} samples, fewer than the {cfg.min_samples} one frame needs",
    )
    mel = mel_spectrogram(y, cfg, device=args.device)
    t0 = time.perf_counter()
    out = invert(
        mel,
        cfg,
        method=args.method,
        n_iter=args.iters,
        seed=args.seed,
        device=args.device,
        length=len(y),
        model=args.model,
        strict_range=args.strict_range,
    )
    wall = time.perf_counter() - t0
    for n in save_audio(
        args.output,
        out,
        cfg.sample_rate,
        subtype=args.subtype,
        overwrite=args.overwrite,
        protect=[args.input],
    ):
        ui.note(n)
    ui.out(f"{args.input} -> {cfg.name or 'config'} mel -> {args.method} -> {args.output}")
    ui.out(f"{len(y) / sr:.2f} s of audio in {wall:.2f} s (real-time factor {len(y) / sr / wall:.1f}x)")
    print_scores(ui, [(args.method, score(y, out, sr, config=cfg, extras=not args.no_extras))])
    return 0


COMMAND = Command(
    "roundtrip",
    cmd_roundtrip,
    "audio -> mel -> audio with one method, then print the scores",
    options=(
        arg("input", metavar="AUDIO", help="audio file"),
        add_output,
        add_required_config,
        add_method_options,
        add_subtype,
        arg("--no-extras", action="store_true", help="skip PESQ and STOI"),
        add_overwrite,
        add_device,
    ),
    examples=("melinvert roundtrip speech.wav -o rt.wav --preset hifigan-22k-80 --method default",),
)

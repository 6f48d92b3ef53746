"""``melinvert demo``: a synthesised speech-like signal, its mel, its inversions and their scores."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    Command,
    Console,
    add_config_options,
    add_overwrite,
    arg,
    config_from_args,
    positive_seconds,
    print_scores,
    seed_value,
)


def cmd_demo(args: argparse.Namespace, ui: Console) -> int:
    """Synthesise a speech-like signal, write it, its mel and its inversions, and score them."""
    import time

    from ..config import get_preset
    from ..demo import speech_like
    from ..dsp import mel_spectrogram
    from ..io import check_output, save_audio, save_mel
    from ..metrics import score
    from ..pipeline import invert

    cfg = config_from_args(args) or get_preset("hifigan-22k-80")
    out = Path(args.output)
    methods = [m for m in args.methods.split(",") if m]
    files = [out / "original.wav", out / "original.mel.npy", *(out / f"{m}.wav" for m in methods)]
    for f in files:
        check_output(f, overwrite=args.overwrite)
    y = speech_like(cfg.sample_rate, seconds=args.seconds, seed=args.seed)
    save_audio(files[0], y, cfg.sample_rate, overwrite=args.overwrite)
    mel = mel_spectrogram(y, cfg)
    save_mel(files[1], mel, cfg, overwrite=args.overwrite)
    ui.out(
        f"wrote {files[0]} ({args.seconds:g} s speech-like signal) and its {cfg.name or ''} mel {files[1]}"
    )
    rows = []
    for m, f in zip(methods, files[2:]):
        t0 = time.perf_counter()
        est = invert(mel, cfg, method=m, seed=args.seed, length=len(y))
        wall = time.perf_counter() - t0
        save_audio(f, est, cfg.sample_rate, overwrite=args.overwrite)
        ui.out(f"wrote {f} ({m}: {wall:.2f} s, real-time factor {len(y) / cfg.sample_rate / wall:.0f}x)")
        rows.append((m, score(y, est, cfg.sample_rate, config=cfg)))
    print_scores(ui, rows)
    ui.note(
        "a synthesised signal: its PESQ swings from one --seed to the next, so compare methods on "
        "real speech (melinvert bench) or see the figures in benchmarks/RESULTS.md"
    )
    return 0


COMMAND = Command(
    "demo",
    cmd_demo,
    "synthesise a speech-like signal, invert its mel with default and fast, and score them",
    options=(
        arg(
            "-o",
            "--output",
            default="melinvert-demo",
            metavar="DIR",
            help="output folder (default melinvert-demo)",
        ),
        add_config_options,
        arg("--methods", default="default,fast", help="comma-separated methods (default: default,fast)"),
        arg("--seconds", type=positive_seconds, default=4.0, help="length of the signal (default 4)"),
        arg("--seed", type=seed_value, default=0, help="seed of the signal and the inversion"),
        add_overwrite,
    ),
    examples=("melinvert demo -o demo/",),
)

"""``melinvert mel``: audio files or folders -> mel files recording their config."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import check
from .common import (
    Command,
    Console,
    add_device,
    add_inputs,
    add_output,
    add_overwrite,
    add_required_config,
    add_threads,
    add_write_layout,
    arg,
    config_from_args,
    plan_jobs,
)


def cmd_mel(args: argparse.Namespace, ui: Console) -> int:
    """Audio files or folders -> mel files recording their config."""
    from ..dsp import mel_spectrogram
    from ..io import AUDIO_EXTENSIONS, MEL_EXTENSIONS, load_audio, save_mel

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    fmt = args.format
    if fmt is None:
        ext = Path(args.output).suffix.lower()
        single = len(args.inputs) == 1 and Path(args.inputs[0]).is_file() and not Path(args.output).is_dir()
        fmt = ext[1:] if single and ext in MEL_EXTENSIONS else "npy"
    plan = plan_jobs(args, f".{fmt}", AUDIO_EXTENSIONS, sidecars=fmt == "npy")
    inputs = [i for i, _ in plan]
    layout = args.layout
    for src, dst in plan:
        y, sr, notices = load_audio(src, cfg.sample_rate)
        for n in notices:
            ui.note(n)
        check(
            y.shape[0] >= cfg.min_samples,
            f"{str(src)!r} has {y.shape[0]} samples at {sr} Hz, fewer than the {cfg.min_samples} one "
            f"frame needs (n_fft={cfg.n_fft}, padding={cfg.padding})",
        )
        mel = mel_spectrogram(y, cfg, device=args.device)
        save_mel(dst, mel, cfg, overwrite=args.overwrite, layout=layout, protect=inputs)
        ui.out(f"{src} -> {dst} ({cfg.n_mels} mels x {mel.shape[-1]} frames, {layout})")
    return 0


COMMAND = Command(
    "mel",
    cmd_mel,
    "compute mel files (recording their config) from audio files or folders",
    options=(
        add_inputs,
        add_output,
        add_required_config,
        arg("--format", choices=("npy", "npz", "pt"), help="mel file format (default: from -o, else npy)"),
        add_write_layout,
        add_overwrite,
        add_device,
        add_threads,
    ),
    examples=(
        "melinvert mel speech.wav -o speech.npy --preset hifigan-22k-80",
        "melinvert mel corpus/ -o mels/ --preset vocos-24k-100 --format pt",
        "melinvert mel corpus/ -o feats/ --preset pwg-22k-80 --layout time-first",
    ),
)

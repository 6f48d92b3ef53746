"""``melinvert mel``: audio files or folders -> mel files recording their config."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    Command,
    Console,
    add_device,
    add_inputs,
    add_output,
    add_overwrite,
    add_required_config,
    arg,
    config_from_args,
    plan_jobs,
)


def cmd_mel(args: argparse.Namespace, ui: Console) -> int:
    """Audio files or folders -> mel files recording their config."""
    from ..io import AUDIO_EXTENSIONS, MEL_EXTENSIONS, save_mel
    from ..streaming import mel_of_file

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    fmt = args.format
    if fmt is None:
        ext = Path(args.output).suffix.lower()
        single = len(args.inputs) == 1 and Path(args.inputs[0]).is_file() and not Path(args.output).is_dir()
        fmt = ext[1:] if single and ext in MEL_EXTENSIONS else "npy"
    plan = plan_jobs(args, f".{fmt}", AUDIO_EXTENSIONS, sidecars=fmt == "npy")
    inputs = [i for i, _ in plan]
    layout = "time-first" if args.time_first else "mels-first"
    for src, dst in plan:
        # read and computed block by block: memory holds the mel, not the audio or its STFT
        fm = mel_of_file(src, cfg, device=args.device)
        for n in fm.notices:
            ui.note(n)
        save_mel(dst, fm.mel, cfg, overwrite=args.overwrite, layout=layout, protect=inputs)
        ui.out(f"{src} -> {dst} ({cfg.n_mels} mels x {fm.mel.shape[-1]} frames, {layout})")
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
        arg("--time-first", action="store_true", help="store (frames, n_mels) as ParallelWaveGAN does"),
        add_overwrite,
        add_device,
    ),
    examples=(
        "melinvert mel speech.wav -o speech.npy --preset hifigan-22k-80",
        "melinvert mel corpus/ -o mels/ --preset vocos-24k-100 --format pt",
    ),
)

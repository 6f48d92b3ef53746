"""``melinvert inspect``: describe mel and audio files; guess a mel's preset."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MelinvertError
from .common import Command, Console, add_config_options, add_layout, arg, config_from_args


def cmd_inspect(args: argparse.Namespace, ui: Console) -> int:
    """Describe mel and audio files; for mels, guess the preset and check a given config."""
    from ..identify import AudioInfo, identify_file, identify_sampled
    from ..io import AUDIO_EXTENSIONS, load_mel

    cfg = config_from_args(args)
    status = 0
    for i, f in enumerate(args.files):
        try:
            if cfg is not None and Path(f).suffix.lower() not in AUDIO_EXTENSIONS:
                mel, recorded = load_mel(f, config=cfg, layout=args.layout)
                info = identify_sampled(mel, layout="mels-first", recorded=recorded)
                fits = f"  fits the config asked for ({cfg.name or 'custom'}): {cfg.describe()}"
            else:
                info = identify_file(f, layout=args.layout)
                fits = None
        except MelinvertError as e:
            ui.error(str(e))
            status = 2
            continue
        if i:
            ui.out()
        if isinstance(info, AudioInfo):
            ui.out(info.format())
        else:
            ui.out(info.format(name=f) if fits is None else f"{info.format(name=f)}\n{fits}")
    return status


COMMAND = Command(
    "inspect",
    cmd_inspect,
    "describe mel or audio files; guess the preset of a mel from its values",
    options=(
        arg("files", nargs="+", metavar="FILE", help="mel (.npy/.npz/.pt) or audio files"),
        add_layout,
        add_config_options,
    ),
    examples=(
        "melinvert inspect mystery.npy",
        "melinvert inspect speech.wav",
        "melinvert inspect mel.npy --preset hifigan-22k-80   # check that it fits",
    ),
)

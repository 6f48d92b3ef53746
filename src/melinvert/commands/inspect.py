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
            ui.error(e.cli_message)
            status = 2
            continue
        if i:
            ui.out()
        if isinstance(info, AudioInfo):
            ui.out(info.format())
        else:
            ui.out(info.format(name=f) if fits is None else f"{info.format(name=f)}\n{fits}")
            line = _consistency_line(f, cfg or info.recorded or _best_preset(info), args.layout)
            if line:
                ui.out(line)
    return status


#: Frames of a mel that ``inspect`` measures the consistency of (its start; time stays bounded).
CONSISTENCY_FRAMES = 1500


def _best_preset(info: object) -> object:
    """The preset a mel fits best, when one fits (its config), else None."""
    from ..config import get_preset

    matches = getattr(info, "matches", ())
    return get_preset(matches[0].preset) if matches else None


def _consistency_line(path: str, cfg: object, layout: str) -> str | None:
    """``consistency: ...``: is this the mel of a waveform, or a predicted / processed one?"""
    if cfg is None:
        return None
    from ..io import load_mel
    from ..predicted import mel_consistency

    try:
        mel, _ = load_mel(path, config=cfg, layout=layout)
        first = mel.reshape(-1, *mel.shape[-2:])[0, :, :CONSISTENCY_FRAMES]
        if first.shape[-1] < 3:
            return None
        c = mel_consistency(first, cfg)
    except MelinvertError:
        return None  # the values do not fit this config: the lines above say so
    measured = (
        f"re-fit residual {c.residual[0]:.3f} log-mel L1, roughness {c.roughness_time[0]:.2f} in time, "
        f"{c.roughness_freq[0]:.2f} across mel bins"
    )
    problems = c.problems(0)
    if problems:
        return f"consistency: not the mel of a waveform: {'; '.join(problems)} ({measured})"
    return f"consistency: looks like the mel of a recording ({measured})"


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

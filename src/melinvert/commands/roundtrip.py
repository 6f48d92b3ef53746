"""``melinvert roundtrip``: audio -> mel -> audio with one method, then the scores."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    add_threads,
    arg,
    config_from_args,
    note_missing_extras,
    print_scores,
    speed,
)


def cmd_roundtrip(args: argparse.Namespace, ui: Console) -> int:
    """Audio -> mel -> audio with one method, then the score table."""
    import time

    from ..dsp import mel_spectrogram
    from ..io import AUDIO_EXTENSIONS, check_output, load_audio, plan_outputs, save_audio
    from ..metrics import score
    from ..pipeline import invert

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    check(
        not Path(args.input).is_dir(),
        f"{args.input!r} is a folder; roundtrip takes one audio file (compare methods on folders with bench)",
    )
    check(
        Path(args.input).suffix.lower() in AUDIO_EXTENSIONS or not Path(args.input).is_file(),
        f"{args.input!r} is not an audio file ({', '.join(AUDIO_EXTENSIONS)})",
    )
    # -o FILE (.wav/.flac/.ogg) or -o DIR/ (DIR/NAME.wav), as every command's -o
    ((_, output),) = plan_outputs([args.input], args.output, ".wav", file_suffixes=AUDIO_EXTENSIONS)
    check_output(output, overwrite=args.overwrite, protect=[args.input])
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
    )
    wall = time.perf_counter() - t0
    for n in save_audio(
        output,
        out,
        cfg.sample_rate,
        subtype=args.subtype,
        overwrite=args.overwrite,
        protect=[args.input],
    ):
        ui.note(n)
    ui.out(f"{args.input} -> {cfg.name or 'config'} mel -> {args.method} -> {output}")
    ui.out(f"{len(y) / sr:.2f} s of audio in {wall:.2f} s: {speed(wall, len(y) / sr)}")
    scores = score(y, out, sr, config=cfg, extras=not args.no_extras)
    print_scores(ui, [(args.method, scores)])
    note_missing_extras(ui, [scores], not args.no_extras)
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
        add_threads,
    ),
    examples=("melinvert roundtrip speech.wav -o rt.wav --preset hifigan-22k-80 --method default",),
)

"""``melinvert roundtrip``: audio -> mel -> audio with one method, then the scores."""

from __future__ import annotations

import argparse

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

#: Seconds of the start of the audio that ``roundtrip`` scores (longer inputs are scored on
#: that excerpt, with a notice, so that memory and time stay bounded).
SCORE_SECONDS = 120.0


def cmd_roundtrip(args: argparse.Namespace, ui: Console) -> int:
    """Audio -> mel -> audio with one method, streamed block by block, then the score table.

    A silent input round-trips to a (silent) output and exit status 0; its scores are ``n/a``
    with a notice, since every measure needs an audible reference.
    """
    import time

    import numpy as np

    from ..errors import MelinvertError
    from ..io import AudioWriter, check_output
    from ..metrics import score
    from ..pipeline import invert_blocks
    from ..streaming import mel_of_file

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    check_output(args.output, overwrite=args.overwrite, protect=[args.input])
    sr = cfg.sample_rate
    keep = int(SCORE_SECONDS * sr)
    fm = mel_of_file(args.input, cfg, device=args.device, head_samples=keep)
    for n in fm.notices:
        ui.note(n)
    t0 = time.perf_counter()
    stream = invert_blocks(
        fm.mel, cfg, method=args.method, n_iter=args.iters, seed=args.seed, device=args.device,
        length=fm.samples, model=args.model, strict_range=args.strict_range,
    )  # fmt: skip
    head: list[np.ndarray] = []
    kept = 0
    writer = AudioWriter(args.output, sr, args.subtype, overwrite=args.overwrite, protect=[args.input])
    with writer:
        for chunk in stream:
            block = chunk[0].cpu().numpy()
            writer.write(block)
            if kept < keep:
                head.append(block[: keep - kept].copy())
                kept += head[-1].shape[0]
    wall = time.perf_counter() - t0
    for n in writer.notices:
        ui.note(n)
    ui.out(f"{args.input} -> {cfg.name or 'config'} mel -> {args.method} -> {args.output}")
    ui.out(
        f"{fm.samples / sr:.2f} s of audio in {wall:.2f} s (real-time factor {fm.samples / sr / wall:.1f}x)"
    )
    if fm.samples > keep:
        ui.note(
            f"scored the first {SCORE_SECONDS:g} s of {fm.samples / sr:.1f} s (long inputs are scored on an excerpt)"
        )
    try:
        scores = score(fm.head, np.concatenate(head), sr, config=cfg, extras=not args.no_extras)
    except MelinvertError as e:  # e.g. a silent input: the output is written, the measures undefined
        ui.note(f"no scores: {e}")
        scores = {}
    print_scores(ui, [(args.method, scores)])
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

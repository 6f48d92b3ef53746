"""``melinvert invert``: mel files or folders -> audio, streamed block by block."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MelinvertError, check
from .common import (
    Command,
    Console,
    Progress,
    add_device,
    add_inputs,
    add_layout,
    add_method_options,
    add_output,
    add_overwrite,
    add_required_config,
    add_subtype,
    arg,
    config_from_args,
    partial_marker,
)

if TYPE_CHECKING:
    from ..config import MelConfig
    from ..io import AudioWriter


def _invert_one(
    src: Path,
    dst: Path,
    cfg: MelConfig,
    args: argparse.Namespace,
    progress: Progress,
    ui: Console,
) -> None:
    """Stream one mel file's inversion into ``dst`` through :class:`~melinvert.io.AudioWriter`.

    On Ctrl-C or SIGTERM the best estimate so far is written, with a ``DST.partial`` marker
    beside it, unless ``dst`` holds a complete earlier output (``--overwrite``): that one is
    better than a partial estimate and stays.
    """
    from ..io import AudioWriter, load_mel
    from ..pipeline import invert_blocks

    mel, _ = load_mel(src, config=cfg, layout=args.layout)
    check(
        mel.ndim == 2,
        f"{str(src)!r} holds a batch of {mel.shape[0]} mels; split it into files, or use the Python API "
        "(melinvert.invert handles batches)",
    )
    stream = invert_blocks(
        mel,
        cfg,
        method=args.method,
        n_iter=args.iters,
        seed=args.seed,
        device=args.device,
        callback=progress.callback,
        model=args.model,
        strict_range=args.strict_range,
    )
    replaces_complete = dst.exists() and not partial_marker(dst).exists()
    # cmd_invert checked every output against every input before any work: only src is left
    writer = AudioWriter(dst, cfg.sample_rate, args.subtype, overwrite=True, protect=[src])
    with writer:
        try:
            _write_blocks(stream, writer, cfg, progress)
        except KeyboardInterrupt:
            _keep_partial(stream, writer, src, cfg, ui, replaces_complete)
            raise
    for n in writer.notices:
        ui.note(n)
    partial_marker(dst).unlink(missing_ok=True)


def _write_blocks(stream: Any, writer: AudioWriter, cfg: MelConfig, progress: Progress) -> None:
    """Write each block of ``stream`` as it comes, moving the progress bar."""
    hop_s = cfg.hop_length / cfg.sample_rate
    block_frames = stream.block_frames
    total_frames = stream.mel.shape[-1]
    progress.block_s = min(block_frames, total_frames) * hop_s
    for chunk in stream:
        writer.write(chunk[0])
        progress.advance(chunk.shape[-1] / cfg.sample_rate)
        progress.block_s = min(block_frames, max(total_frames - writer.frames / cfg.hop_length, 0)) * hop_s


def _keep_partial(
    stream: Any, writer: AudioWriter, src: Path, cfg: MelConfig, ui: Console, replaces_complete: bool
) -> None:
    """After an interrupt: publish the best estimate so far with its ``.partial`` marker (the
    marker first, so that a kill in between leaves a file a rerun redoes)."""
    from ..io import write_text

    dst = writer.path
    part = stream.partial()
    if part is not None:
        writer.write(part[0])
    if writer.frames == 0:
        ui.note(f"interrupted before any audio of {src} was estimated; nothing written")
        return
    done = f"{writer.frames / cfg.sample_rate:.1f} s of {stream.total_length / cfg.sample_rate:.1f} s"
    if replaces_complete:
        ui.note(
            f"interrupted: kept the complete {dst} written earlier; the new estimate ({done}) was discarded"
        )
        return
    write_text(partial_marker(dst), "interrupted; rerun to finish\n", overwrite=True)
    writer.commit()
    for n in writer.notices:
        ui.note(n)
    ui.note(
        f"interrupted: wrote the best estimate so far to {dst} ({done}); rerun the same command to finish it"
    )


def cmd_invert(args: argparse.Namespace, ui: Console) -> int:
    """Mel files or folders -> WAV files; finished outputs are skipped on a rerun."""
    from ..io import MEL_EXTENSIONS, check_output, plan_outputs
    from ..pipeline import parse_method

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    parse_method(args.method, args.iters)  # fail fast on a bad name
    plan = plan_outputs(args.inputs, args.output, ".wav", extensions=MEL_EXTENSIONS)
    inputs = [i for i, _ in plan]
    todo = []
    for src, dst in plan:
        if dst.exists() and not args.overwrite and not partial_marker(dst).exists():
            ui.note(f"skipping {src}: {dst} exists (finished earlier; --overwrite to redo it)")
            continue
        check_output(dst, overwrite=True, protect=inputs)
        todo.append((src, dst))
    if not todo:
        return 0
    total = 0.0
    for src, _ in todo:
        total += _mel_seconds(src, cfg, args.layout)
    progress = Progress(total, len(todo), enabled=not args.quiet)
    try:
        for src, dst in todo:
            _invert_one(src, dst, cfg, args, progress, ui)
            progress.file_done()
    finally:
        progress.close()
    for src, dst in todo:
        ui.out(f"{src} -> {dst}")
    return 0


def _mel_seconds(path: Path, cfg: MelConfig, layout: str) -> float:
    """Audio seconds a mel file will give (for the progress bar); 0 if it cannot be told cheaply."""
    from ..io import read_mel_file, to_mels_first

    try:
        arr, _ = read_mel_file(path)
        mel, _ = to_mels_first(arr, n_mels=cfg.n_mels, layout=layout, source=str(path))
    except MelinvertError:
        return 0.0  # the real read reports the problem
    return cfg.n_samples(max(mel.shape[-1], cfg.min_frames)) / cfg.sample_rate


COMMAND = Command(
    "invert",
    cmd_invert,
    "turn mel files (or folders of them) back into audio",
    options=(
        lambda p: add_inputs(p, "mel files (.npy/.npz/.pt) or folders"),
        add_output,
        add_required_config,
        add_method_options,
        add_layout,
        add_subtype,
        add_overwrite,
        add_device,
        arg("--quiet", action="store_true", help="no progress bar"),
    ),
    examples=(
        "melinvert invert speech.npy -o speech.wav --preset hifigan-22k-80",
        "melinvert invert mels/ -o wavs/ --preset vocos-24k-100 --method fast",
        "melinvert invert feats/ -o wavs/ --preset pwg-22k-80 --stats stats.npy --layout time-first",
    ),
)

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
    add_config_options,
    add_device,
    add_inputs,
    add_layout,
    add_method_options,
    add_output,
    add_overwrite,
    add_subtype,
    add_threads,
    config_from_args,
    partial_marker,
    speed,
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
    announce: str | None = None,
) -> None:
    """Stream one mel file's inversion into ``dst`` through :class:`~melinvert.io.AudioWriter`;
    ``announce`` (the method spelled out) is noted once the mel has been read and checked.

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
    if announce:
        ui.note(announce)
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


def _recorded_config(paths: list[Path], ui: Console) -> MelConfig:
    """The config the mel files record, when no ``--preset``/``--config`` is given: every file
    must record one, and the same one."""
    from ..io import read_mel_file

    found: MelConfig | None = None
    for src in paths:
        _, recorded = read_mel_file(src)
        check(
            recorded is not None,
            f"{str(src)!r} records no config: pass --preset NAME or --config FILE.json "
            f"('melinvert inspect {src}' suggests presets that fit)",
        )
        assert recorded is not None
        check(
            found is None or recorded == found,
            f"{str(src)!r} records another config than {str(paths[0])!r}: invert them separately or "
            "pass --preset/--config",
        )
        found = recorded
    assert found is not None
    ui.note(
        f"no --preset/--config: using the config recorded in the mel file{'s' if len(paths) > 1 else ''}, "
        f"{found.name or 'custom'} ({found.describe()})"
    )
    return found


def cmd_invert(args: argparse.Namespace, ui: Console) -> int:
    """Mel files or folders -> audio files; finished outputs are skipped on a rerun."""
    from ..io import AUDIO_EXTENSIONS, READ_MEL_EXTENSIONS, check_output, plan_outputs
    from ..pipeline import parse_method

    cfg = config_from_args(args)
    plan_ = parse_method(args.method, args.iters)  # fail fast on a bad name
    plan = plan_outputs(
        args.inputs, args.output, ".wav", extensions=READ_MEL_EXTENSIONS, file_suffixes=AUDIO_EXTENSIONS
    )
    if cfg is None:
        cfg = _recorded_config([src for src, _ in plan], ui)
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
    announce: str | None = f"method {args.method}: {plan_.spelled}"  # what 'gla' alone means
    try:
        for src, dst in todo:
            _invert_one(src, dst, cfg, args, progress, ui, announce)
            announce = None
            progress.file_done()
    finally:
        progress.close()
    for src, dst in todo:
        ui.out(f"{src} -> {dst}")
    wall = progress.time() - progress.t0
    if total > 0:
        ui.out(
            f"{len(todo)} file{'s' if len(todo) > 1 else ''}, {total:.1f} s of audio in {wall:.1f} s: {speed(wall, total)}"
        )
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
        lambda p: add_inputs(p, "mel files (.npy/.npz/.pt, ParallelWaveGAN's .h5) or folders"),
        add_output,
        add_config_options,
        add_method_options,
        add_layout,
        add_subtype,
        add_overwrite,
        add_device,
        add_threads,
    ),
    description="Turn mel files (or folders of them) back into audio (.wav, or .flac/.ogg when the "
    "output file is so named). Without --preset/--config, the config the mel files record is used "
    "(files written by 'melinvert mel' record theirs).",
    examples=(
        "melinvert invert speech.npy -o speech.wav --preset hifigan-22k-80",
        "melinvert invert mels/ -o wavs/ --preset vocos-24k-100 --method fast",
        "melinvert invert feats/ -o wavs/ --preset pwg-22k-80 --stats stats.npy --layout time-first",
    ),
)

"""``melinvert invert``: mel files or folders -> audio.

Many files go through the dataset engines (batched across files on every core, or on Ray);
a long mel (more than one block of the pipeline) or a lone file is streamed block by block
into its WAV in bounded memory, and Ctrl-C or SIGTERM then keeps the best estimate with a
``.partial`` marker. Both share the run manifest and claims (:mod:`.dataset`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import check
from .common import (
    Command,
    Console,
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
)
from .dataset import add_engine_options, check_engine, run_files

if TYPE_CHECKING:
    from ..config import MelConfig
    from ..engines.base import Job
    from ..engines.tasks import InvertTask
    from ..io import AudioWriter

#: Frames of one block of :func:`melinvert.pipeline.invert_blocks` (its default): a longer mel
#: is streamed alone, block by block, instead of batched with other files.
BLOCK_FRAMES = 2048


def _invert_one(job: Job, task: InvertTask, report: Any, ui: Console) -> tuple[float, list[str]]:
    """Stream one mel file's inversion (read and checked as ``task`` reads it, inverted with its
    settings) into the job's output through :class:`~melinvert.io.AudioWriter`.

    Returns the audio seconds written and the writer's notices. On Ctrl-C or SIGTERM the best
    estimate so far is written, with a ``DST.partial`` marker beside it, and
    :class:`~melinvert.engines.stream.PartialWritten` raised, unless ``dst`` holds a complete
    earlier output (``--overwrite``): that one is better than a partial estimate and stays.
    """
    from ..io import AudioWriter
    from ..pipeline import invert_blocks

    src, dst, cfg = job.input, job.output, task.config
    position = _Position(report)
    stream = invert_blocks(task.load(job), cfg, callback=position.callback, **task.invert_kwargs())
    replaces_complete = dst.exists() and not partial_marker(dst).exists()
    # the run claimed dst and judged it (to make, or to replace with --overwrite): only src is protected
    writer = AudioWriter(dst, cfg.sample_rate, task.subtype, overwrite=True, protect=[src])
    with writer:
        try:
            _write_blocks(stream, writer, cfg, position)
        except KeyboardInterrupt:
            _keep_partial(stream, writer, src, cfg, ui, replaces_complete)
            raise
    partial_marker(dst).unlink(missing_ok=True)
    return writer.frames / cfg.sample_rate, writer.notices


class _Position:
    """Audio seconds made so far in the file in hand, moved by whole blocks and by the
    pipeline's progress within a block; each move is reported to the run's progress bar."""

    def __init__(self, report: Any):
        self.report = report
        self.done_s = 0.0  # audio seconds finished (whole blocks)
        self.block_s = 0.0  # audio seconds of the block in hand

    def callback(self, p: Any) -> bool:
        """A :class:`melinvert.stage.Progress` event: move through the block."""
        self.report(self.done_s + self.block_s * min(1.0, p.done / max(p.planned, 1)))
        return False

    def advance(self, seconds: float) -> None:
        self.done_s += seconds
        self.report(self.done_s)


def _write_blocks(stream: Any, writer: AudioWriter, cfg: MelConfig, progress: _Position) -> None:
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
    marker first, so that a kill in between leaves a file a rerun redoes) and raise
    :class:`~melinvert.engines.stream.PartialWritten`; return when nothing was published."""
    from ..engines.stream import PartialWritten
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
    ui.note(
        f"interrupted: wrote the best estimate so far to {dst} ({done}); rerun the same command to finish it"
    )
    raise PartialWritten(writer.frames / cfg.sample_rate, writer.notices)


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
    """Mel files or folders -> WAV files through the dataset engines (see
    :mod:`melinvert.commands.dataset`): files known finished are skipped on a rerun."""
    from .. import registry
    from ..engines import plan_jobs
    from ..engines.tasks import InvertTask
    from ..io import AUDIO_EXTENSIONS, READ_MEL_EXTENSIONS
    from ..pipeline import parse_method

    check_engine(args)
    spelled = parse_method(args.method, args.iters).spelled  # a bad method fails here, before any file
    jobs = plan_jobs(
        args.inputs, args.output, ".wav", extensions=READ_MEL_EXTENSIONS, file_suffixes=AUDIO_EXTENSIONS
    )
    cfg = config_from_args(args)
    if cfg is None:
        cfg = _recorded_config([j.input for j in jobs], ui)
    if spelled != args.method and args.method not in registry.pipelines():
        ui.note(f"method {args.method}: {spelled}")  # what 'gla' alone means
    task = InvertTask(
        cfg,
        method=args.method,
        n_iter=args.iters,
        seed=args.seed,
        layout=args.layout,
        subtype=args.subtype,
        device=args.device,
        model=args.model,
        strict_range=args.strict_range,
    )

    def alone(job: Job) -> bool:  # longer than one block: streamed in bounded memory
        frames = mel_frames(job.input, cfg.n_mels, args.layout)
        return frames is not None and frames > BLOCK_FRAMES

    def make(job: Job, report: Any) -> tuple[float, list[str]]:
        return _invert_one(job, task, report, ui)

    return run_files(args, ui, jobs, task, alone=alone, make=make, what="inverting")


def mel_frames(path: Path, n_mels: int, layout: str) -> int | None:
    """Frames of a ``.npy`` or ``.npz`` mel from its array header alone (no data read); None
    when it cannot be told cheaply (``.pt``, a batch, an unreadable file: the run reports it)."""
    import zipfile

    import numpy as np

    fmt = np.lib.format

    def header(f: Any) -> tuple[int, ...]:
        version = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        return tuple(read(f)[0])

    try:
        ext = path.suffix.lower()
        if ext == ".npy":
            with open(path, "rb") as f:
                shape = header(f)
        elif ext == ".npz":
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n != "config_json.npy"]
                if len(names) != 1 and "mel.npy" not in names:
                    return None
                with z.open(names[0] if len(names) == 1 else "mel.npy") as f:
                    shape = header(f)
        else:
            return None
    except Exception:  # any unreadable header: the run reads the file and names the problem
        return None
    if len(shape) != 2:
        return None
    if layout == "time-first" or (layout == "auto" and shape[1] == n_mels and shape[0] != n_mels):
        return int(shape[0])
    return int(shape[1])


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
        add_engine_options,
        add_threads,
    ),
    description="Turn mel files (or folders of them) back into audio (.wav, or .flac/.ogg when the "
    "output file is so named). Without --preset/--config, the config the mel files record is used "
    "(files written by 'melinvert mel' record theirs).",
    examples=(
        "melinvert invert speech.npy -o speech.wav --preset hifigan-22k-80",
        "melinvert invert mels/ -o wavs/ --preset vocos-24k-100 --method fast",
        "melinvert invert feats/ -o wavs/ --preset pwg-22k-80 --stats stats.npy --layout time-first",
        "melinvert invert mels/ -o wavs/ --preset hifigan-22k-80 --workers 4 --ray=auto",
    ),
)

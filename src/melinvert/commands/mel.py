"""``melinvert mel``: audio files or folders -> mel files recording their config."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
)
from .dataset import add_engine_options, check_engine, run_files

if TYPE_CHECKING:
    from ..engines.base import Job

#: Frames per block of a long recording's mel (as :func:`melinvert.streaming.mel_of_file`).
BLOCK_FRAMES = 2048


def cmd_mel(args: argparse.Namespace, ui: Console) -> int:
    """Audio files or folders -> mel files recording their config, through the dataset engines
    (see :mod:`melinvert.commands.dataset`); a long recording, or a lone file, is read and
    computed block by block in bounded memory."""
    from ..engines import plan_jobs
    from ..engines.tasks import MelTask
    from ..io import AUDIO_EXTENSIONS, MEL_EXTENSIONS

    check_engine(args)
    cfg = config_from_args(args, required=True)
    assert cfg is not None
    fmt = args.format
    if fmt is None:
        ext = Path(args.output).suffix.lower()
        single = len(args.inputs) == 1 and Path(args.inputs[0]).is_file() and not Path(args.output).is_dir()
        fmt = ext[1:] if single and ext in MEL_EXTENSIONS else "npy"
    layout = args.layout
    task = MelTask(cfg, layout=layout, device=args.device, replace_sidecars=args.overwrite)
    jobs = plan_jobs(args.inputs, args.output, f".{fmt}", extensions=AUDIO_EXTENSIONS)
    block_samples = max(cfg.hop_length * BLOCK_FRAMES, 1 << 16)

    def alone(job: Job) -> bool:  # longer than one block: computed block by block
        import soundfile as sf

        try:
            info = sf.info(str(job.input))
        except Exception:  # unreadable: the run reads it and names the problem
            return False
        return info.frames * cfg.sample_rate / max(info.samplerate, 1) > block_samples

    shapes: dict[Path, str] = {}

    def make(job: Job, report: Any) -> tuple[float, list[str]]:
        from ..io import save_mel
        from ..streaming import mel_of_file

        # read and computed block by block: memory holds the mel, not the audio or its STFT
        fm = mel_of_file(job.input, cfg, device=args.device, block_frames=BLOCK_FRAMES)
        overwrite = args.overwrite or job.output.exists()  # judged already; a lone sidecar is not
        save_mel(job.output, fm.mel, cfg, overwrite=overwrite, layout=layout, protect=[job.input])
        shapes[job.output] = f"({cfg.n_mels} mels x {fm.mel.shape[-1]} frames, {layout})"
        return fm.samples / cfg.sample_rate, fm.notices

    return run_files(
        args,
        ui,
        jobs,
        task,
        alone=alone,
        make=make,
        what="mel",
        bar="terminal",  # as before the engines: no bar in logs and pipes
        detail=lambda out: shapes.get(out, ""),
    )


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
        add_engine_options,
        add_threads,
    ),
    examples=(
        "melinvert mel speech.wav -o speech.npy --preset hifigan-22k-80",
        "melinvert mel corpus/ -o mels/ --preset vocos-24k-100 --format pt",
        "melinvert mel corpus/ -o feats/ --preset pwg-22k-80 --layout time-first",
    ),
)

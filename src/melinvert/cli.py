"""The ``melinvert`` command line: parse, call the library, report. No maths here.

Adding a subcommand is one function and one line in :data:`COMMANDS`::

    def cmd_hello(args: argparse.Namespace, ui: Console) -> int:
        cfg = config_from_args(args, required=True)
        ui.out(cfg.describe())
        return 0

    COMMANDS.append(Command("hello", cmd_hello, "say hello", options=(add_config_options,)))

``options`` are functions that add arguments to the subcommand's parser: the shared ones
(:func:`add_inputs`, :func:`add_output`, :func:`add_config_options`, :func:`add_overwrite`,
:func:`add_layout`, :func:`add_device`) or :func:`arg` for a one-off
(``arg("--n-iter", type=int, default=100)``). A command returns its exit status (``None`` is 0)
and reports through ``ui``; a :class:`~melinvert.errors.MelinvertError` it raises becomes one
``melinvert: error: ...`` line and exit status 2.

Exit statuses: 0 success, 2 bad input or usage, 130 interrupted, 1 internal error (a bug: one
line, the traceback with ``MELINVERT_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config import PRESETS, MelConfig, get_preset
from .errors import MelinvertError, check
from .neural.train import add_train_options, cmd_train

PROG = "melinvert"
ISSUES_URL = "the melinvert issue tracker"


# ---------------------------------------------------------------------- reporting


class Console:
    """Where commands report: results to stdout, notices and errors to stderr (one line each).

    Streams are looked up at each call, so redirection (and pytest's capture) works.
    """

    def out(self, text: str = "") -> None:
        """A result line (or block) on stdout."""
        print(text, file=sys.stdout, flush=True)

    def note(self, message: str) -> None:
        """A notice on stderr: ``melinvert: note: ...`` (resampling, channel mixing, clipping)."""
        print(f"{PROG}: note: {_flat(message)}", file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        """An error on stderr: ``melinvert: error: ...``."""
        print(f"{PROG}: error: {_flat(message)}", file=sys.stderr, flush=True)


def _flat(message: str) -> str:
    return " ".join(str(message).split())


class _UsageError(Exception):
    """An argparse error, reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------- command table


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, the function that runs it and how to parse its arguments.

    Attributes
    ----------
    name : str
        ``melinvert NAME``.
    run : callable
        ``run(args, ui) -> int | None``.
    help : str
        One line for ``melinvert --help``.
    options : tuple of callable
        Each ``option(parser)`` adds arguments (see :func:`arg`, :func:`add_inputs`, ...).
    examples : tuple of str
        Shown under ``melinvert NAME --help``.
    description : str, optional
        Longer text for ``melinvert NAME --help`` (default: ``help``).
    """

    name: str
    run: Callable[[argparse.Namespace, Console], int | None]
    help: str
    options: tuple[Callable[[argparse.ArgumentParser], Any], ...] = ()
    examples: tuple[str, ...] = ()
    description: str | None = None


def arg(*flags: str, **kwargs: Any) -> Callable[[argparse.ArgumentParser], Any]:
    """An option adder for one argument: ``arg("--n-iter", type=int, default=100)``."""
    return lambda p: p.add_argument(*flags, **kwargs)


def add_inputs(parser: argparse.ArgumentParser, what: str = "audio files or folders") -> None:
    """Positional ``IN...``: files or folders (walked recursively, mirrored under OUT)."""
    parser.add_argument("inputs", nargs="+", metavar="IN", help=f"{what} (folders are walked recursively)")


def add_output(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``-o/--output OUT``: a folder (inputs mirrored under it) or, for one input, a file."""
    parser.add_argument(
        "-o",
        "--output",
        required=required,
        metavar="OUT",
        help="output folder (folder inputs are mirrored under it); with one input file, the output "
        "file itself",
    )


def add_config_options(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """``--preset NAME | --config FILE.json`` and ``--stats STATS.npy``; read by :func:`config_from_args`."""
    g = parser.add_mutually_exclusive_group(required=required)
    g.add_argument("--preset", metavar="NAME", help="a built-in configuration (see 'melinvert presets')")
    g.add_argument(
        "--config", metavar="FILE.json", help="a MelConfig JSON file (e.g. from 'presets NAME --json')"
    )
    parser.add_argument(
        "--stats",
        metavar="STATS.npy",
        help="per-bin mean and scale, shaped (2, n_mels) (ParallelWaveGAN's stats.npy), applied after "
        "compression",
    )


def add_required_config(parser: argparse.ArgumentParser) -> None:
    """:func:`add_config_options` with one of ``--preset``/``--config`` required."""
    add_config_options(parser, required=True)


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace existing outputs (never an input)."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (inputs are never replaced)"
    )


def add_layout(parser: argparse.ArgumentParser) -> None:
    """``--layout auto|mels-first|time-first`` for reading mel files."""
    parser.add_argument(
        "--layout",
        choices=("auto", "mels-first", "time-first"),
        default="auto",
        help="axes of the mel files: (n_mels, frames) or (frames, n_mels); default: decided from the "
        "shape and n_mels",
    )


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (default ``auto``: CUDA if available)."""
    parser.add_argument(
        "--device", default="auto", metavar="DEV", help="auto (CUDA if available), cpu, cuda or cuda:N"
    )


def config_from_args(args: argparse.Namespace, *, required: bool = False) -> MelConfig | None:
    """The config named by ``--preset`` or ``--config`` (with ``--stats`` applied), or ``None``."""
    preset = getattr(args, "preset", None)
    path = getattr(args, "config", None)
    cfg: MelConfig | None = None
    if preset is not None:
        cfg = get_preset(preset)
    elif path is not None:
        p = Path(path)
        check(p.is_file(), f"config file {path!r} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise MelinvertError(f"cannot read config file {path!r}: {e}") from None
        try:
            cfg = MelConfig.from_json(text)
        except (TypeError, ValueError) as e:  # MelinvertError, and what a malformed field may raise
            raise MelinvertError(f"{path}: {e}") from None
    check(cfg is not None or not required, "a config is needed: pass --preset NAME or --config FILE.json")
    stats = getattr(args, "stats", None)
    if stats is not None:
        from .io import load_stats

        check(cfg is not None, "--stats needs a --preset or --config to apply to")
        assert cfg is not None
        mean, std = load_stats(stats)
        check(
            mean.shape[0] == cfg.n_mels,
            f"statistics {stats!r} have {mean.shape[0]} bins but the config has n_mels={cfg.n_mels}",
        )
        comp = dataclasses.replace(cfg.compression, mean=tuple(mean.tolist()), std=tuple(std.tolist()))
        cfg = cfg.replace(compression=comp)
    return cfg


def plan_jobs(
    args: argparse.Namespace, suffix: str, extensions: Sequence[str], *, sidecars: bool = False
) -> list[tuple[Path, Path]]:
    """Map ``args.inputs`` to outputs under ``args.output`` and check every output first.

    Nothing is written; an output that exists (without ``--overwrite``), replaces an input or
    cannot be created is refused before any work starts.

    Parameters
    ----------
    suffix : str
        Output extension, e.g. ``".npy"``.
    extensions : sequence of str
        Input extensions picked up in folders.
    sidecars : bool
        Also check the ``PATH.json`` sidecar of each output (``.npy`` mel files).
    """
    from .io import check_output, plan_outputs, sidecar_path

    plan = plan_outputs(args.inputs, args.output, suffix, extensions=extensions)
    inputs = [i for i, _ in plan]
    overwrite = bool(getattr(args, "overwrite", False))
    for _, out in plan:
        check_output(out, overwrite=overwrite, protect=inputs)
        if sidecars:
            check_output(sidecar_path(out), overwrite=overwrite, protect=inputs)
    return plan


# ---------------------------------------------------------------------- presets


def _short_compression(cfg: MelConfig) -> str:
    c = cfg.compression
    if c.kind in ("ln", "log10"):
        return f"{c.kind} {c.floor:.0e}".replace("e-0", "e-")
    if c.kind == "db":
        return f"dB floor {c.floor:.0e}" + (f" top {c.top_db:g}" if c.top_db else "")
    return c.kind


def cmd_presets(args: argparse.Namespace, ui: Console) -> int:
    """List the presets, or show one in full."""
    if args.name:
        cfg = get_preset(args.name)
        preset = PRESETS[args.name]
        if args.json:
            ui.out(cfg.to_json())
            return 0
        ui.out(f"{preset.name}: {cfg.describe()}")
        ui.out(f"project: {preset.project}")
        ui.out(f"source: {preset.source}")
        if preset.notes:
            ui.out(f"notes: {preset.notes}")
        ui.out("config (save with 'melinvert presets NAME --json > FILE.json'):")
        ui.out(cfg.to_json())
        return 0
    check(not args.json, "--json needs a preset NAME")
    header = ("name", "rate", "n_fft", "hop", "n_mels", "fmin-fmax", "compression", "project")
    rows = [header]
    for name, p in PRESETS.items():
        c = p.config
        rows.append(
            (
                name,
                str(c.sample_rate),
                str(c.n_fft),
                str(c.hop_length),
                str(c.n_mels),
                f"{c.fmin:g}-{c.fmax_hz:g}",
                _short_compression(c),
                re.split(r"[:,;] ", p.project)[0],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    for r in rows:
        cells = [
            r[i].ljust(widths[i]) if i in (0, 5, 6) else r[i].rjust(widths[i]) for i in range(len(widths))
        ]
        ui.out("  ".join([*cells, r[-1]]))
    return 0


# ---------------------------------------------------------------------- mel


def cmd_mel(args: argparse.Namespace, ui: Console) -> int:
    """Audio files or folders -> mel files recording their config."""
    from .dsp import mel_spectrogram
    from .io import AUDIO_EXTENSIONS, MEL_EXTENSIONS, load_audio, save_mel

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


# ---------------------------------------------------------------------- inspect


def cmd_inspect(args: argparse.Namespace, ui: Console) -> int:
    """Describe mel and audio files; for mels, guess the preset and check a given config."""
    from .identify import AudioInfo, identify_file, identify_mel
    from .io import AUDIO_EXTENSIONS, load_mel

    cfg = config_from_args(args)
    status = 0
    for i, f in enumerate(args.files):
        try:
            if cfg is not None and Path(f).suffix.lower() not in AUDIO_EXTENSIONS:
                mel, recorded = load_mel(f, config=cfg, layout=args.layout)
                info = identify_mel(mel, layout="mels-first", recorded=recorded)
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


# ---------------------------------------------------------------------- score


def _fmt_metric(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return str(v)


def _json_value(v: Any) -> Any:
    """JSON-safe value: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item") and callable(v.item):
        return _json_value(v.item())
    return v


def cmd_score(args: argparse.Namespace, ui: Console) -> int:
    """Objective scores of an estimate against its reference."""
    from .io import check_output, load_audio, write_text
    from .metrics import score

    cfg = config_from_args(args)
    protect = [args.reference, args.estimate]
    if args.json:
        check_output(args.json, overwrite=args.overwrite, protect=protect)
    ref, sr, notes = load_audio(args.reference, cfg.sample_rate if cfg is not None else None)
    est, _, notes2 = load_audio(args.estimate, sr)
    for n in notes + notes2:
        ui.note(n)
    result = score(ref, est, sr, config=cfg, extras=not args.no_extras)
    width = max(len(k) for k in result)
    ui.out(f"{'reference':<{width}}  {args.reference}")
    ui.out(f"{'estimate':<{width}}  {args.estimate}")
    ui.out(f"{'sample_rate':<{width}}  {sr}")
    for k, v in result.items():
        ui.out(f"{k:<{width}}  {_fmt_metric(v)}")
    if args.json:
        doc = {
            "reference": os.fspath(args.reference),
            "estimate": os.fspath(args.estimate),
            "sample_rate": sr,
            "config": cfg.to_dict() if cfg is not None else None,
            "metrics": {k: _json_value(v) for k, v in result.items()},
        }
        write_text(
            args.json,
            json.dumps(doc, indent=2, allow_nan=False) + "\n",
            overwrite=args.overwrite,
            protect=protect,
        )
        ui.out(f"wrote {args.json}")
    return 0


# ---------------------------------------------------------------------- invert, roundtrip, demo


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """``--method``, ``--iters``, ``--seed`` for the inverting commands."""
    parser.add_argument(
        "--method",
        default="default",
        metavar="M",
        help="a pipeline (default, fast, ...) or stages joined by '+', e.g. nnls+pghi+fgla "
        "(see 'melinvert methods')",
    )
    parser.add_argument("--iters", type=int, default=None, metavar="N", help="iterations of the last stage")
    parser.add_argument("--seed", type=int, default=0, help="seed for random initial phases (default 0)")
    parser.add_argument(
        "--model",
        action="append",
        metavar="RUN",
        help="trained weights for the learned stages (refiner, degli, cnn_vocoder): a 'melinvert train' "
        "run folder or a .safetensors checkpoint (repeatable; default: the weights shipped for the preset)",
    )


def add_subtype(parser: argparse.ArgumentParser) -> None:
    """``--subtype PCM_16|PCM_24|FLOAT`` for WAV outputs."""
    parser.add_argument(
        "--subtype", choices=("PCM_16", "PCM_24", "FLOAT"), default="PCM_16", help="WAV sample format"
    )


class _Progress:
    """One tqdm bar per run over the audio seconds to make, with files done and real-time factor."""

    def __init__(self, total_seconds: float, n_files: int, enabled: bool = True):
        import time

        from tqdm import tqdm

        self.t0 = time.perf_counter()
        self.time = time.perf_counter
        self.bar = tqdm(
            total=round(total_seconds, 2),
            unit="s",
            unit_scale=False,
            desc="inverting",
            file=sys.stderr,
            disable=not enabled,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}{postfix}]",
        )
        self.n_files = n_files
        self.files_done = 0
        self.done_s = 0.0  # audio seconds finished (whole blocks)
        self.block_s = 0.0  # audio seconds of the block in hand

    def _show(self, position: float) -> None:
        elapsed = max(self.time() - self.t0, 1e-9)
        self.bar.set_postfix_str(
            f"{self.files_done}/{self.n_files} files, RTF {position / elapsed:.1f}x", refresh=False
        )
        self.bar.update(round(min(position, self.bar.total or position), 2) - self.bar.n)  # <= 10 redraws/s

    def callback(self, p: Any) -> bool:
        """A :class:`melinvert.stage.Progress` event: move through the block, name the stage."""
        self.bar.set_description_str(f"inverting [{p.stage}]", refresh=False)
        self._show(self.done_s + self.block_s * min(1.0, p.done / max(p.planned, 1)))
        return False

    def advance(self, seconds: float) -> None:
        self.done_s += seconds
        self._show(self.done_s)

    def file_done(self) -> None:
        self.files_done += 1
        self._show(self.done_s)

    def close(self) -> None:
        self.bar.close()


def _partial_marker(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


def _invert_one(
    src: Path,
    dst: Path,
    cfg: MelConfig,
    args: argparse.Namespace,
    progress: _Progress,
    ui: Console,
    inputs: list[Path],
) -> None:
    """Stream one mel file's inversion into ``dst`` (atomically; a partial result on Ctrl-C)."""
    import tempfile

    import soundfile as sf

    from .io import check_output, load_mel
    from .pipeline import invert_blocks

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
    )
    check_output(dst, overwrite=True, protect=inputs)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    hop_s = cfg.hop_length / cfg.sample_rate
    written = 0
    try:
        with sf.SoundFile(
            tmp, "w", samplerate=cfg.sample_rate, channels=1, subtype=args.subtype, format="WAV"
        ) as f:
            try:
                block_frames = stream.block_frames
                total_frames = stream.mel.shape[-1]
                progress.block_s = min(block_frames, total_frames) * hop_s
                for chunk in stream:
                    a = chunk[0].detach().cpu().numpy()
                    f.write(a.clip(-1.0, 1.0) if args.subtype != "FLOAT" else a)
                    written += a.shape[-1]
                    progress.advance(a.shape[-1] / cfg.sample_rate)
                    progress.block_s = (
                        min(block_frames, max(total_frames - written / cfg.hop_length, 0)) * hop_s
                    )
            except KeyboardInterrupt:
                part = stream.partial()
                if part is not None:
                    a = part[0].detach().cpu().numpy()
                    f.write(a.clip(-1.0, 1.0) if args.subtype != "FLOAT" else a)
                    written += a.shape[-1]
                f.close()
                if written == 0:
                    ui.note(f"interrupted before any audio of {src} was estimated; nothing written")
                    raise
                os.replace(tmp, dst)
                _partial_marker(dst).write_text("interrupted; rerun to finish\n")
                ui.note(
                    f"interrupted: wrote the best estimate so far to {dst} ({written / cfg.sample_rate:.1f} s of "
                    f"{stream.total_length / cfg.sample_rate:.1f} s); rerun the same command to finish it"
                )
                raise
        os.replace(tmp, dst)
        _partial_marker(dst).unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)


def cmd_invert(args: argparse.Namespace, ui: Console) -> int:
    """Mel files or folders -> WAV files; finished outputs are skipped on a rerun."""
    from .io import MEL_EXTENSIONS, check_output, plan_outputs
    from .pipeline import parse_method

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    parse_method(args.method, args.iters)  # fail fast on a bad name
    plan = plan_outputs(args.inputs, args.output, ".wav", extensions=MEL_EXTENSIONS)
    inputs = [i for i, _ in plan]
    todo = []
    for src, dst in plan:
        if dst.exists() and not args.overwrite and not _partial_marker(dst).exists():
            ui.note(f"skipping {src}: {dst} exists (finished earlier; --overwrite to redo it)")
            continue
        check_output(dst, overwrite=True, protect=inputs)
        todo.append((src, dst))
    if not todo:
        return 0
    total = 0.0
    for src, _ in todo:
        total += _mel_seconds(src, cfg, args.layout)
    progress = _Progress(total, len(todo), enabled=not args.quiet)
    try:
        for src, dst in todo:
            _invert_one(src, dst, cfg, args, progress, ui, inputs)
            progress.file_done()
    finally:
        progress.close()
    for src, dst in todo:
        ui.out(f"{src} -> {dst}")
    return 0


def _mel_seconds(path: Path, cfg: MelConfig, layout: str) -> float:
    """Audio seconds a mel file will give (for the progress bar); 0 if it cannot be told cheaply."""
    from .io import read_mel_file, to_mels_first

    try:
        arr, _ = read_mel_file(path)
        mel, _ = to_mels_first(arr, n_mels=cfg.n_mels, layout=layout, source=str(path))
    except MelinvertError:
        return 0.0  # the real read reports the problem
    return cfg.n_samples(max(mel.shape[-1], cfg.min_frames)) / cfg.sample_rate


def _print_scores(ui: Console, rows: list[tuple[str, dict]]) -> None:
    keys = ("pesq_wb", "stoi", "log_mel_l1", "spectral_convergence", "rms_ratio_db", "peak", "lag_samples")
    ui.out(f"{'':<12}" + "".join(f"{k:>22}" for k in keys))
    for name, sc in rows:
        ui.out(f"{name:<12}" + "".join(f"{_fmt_metric(sc.get(k)):>22}" for k in keys))


def cmd_roundtrip(args: argparse.Namespace, ui: Console) -> int:
    """Audio -> mel -> audio with one method, then the score table."""
    import time

    from .dsp import mel_spectrogram
    from .io import check_output, load_audio, save_audio
    from .metrics import score
    from .pipeline import invert

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    check_output(args.output, overwrite=args.overwrite, protect=[args.input])
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
        args.output,
        out,
        cfg.sample_rate,
        subtype=args.subtype,
        overwrite=args.overwrite,
        protect=[args.input],
    ):
        ui.note(n)
    ui.out(f"{args.input} -> {cfg.name or 'config'} mel -> {args.method} -> {args.output}")
    ui.out(f"{len(y) / sr:.2f} s of audio in {wall:.2f} s (real-time factor {len(y) / sr / wall:.1f}x)")
    _print_scores(ui, [(args.method, score(y, out, sr, config=cfg, extras=not args.no_extras))])
    return 0


def cmd_demo(args: argparse.Namespace, ui: Console) -> int:
    """Synthesise a speech-like signal, write it, its mel and its inversions, and score them."""
    import time

    from .config import get_preset
    from .demo import speech_like
    from .dsp import mel_spectrogram
    from .io import check_output, save_audio, save_mel
    from .metrics import score
    from .pipeline import invert

    cfg = config_from_args(args) or get_preset("hifigan-22k-80")
    out = Path(args.output)
    methods = [m for m in args.methods.split(",") if m]
    files = [out / "original.wav", out / "original.mel.npy", *(out / f"{m}.wav" for m in methods)]
    for f in files:
        check_output(f, overwrite=args.overwrite)
    y = speech_like(cfg.sample_rate, seconds=args.seconds, seed=args.seed)
    save_audio(files[0], y, cfg.sample_rate, overwrite=args.overwrite)
    mel = mel_spectrogram(y, cfg)
    save_mel(files[1], mel, cfg, overwrite=args.overwrite)
    ui.out(
        f"wrote {files[0]} ({args.seconds:g} s speech-like signal) and its {cfg.name or ''} mel {files[1]}"
    )
    rows = []
    for m, f in zip(methods, files[2:]):
        t0 = time.perf_counter()
        est = invert(mel, cfg, method=m, seed=args.seed, length=len(y))
        wall = time.perf_counter() - t0
        save_audio(f, est, cfg.sample_rate, overwrite=args.overwrite)
        ui.out(f"wrote {f} ({m}: {wall:.2f} s, real-time factor {len(y) / cfg.sample_rate / wall:.0f}x)")
        rows.append((m, score(y, est, cfg.sample_rate, config=cfg)))
    _print_scores(ui, rows)
    ui.note(
        "a synthesised signal: its PESQ swings from one --seed to the next, so compare methods on "
        "real speech (melinvert bench) or see the figures in benchmarks/RESULTS.md"
    )
    return 0


def cmd_methods(args: argparse.Namespace, ui: Console) -> int:
    """List the inversion methods and stages."""
    from .pipeline import list_methods

    items = list_methods()
    width = max(len(k) for k in items)
    for k, v in items.items():
        ui.out(f"{k:<{width}}  {v}")
    return 0


def cmd_bench(args: argparse.Namespace, ui: Console) -> int:
    """Compare methods on the user's clips: results.csv, summary.md, figures and index.html."""
    from .bench import cmd_bench as run

    return run(args, ui)


# ---------------------------------------------------------------------- the table

#: Every subcommand, in ``--help`` order. Add one line here to add a command.
COMMANDS: list[Command] = [
    Command(
        "presets",
        cmd_presets,
        "list the built-in configurations, or show one in full",
        options=(
            arg("name", nargs="?", metavar="NAME", help="show this preset in full"),
            arg("--json", action="store_true", help="print only the config JSON (for --config)"),
        ),
        examples=("melinvert presets", "melinvert presets hifigan-22k-80 --json > hifigan.json"),
    ),
    Command(
        "mel",
        cmd_mel,
        "compute mel files (recording their config) from audio files or folders",
        options=(
            add_inputs,
            add_output,
            add_required_config,
            arg(
                "--format", choices=("npy", "npz", "pt"), help="mel file format (default: from -o, else npy)"
            ),
            arg("--time-first", action="store_true", help="store (frames, n_mels) as ParallelWaveGAN does"),
            add_overwrite,
            add_device,
        ),
        examples=(
            "melinvert mel speech.wav -o speech.npy --preset hifigan-22k-80",
            "melinvert mel corpus/ -o mels/ --preset vocos-24k-100 --format pt",
        ),
    ),
    Command(
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
    ),
    Command(
        "score",
        cmd_score,
        "objective scores (PESQ, STOI, log-mel L1, ...) of an estimate against its reference",
        options=(
            arg("reference", metavar="REF", help="reference audio"),
            arg("estimate", metavar="DEG", help="estimate to score (resampled to the reference's rate)"),
            add_config_options,
            arg("--json", metavar="OUT.json", help="also write the scores as JSON"),
            arg("--no-extras", action="store_true", help="skip PESQ and STOI"),
            add_overwrite,
        ),
        examples=("melinvert score ref.wav out.wav --preset hifigan-22k-80 --json scores.json",),
    ),
    Command(
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
    ),
    Command(
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
    ),
    Command(
        "demo",
        cmd_demo,
        "synthesise a speech-like signal, invert its mel with default and fast, and score them",
        options=(
            arg(
                "-o",
                "--output",
                default="melinvert-demo",
                metavar="DIR",
                help="output folder (default melinvert-demo)",
            ),
            add_config_options,
            arg("--methods", default="default,fast", help="comma-separated methods (default: default,fast)"),
            arg("--seconds", type=float, default=4.0, help="length of the signal (default 4)"),
            arg("--seed", type=int, default=0, help="seed of the signal and the inversion"),
            add_overwrite,
        ),
        examples=("melinvert demo -o demo/",),
    ),
    Command(
        "methods", cmd_methods, "list the inversion methods and their stages", examples=("melinvert methods",)
    ),
    Command(
        "bench",
        cmd_bench,
        "compare methods on your clips: results.csv, summary.md, figures and a listening page",
        options=(
            add_inputs,
            arg("-o", "--output", required=True, metavar="OUT_DIR", help="folder for results and page"),
            add_required_config,
            arg("--methods", default="default,fast", help="comma-separated methods (default: default,fast)"),
            arg("--with-librosa", action="store_true", help="add librosa's mel_to_audio as a reference row"),
            arg("--seed", type=int, default=0, help="seed of the inversions (default 0)"),
            arg("--no-extras", action="store_true", help="skip PESQ and STOI"),
            arg("--resume", action="store_true", help="continue OUT_DIR, skipping finished pairs"),
            add_overwrite,
            add_device,
        ),
        examples=("melinvert bench speech/ --preset hifigan-22k-80 --methods default,fast -o bench/",),
    ),
    Command(
        "train",
        cmd_train,
        "train a learned stage (refiner, degli, cnn_vocoder) on your audio for a mel config",
        options=(add_train_options,),
        examples=(
            "melinvert train refiner speech/ --preset hifigan-22k-80 -o runs/refiner --max-minutes 60",
            "melinvert train refiner speech/ --preset hifigan-22k-80 -o runs/refiner --resume",
            "melinvert invert mels/ -o wavs/ --preset hifigan-22k-80 --method refiner+pghi+fgla --model runs/refiner",
        ),
    ),
]


def register(command: Command) -> None:
    """Add (or replace, by name) a subcommand; for commands defined in other modules."""
    for i, c in enumerate(COMMANDS):
        if c.name == command.name:
            COMMANDS[i] = command
            return
    COMMANDS.append(command)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, built from :data:`COMMANDS`."""
    examples = [ex for c in COMMANDS for ex in c.examples[:1]]
    parser = _Parser(
        prog=PROG,
        description="Turn mel spectrograms of any convention back into audio.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n"
        "'melinvert COMMAND --help' explains each command. Exit status: 0 ok, 2 bad input or usage, "
        "130 interrupted, 1 internal error (MELINVERT_DEBUG=1 shows the traceback).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            help=c.help,
            description=c.description or c.help,
            epilog=("examples:\n" + "\n".join(f"  {e}" for e in c.examples)) if c.examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for option in c.options:
            option(p)
        p.set_defaults(_run=c.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    ui = Console()
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help and --version
            return e.code if isinstance(e.code, int) else 0
        if getattr(args, "_run", None) is None:
            ui.error(f"no command given; try '{PROG} --help'")
            return 2
        return int(args._run(args, ui) or 0)
    except (_UsageError, MelinvertError) as e:
        ui.error(str(e))
        return 2
    except KeyboardInterrupt:
        ui.error("interrupted")
        return 130
    except BrokenPipeError:  # e.g. 'melinvert presets | head'
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        return 0
    except Exception as e:
        if os.environ.get("MELINVERT_DEBUG"):
            traceback.print_exc()
        detail = _flat(str(e))[:200] or "(no message)"
        ui.error(
            f"internal error: {type(e).__name__}: {detail} -- this is a bug in melinvert; please report it "
            f"to {ISSUES_URL} (set MELINVERT_DEBUG=1 to see the traceback)"
        )
        return 1

"""What every command shares: the console, the command record, the option builders, the
config from ``--preset``/``--config``/``--stats``, output planning, the progress bar and the
signal policy.

Nothing here imports torch (nor numpy): ``melinvert --version``, ``--help`` and the parser
itself stay fast. Commands import the library inside their functions.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MelinvertError, check

if TYPE_CHECKING:
    from ..config import MelConfig

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
        print(f"{PROG}: note: {flat(message)}", file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        """An error on stderr: ``melinvert: error: ...``."""
        print(f"{PROG}: error: {flat(message)}", file=sys.stderr, flush=True)


def flat(message: str) -> str:
    return " ".join(str(message).split())


class UsageError(Exception):
    """An argparse error, reported as one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------- signals


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises ``KeyboardInterrupt``: whatever a command does on
    Ctrl-C (write the best estimate with its ``.partial`` marker, save a checkpoint, write the
    bench page) it does on SIGTERM too; the exit status is then 143 instead of 130."""


#: Exit statuses after Ctrl-C and after SIGTERM (128 + the signal number, as shells report).
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
_received: list[int] = []


def _on_sigterm(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)."""
    _received.clear()
    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: SIGTERM keeps its default behaviour
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def interrupted_status() -> int:
    """The exit status of a command that stopped on a signal and handled it itself."""
    return EXIT_TERMINATED if _received else EXIT_INTERRUPTED


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


def device_name(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (other torch devices, such as
    ``meta`` or ``mps``, cannot run melinvert: a usage error)."""
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a device melinvert runs on: use auto, cpu, cuda or cuda:N"
    )


def seed_value(text: str) -> int:
    """An argparse type: an integer seed from 0 to 2**63 - 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is out of range: a seed is an integer from 0 to 2**63 - 1")
    return v


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds > 0")
    return v


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda|cuda:N`` (default ``auto``: CUDA if available)."""
    parser.add_argument(
        "--device",
        default="auto",
        type=device_name,
        metavar="DEV",
        help="auto (CUDA if available), cpu, cuda or cuda:N",
    )


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
    parser.add_argument(
        "--seed", type=seed_value, default=0, help="seed for random initial phases (default 0)"
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="RUN",
        help="trained weights for the learned stages (refiner, degli, cnn_vocoder): a 'melinvert train' "
        "run folder or a .safetensors checkpoint (repeatable; default: the weights shipped for the preset)",
    )
    parser.add_argument(
        "--strict-range",
        action="store_true",
        help="refuse mel values below the compression's floor instead of clamping them with a notice "
        "(predicted mels often dip a little below it)",
    )


def add_subtype(parser: argparse.ArgumentParser) -> None:
    """``--subtype PCM_16|PCM_24|FLOAT`` for WAV outputs."""
    parser.add_argument(
        "--subtype", choices=("PCM_16", "PCM_24", "FLOAT"), default="PCM_16", help="WAV sample format"
    )


def config_from_args(args: argparse.Namespace, *, required: bool = False) -> MelConfig | None:
    """The config named by ``--preset`` or ``--config`` (with ``--stats`` applied), or ``None``."""
    from ..config import MelConfig, get_preset

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
        from ..io import load_stats

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
    from ..io import check_output, plan_outputs, sidecar_path

    plan = plan_outputs(args.inputs, args.output, suffix, extensions=extensions)
    inputs = [i for i, _ in plan]
    overwrite = bool(getattr(args, "overwrite", False))
    for _, out in plan:
        check_output(out, overwrite=overwrite, protect=inputs)
        if sidecars:
            check_output(sidecar_path(out), overwrite=overwrite, protect=inputs)
    return plan


def partial_marker(path: Path) -> Path:
    """``PATH.partial``: marks an output holding a best estimate so far (an interrupted run)."""
    return path.with_name(path.name + ".partial")


# ---------------------------------------------------------------------- progress and scores


class Progress:
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


def fmt_metric(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4f}" if math.isfinite(v) else str(v)
    return str(v)


def json_value(v: Any) -> Any:
    """JSON-safe value: non-finite floats become the strings "inf", "-inf", "nan"."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if hasattr(v, "item") and callable(v.item):
        return json_value(v.item())
    return v


def print_scores(ui: Console, rows: list[tuple[str, dict]]) -> None:
    keys = ("pesq_wb", "stoi", "log_mel_l1", "spectral_convergence", "rms_ratio_db", "peak", "lag_samples")
    ui.out(f"{'':<12}" + "".join(f"{k:>22}" for k in keys))
    for name, sc in rows:
        ui.out(f"{name:<12}" + "".join(f"{fmt_metric(sc.get(k)):>22}" for k in keys))

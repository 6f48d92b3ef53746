"""``melinvert bench``: compare inversion methods on the user's own clips.

For each clip and method: the config's mel of the clip, :func:`melinvert.invert` of that mel
(timed), :func:`melinvert.metrics.score` of the result against the clip, and the WAV and a
figure of it. The results go under one output folder::

    OUT_DIR/
      results.csv        one row per clip x method
      summary.md         per-method means, a ranking, skipped clips, the machine, the command
      index.html         the listening page (relative links only)
      results.jsonl      finished pairs, one JSON line each (what --resume reads)
      bench.json         the config and the commands that wrote this folder
      audio/CLIP/original.wav, audio/CLIP/METHOD.wav
      figures/CLIP/original.png, figures/CLIP/METHOD.png
      figures/quality_vs_rtf.png, figures/method_METHOD.png

This module composes the engine (:mod:`melinvert.pipeline`), the measures
(:mod:`melinvert.metrics`) and the drawing (:mod:`melinvert.report`); the maths behind the
figures (dB spectrograms, error maps) and the summary (means, ranking) is here, the drawing
and formatting is in :mod:`melinvert.report`.

A pair is recorded in ``results.jsonl`` only after its WAV and figure exist, so after a
Ctrl-C or a crash ``--resume`` redoes exactly the unfinished pairs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .config import MelConfig
from .errors import MelinvertError, check

#: Name of the librosa reference row (``--with-librosa``).
LIBROSA = "librosa"
#: Files bench writes at the top of OUT_DIR.
RESULTS_CSV = "results.csv"
SUMMARY_MD = "summary.md"
INDEX_HTML = "index.html"
RESULTS_JSONL = "results.jsonl"
MANIFEST = "bench.json"
#: Sub-folders bench writes.
AUDIO_DIR = "audio"
FIGURES_DIR = "figures"

#: Columns of results.csv, in order.
CSV_COLUMNS = (
    "clip",
    "method",
    "audio_s",
    "wall_s",
    "rtf",
    "pesq_wb",
    "stoi",
    "log_mel_l1",
    "spectral_convergence",
    "lsd",
    "lag_samples",
    "rms_ratio_db",
    "snr_db",
    "peak",
    "distillmos",
    "dnsmos_ovrl",
    "dnsmos_sig",
    "dnsmos_bak",
    "dnsmos_p808",
    "sample_rate",
    "source",
    "notes",
)
#: Columns of the per-method summary table.
SUMMARY_COLUMNS = (
    "rank",
    "method",
    "clips",
    "pesq_wb",
    "stoi",
    "log_mel_l1",
    "spectral_convergence",
    "lsd",
    "abs_lag_ms",
    "rms_ratio_db",
    "rtf",
)
#: Summary columns added by ``--mos`` (no-reference MOS predictors, 1-5: higher is better).
MOS_SUMMARY_COLUMNS = ("distillmos", "dnsmos_ovrl")
#: Measures averaged per method (the lag as its mean absolute value in ms).
_MEAN_KEYS = (
    "pesq_wb", "stoi", "log_mel_l1", "spectral_convergence", "lsd", "rms_ratio_db",
    "distillmos", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808",
)  # fmt: skip
#: Panels of each method's bar chart.
_BAR_KEYS = ("pesq_wb", "stoi", "log_mel_l1", "spectral_convergence", "lsd", "rtf")
#: Mel figures: colour range below the clip's loudest bin, and the error map's range.
_DISPLAY_RANGE_DB = 80.0
_ERROR_RANGE_DB = 20.0


# ---------------------------------------------------------------------- settings and records


@dataclasses.dataclass(frozen=True)
class Clip:
    """An input clip: its name in the outputs and the file it comes from."""

    id: str
    source: Path


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """What ``melinvert bench`` was asked to do.

    Attributes
    ----------
    inputs : sequence of path
        Audio files or folders (walked recursively).
    config : MelConfig
        The mel to invert (each clip is resampled to its rate).
    methods : sequence of str
        Method names for :func:`melinvert.invert`.
    out_dir : Path
    device : str
        ``auto``, ``cpu``, ``cuda``, ...
    seed : int
    extras : bool
        Compute PESQ and STOI.
    mos : bool
        Compute the no-reference MOS predictors (DistillMOS, DNSMOS; ``melinvert[mos]``).
    with_librosa : bool
        Add ``librosa.feature.inverse.mel_to_audio`` as a reference row.
    resume, overwrite : bool
        What to do with an existing ``out_dir``.
    command : str
        The command line, recorded in the summary.
    progress : bool
        Show a progress bar on stderr (when it is a terminal).
    """

    inputs: Sequence[str | os.PathLike]
    config: MelConfig
    methods: Sequence[str]
    out_dir: Path
    device: str = "auto"
    seed: int = 0
    extras: bool = True
    mos: bool = False
    with_librosa: bool = False
    resume: bool = False
    overwrite: bool = False
    command: str = ""
    progress: bool = True

    @property
    def all_methods(self) -> list[str]:
        """The methods, then the librosa reference when asked for."""
        return [*self.methods, *([LIBROSA] if self.with_librosa else [])]


@dataclasses.dataclass
class BenchOutcome:
    """What a run produced: the rows reported, the clips skipped, whether it was cut short."""

    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    failed: list[tuple[str, str, str]]
    interrupted: bool
    pairs_run: int
    pairs_resumed: int
    summary: str


# ---------------------------------------------------------------------- the output folder


def find_clips(inputs: Sequence[str | os.PathLike], out_dir: Path) -> list[Clip]:
    """The audio files named by ``inputs`` (folders walked), each with a unique output name.

    Names mirror the folder structure (``IN/a/b.wav`` -> ``a/b``); a file given directly is
    named by its stem. Missing inputs and folders without audio are an error; unreadable
    files are not (they are skipped later, and listed).
    """
    from .io import AUDIO_EXTENSIONS, plan_outputs

    audio_root = out_dir / AUDIO_DIR
    plan = plan_outputs(inputs, os.fspath(audio_root) + os.sep, ".wav", extensions=AUDIO_EXTENSIONS)
    out_real = os.path.realpath(out_dir)
    clips = []
    for src, dst in plan:
        real = os.path.realpath(src)
        check(
            not (real == out_real or real.startswith(out_real + os.sep)),
            f"input {str(src)!r} lies inside the output folder {str(out_dir)!r}; choose another -o",
        )
        clips.append(Clip(dst.relative_to(audio_root).with_suffix("").as_posix(), Path(src)))
    return clips


def _is_bench_dir(out_dir: Path) -> bool:
    return (out_dir / MANIFEST).is_file()


def prepare_out_dir(settings: BenchSettings) -> list[dict[str, Any]]:
    """Check (and, with ``overwrite``, clear) the output folder; return the finished records.

    A folder that exists and is not empty needs ``resume`` (continue it: its config must be
    the one asked for) or ``overwrite`` (start again; only a folder bench wrote is cleared).

    Returns
    -------
    list of dict
        The records of ``results.jsonl`` (empty unless resuming).
    """
    out = settings.out_dir
    check(not (settings.resume and settings.overwrite), "--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise MelinvertError(f"output {str(out)!r} is a file; bench needs a folder")
    nonempty = out.is_dir() and any(out.iterdir())
    records: list[dict[str, Any]] = []
    if nonempty:
        if settings.resume:
            check(
                _is_bench_dir(out),
                f"cannot resume: {str(out)!r} has no {MANIFEST}, so it was not written by melinvert bench",
            )
            manifest = _read_manifest(out)
            try:
                recorded = MelConfig.from_dict(manifest["config"])
            except (KeyError, TypeError, ValueError) as e:
                raise MelinvertError(f"cannot resume: {str(out / MANIFEST)!r} is damaged ({e})") from None
            check(
                recorded == settings.config,
                f"cannot resume: {str(out)!r} was benchmarked with another config "
                f"({recorded.name or recorded.describe()}); pass that preset or --overwrite",
            )
            records = read_records(out / RESULTS_JSONL)
        elif settings.overwrite:
            check(
                _is_bench_dir(out),
                f"refusing to clear {str(out)!r}: it exists and was not written by melinvert bench "
                "(no bench.json); choose a new folder",
            )
            for name in (RESULTS_CSV, SUMMARY_MD, INDEX_HTML, RESULTS_JSONL, MANIFEST):
                (out / name).unlink(missing_ok=True)
            for name in (AUDIO_DIR, FIGURES_DIR):
                if (out / name).is_dir():
                    shutil.rmtree(out / name)
        else:
            raise MelinvertError(
                f"output folder {str(out)!r} already exists; pass resume=True to continue it or "
                "overwrite=True to start again",
                cli=f"output folder {str(out)!r} already exists; pass --resume to continue it or --overwrite "
                "to start again",
            )
    _write_manifest(out, settings)
    return records


def _read_manifest(out: Path) -> dict[str, Any]:
    try:
        doc = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MelinvertError(f"cannot read {str(out / MANIFEST)!r}: {e}") from None
    check(isinstance(doc, dict), f"{str(out / MANIFEST)!r} is not a JSON object")
    return doc


def _write_manifest(out: Path, settings: BenchSettings) -> None:
    from .io import write_text

    commands: list[str] = []
    if _is_bench_dir(out):
        old = _read_manifest(out).get("commands")
        if isinstance(old, list):
            commands = [str(c) for c in old]
    doc = {
        "melinvert": __version__,
        "config": settings.config.to_dict(),
        "preset": settings.config.name,
        "commands": [*commands, settings.command],
    }
    write_text(out / MANIFEST, json.dumps(doc, indent=2) + "\n", overwrite=True)


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _from_json(v: Any) -> Any:
    if v in ("inf", "-inf", "nan"):
        return float(v)
    return v


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``results.jsonl``; a line cut short by a crash is dropped (and the file
    rewritten without it, so that later appends start on a fresh line)."""
    from .io import write_text

    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MelinvertError(f"cannot read {str(path)!r}: {e}") from None
    records, good, damaged = [], [], False
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            damaged = True
            continue
        if isinstance(rec, dict) and rec.get("kind") in ("clip", "pair"):
            records.append({k: _from_json(v) for k, v in rec.items()})
            good.append(line)
        else:
            damaged = True
    if damaged or (text and not text.endswith("\n")):
        write_text(path, "".join(g + "\n" for g in good), overwrite=True)
    return records


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line and ``fsync`` it: a record is either whole or dropped on resume."""
    from .io import append_text

    append_text(path, json.dumps({k: _json_safe(v) for k, v in record.items()}, allow_nan=False) + "\n")


# ---------------------------------------------------------------------- maths for the report


def mel_db(y: np.ndarray, config: MelConfig) -> np.ndarray:
    """The config's linear mel of ``y`` in dB, for display.

    Parameters
    ----------
    y : np.ndarray [shape=(samples,), float]
    config : MelConfig

    Returns
    -------
    np.ndarray [shape=(n_mels, frames), float32, dB re 1]
        ``20 log10`` of the mel magnitude (whatever the config's power), floored at -100 dB.
    """
    from .dsp import linear_mel

    with torch.no_grad():
        lin = linear_mel(torch.as_tensor(np.asarray(y, dtype=np.float32)), config).numpy()
    p = float(config.power)
    return ((20.0 / p) * np.log10(np.maximum(lin, 1e-5**p))).astype(np.float32)


def _display_range(ref_db: np.ndarray) -> tuple[float, float]:
    vmax = float(np.max(ref_db))
    return vmax - _DISPLAY_RANGE_DB, vmax


def _pesq_stoi_notes(
    ref: np.ndarray, est: np.ndarray, sr: int, scores: Mapping[str, Any], extras: bool
) -> list[str]:
    """Why PESQ or STOI is empty (never a made-up number)."""
    from .metrics import UnscorableError, extras_available, pesq_wb, stoi

    notes = []
    if not extras:
        if scores.get("pesq_wb") is None or scores.get("stoi") is None:
            notes.append("PESQ/STOI skipped (--no-extras)")
        return notes
    have = extras_available()
    n = min(ref.shape[-1], est.shape[-1])
    for key, pkg, fn in (("pesq_wb", "pesq", pesq_wb), ("stoi", "pystoi", stoi)):
        if scores.get(key) is not None:
            continue
        if not have[pkg]:
            notes.append(f"{key}: the {pkg} package is not installed (pip install 'melinvert[metrics]')")
            continue
        try:
            fn(ref[:n], est[:n], sr)
            notes.append(f"{key}: not measured")
        except UnscorableError as e:
            notes.append(f"{key}: {e}")
    return notes


def summary_columns(settings: BenchSettings) -> tuple[str, ...]:
    """The summary table's columns: :data:`SUMMARY_COLUMNS`, with the MOS columns when asked."""
    if not settings.mos:
        return SUMMARY_COLUMNS
    return (*SUMMARY_COLUMNS[:-1], *MOS_SUMMARY_COLUMNS, SUMMARY_COLUMNS[-1])


def summarise(
    rows: Sequence[Mapping[str, Any]], methods: Sequence[str], sample_rate: int
) -> tuple[list[dict[str, Any]], str]:
    """Per-method means and a ranking.

    Parameters
    ----------
    rows : sequence of mapping
        The CSV rows.
    methods : sequence of str
        In the order asked for.
    sample_rate : int
        Hz of the compared audio (for the lag in ms).

    Returns
    -------
    table : list of dict
        One row per method with results: ``clips``, the mean of each measure over the clips
        where it was measured, ``abs_lag_ms`` (mean absolute lag), ``rtf`` (total wall time
        over total audio time) and ``rank``; sorted by rank.
    note : str
        What the ranking is based on.
    """
    table = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        entry: dict[str, Any] = {"method": m, "clips": len(mine)}
        for key in _MEAN_KEYS:
            vals = [float(r[key]) for r in mine if r.get(key) is not None and math.isfinite(float(r[key]))]
            entry[key] = float(np.mean(vals)) if vals else None
        lags = [abs(int(r["lag_samples"])) for r in mine if r.get("lag_samples") is not None]
        entry["abs_lag_ms"] = 1000.0 * float(np.mean(lags)) / sample_rate if lags else None
        audio = sum(float(r["audio_s"]) for r in mine)
        wall = sum(float(r["wall_s"]) for r in mine)
        entry["audio_s"] = audio
        entry["wall_s"] = wall
        entry["rtf"] = wall / audio if audio > 0 else None
        table.append(entry)
    if table and all(e["pesq_wb"] is not None for e in table):
        key, better, label = "pesq_wb", -1.0, "mean PESQ-WB (higher is better)"
    else:
        key, better, label = (
            "log_mel_l1",
            1.0,
            "mean log-mel L1 (lower is better; PESQ-WB was not measured for every method)",
        )
    table.sort(key=lambda e: (e[key] is None, better * (e[key] if e[key] is not None else 0.0)))
    for i, e in enumerate(table, 1):
        e["rank"] = i
    counts = {e["clips"] for e in table}
    note = f"Ranked by {label}; means over the clips each method finished."
    if len(counts) > 1:
        note += " Methods finished different numbers of clips, so their means are not over the same clips."
    return table, note


# ---------------------------------------------------------------------- the run


def load_average() -> float | None:
    """The 1-minute load average, or None where the system does not report one."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def machine_lines(device: str, load_at_start: float | None = None) -> list[str]:
    """The machine, in lines: CPU, cores (and the load average when the run started), device,
    library versions."""
    from .dsp import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    dev = resolve_device(device)
    dev_text = str(dev)
    if dev.type == "cuda":
        dev_text += f" ({torch.cuda.get_device_name(dev)})"
    load = (
        ""
        if load_at_start is None
        else f"; load average {load_at_start:.1f} at the start (timings inflate when busy)"
    )
    lines = [
        f"CPU: {cpu}; {os.cpu_count()} cores, {usable} usable, torch threads {torch.get_num_threads()}{load}",
        f"device: {dev_text}",
        f"torch {torch.__version__}, numpy {np.__version__}, melinvert {__version__}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
    ]
    try:
        import librosa

        lines.append(f"librosa {librosa.__version__}")
    except ImportError:
        pass
    return lines


def _warm_up(methods: Iterable[str], config: MelConfig, device: str, seed: int) -> None:
    """Run every method once on 0.5 s of noise so first-call costs stay out of the timings."""
    from .dsp import mel_spectrogram
    from .pipeline import invert

    rng = np.random.default_rng(0)
    n = max(config.min_samples, config.sample_rate // 2)
    y = (0.1 * rng.standard_normal(n)).astype(np.float32)
    mel = mel_spectrogram(y, config)
    for m in methods:
        if m == LIBROSA:
            _librosa_invert(y, config.sample_rate)
        else:
            invert(mel, config, method=m, seed=seed, device=device)


def _librosa_invert(y: np.ndarray, sr: int) -> np.ndarray:
    """librosa as its users call it: melspectrogram with defaults, then mel_to_audio with defaults."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr)
    return np.asarray(librosa.feature.inverse.mel_to_audio(mel, sr=sr), dtype=np.float32)


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


def _progress(total: int, initial: int, enabled: bool = True) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="pair",
        desc="bench",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None if enabled else True,
    )


@dataclasses.dataclass
class _Run:
    """What a bench run has done so far (finished records, skips, failures) and its bar."""

    settings: BenchSettings
    done_pairs: dict[tuple[str, str], dict[str, Any]]
    done_clips: dict[str, dict[str, Any]]
    note: Callable[[str], None]
    bar: Any = None
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    pairs_run: int = 0

    @property
    def out(self) -> Path:
        return self.settings.out_dir

    def tell(self, msg: str) -> None:
        """A notice that does not break the progress bar."""
        with self.bar.external_write_mode(file=sys.stderr):
            self.note(msg)

    def record(self, rec: dict[str, Any]) -> None:
        """Append a finished clip or pair to results.jsonl (after its files exist)."""
        append_record(self.out / RESULTS_JSONL, rec)
        if rec["kind"] == "pair":
            self.done_pairs[(rec["clip"], rec["method"])] = rec
        else:
            self.done_clips[rec["clip"]] = rec


def _checked_settings(settings: BenchSettings) -> BenchSettings:
    """``settings`` with the methods deduplicated, after checking every name (before any work)."""
    from .pipeline import parse_method

    methods = list(dict.fromkeys(settings.methods))
    check(bool(methods), "no methods given: pass --methods, e.g. --methods default,fast")
    for m in methods:
        check(
            m != LIBROSA, f"{LIBROSA!r} is not a melinvert method; pass --with-librosa for the reference row"
        )
        parse_method(m)
    if settings.with_librosa:
        try:
            import librosa  # noqa: F401
        except ImportError:
            raise MelinvertError(
                "--with-librosa needs librosa, which is not installed: pip install librosa"
            ) from None
    return dataclasses.replace(settings, methods=methods)


def _finished(records: Sequence[dict[str, Any]], out: Path, kind: str) -> dict[Any, dict[str, Any]]:
    """The records of ``kind`` whose files are still there (a record whose files have gone
    counts as unfinished), by clip (``clip``) or by (clip, method) (``pair``)."""
    return {
        (r["clip"], r["method"]) if kind == "pair" else r["clip"]: r
        for r in records
        if r["kind"] == kind and (out / r["audio"]).is_file() and (out / r["figure"]).is_file()
    }


def run_bench(
    settings: BenchSettings,
    *,
    note: Callable[[str], None] = lambda _msg: None,
) -> BenchOutcome:
    """Run the benchmark and write everything under ``settings.out_dir``.

    Parameters
    ----------
    settings : BenchSettings
    note : callable
        Receives one-line notices (a clip skipped, resampling, clipping).

    Returns
    -------
    BenchOutcome
        ``interrupted`` is True after a Ctrl-C (or SIGTERM, when the caller turns it into a
        ``KeyboardInterrupt``): what was finished is reported all the same.
    """
    from .report import require_matplotlib

    require_matplotlib()
    load = load_average()
    settings = _checked_settings(settings)
    all_methods = settings.all_methods
    clips = find_clips(settings.inputs, settings.out_dir)
    records = prepare_out_dir(settings)
    state = _Run(
        settings,
        _finished(records, settings.out_dir, "pair"),
        _finished(records, settings.out_dir, "clip"),
        note,
    )
    resumed = sum(1 for c in clips for m in all_methods if (c.id, m) in state.done_pairs)
    state.bar = _progress(len(clips) * len(all_methods), resumed, settings.progress)
    interrupted = False
    try:
        pending = {m for c in clips for m in all_methods if (c.id, m) not in state.done_pairs}
        if pending:
            state.bar.set_postfix_str("warming up")
            _warm_up(
                [m for m in all_methods if m in pending], settings.config, settings.device, settings.seed
            )
        for clip in clips:
            _bench_clip(clip, state)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        state.bar.close()
    rows, summary = write_report(
        settings, clips, state.done_clips, state.done_pairs, state.skipped, state.failed, interrupted, load
    )
    return BenchOutcome(rows, state.skipped, state.failed, interrupted, state.pairs_run, resumed, summary)


def _bench_clip(clip: Clip, state: _Run) -> None:
    """Every unfinished pair of one clip (and the clip's own WAV and figure, once)."""
    from .io import load_audio

    cfg, out = state.settings.config, state.out
    todo = [m for m in state.settings.all_methods if (clip.id, m) not in state.done_pairs]
    if not todo and clip.id in state.done_clips:
        return
    try:
        ref, sr, notices = load_audio(clip.source, cfg.sample_rate)
        check(
            ref.shape[0] >= cfg.min_samples,
            f"{ref.shape[0]} samples at {sr} Hz, fewer than the {cfg.min_samples} one frame needs",
        )
        check(bool(np.any(ref)), "the clip is silent (all zeros)")
    except MelinvertError as e:
        reason = str(e).replace(f"{str(clip.source)!r} ", "").replace(f"{clip.source}: ", "")
        state.skipped.append((str(clip.source), reason))
        state.tell(f"skipped {clip.source}: {reason}")
        state.bar.update(len(todo))
        return
    for n in notices:
        state.tell(n)
    ref_db = mel_db(ref, cfg)
    vmin, vmax = _display_range(ref_db)
    if clip.id not in state.done_clips:
        clip_audio = out / AUDIO_DIR / clip.id / "original.wav"
        clip_fig = out / FIGURES_DIR / clip.id / "original.png"
        _save_wav(clip_audio, ref, sr)
        _plot(clip_fig, ref_db, sr, cfg, f"{clip.id}: original", vmin, vmax, None)
        state.record(
            {
                "kind": "clip",
                "clip": clip.id,
                "source": str(clip.source),
                "sample_rate": sr,
                "audio_s": ref.shape[0] / sr,
                "audio": _rel(clip_audio, out),
                "figure": _rel(clip_fig, out),
            }
        )
    inputs: dict[str, Any] = {}  # the mel, and the clip at its own rate, made once per clip
    for m in todo:
        state.bar.set_postfix_str(f"{clip.id} / {m}")
        _bench_pair(clip, m, ref, sr, (ref_db, vmin, vmax), inputs, state)
        state.bar.update(1)


def _bench_pair(
    clip: Clip,
    m: str,
    ref: np.ndarray,
    sr: int,
    display: tuple[np.ndarray, float, float],
    inputs: dict[str, Any],
    state: _Run,
) -> None:
    """One method on one clip: invert (timed), score, write the WAV and figure, record."""
    from .metrics import score

    settings, cfg, out = state.settings, state.settings.config, state.out
    ref_db, vmin, vmax = display
    try:
        est, wall = _estimate(m, clip, ref, settings, inputs)
        check(bool(np.isfinite(est).all()), f"{m} produced NaN or Inf samples")
        est_raw, est = est, as_written(est, sr)  # score what the WAV holds, as 'melinvert score' sees it
        # in the preset's band, as 'score'
        scores = score(ref, est, sr, config=cfg, extras=settings.extras, mos=settings.mos)
    except MelinvertError as e:
        state.failed.append((clip.id, m, str(e)))
        state.tell(f"{clip.id} / {m} failed: {e}")
        return
    notes = _pesq_stoi_notes(ref, est, sr, scores, settings.extras)
    audio_path = out / AUDIO_DIR / clip.id / f"{m}.wav"
    fig_path = out / FIGURES_DIR / clip.id / f"{m}.png"
    notes += _save_wav(audio_path, est_raw, sr)
    n = min(ref.shape[0], est.shape[0])
    est_db = mel_db(est[:n], cfg)
    ref_db_n = ref_db if n == ref.shape[0] else mel_db(ref[:n], cfg)
    _plot(fig_path, est_db, sr, cfg, f"{clip.id}: {m}", vmin, vmax, est_db - ref_db_n)
    audio_s = ref.shape[0] / sr
    state.record(
        {
            "kind": "pair",
            "clip": clip.id,
            "method": m,
            "source": str(clip.source),
            "sample_rate": sr,
            "audio_s": audio_s,
            "wall_s": wall,
            "rtf": wall / audio_s,
            **{k: scores.get(k) for k in CSV_COLUMNS if k in scores and k != "duration_s"},
            "notes": "; ".join(notes),
            "audio": _rel(audio_path, out),
            "figure": _rel(fig_path, out),
        }
    )
    state.pairs_run += 1


def _estimate(
    method: str, clip: Clip, ref: np.ndarray, settings: BenchSettings, inputs: dict[str, Any]
) -> tuple[np.ndarray, float]:
    """One method's estimate of a clip and the wall seconds its inversion took.

    Parameters
    ----------
    method : str
        A melinvert method, or :data:`LIBROSA`.
    clip : Clip
    ref : np.ndarray [shape=(samples,), float32]
        The clip at the config's rate.
    settings : BenchSettings
    inputs : dict
        A per-clip cache of what the methods start from (the config's mel; the clip at its own
        rate for librosa).

    Returns
    -------
    estimate : np.ndarray [shape=(samples,), float32]
        At the config's rate (librosa's output is resampled to it).
    wall_s : float
        Seconds of the inversion alone.
    """
    from .dsp import mel_spectrogram
    from .io import load_audio
    from .pipeline import invert

    cfg = settings.config
    if method == LIBROSA:
        if "native" not in inputs:
            y, sr, _ = load_audio(clip.source)
            inputs["native"] = (y, sr)
        y, sr = inputs["native"]
        t0 = time.perf_counter()
        est = _librosa_invert(y, sr)
        wall = time.perf_counter() - t0
        if sr != cfg.sample_rate:
            import soxr

            est = soxr.resample(est, sr, cfg.sample_rate, quality="VHQ")
    else:
        if "mel" not in inputs:
            inputs["mel"] = mel_spectrogram(ref, cfg, device=settings.device)  # numpy in, numpy out
        t0 = time.perf_counter()
        est = invert(inputs["mel"], cfg, method=method, seed=settings.seed, device=settings.device)
        wall = time.perf_counter() - t0
    return np.asarray(est, dtype=np.float32).reshape(-1), wall


def as_written(y: np.ndarray, sr: int) -> np.ndarray:
    """``y`` as the bench's 16-bit WAV of it holds it (clipped to [-1, 1] and rounded by
    libsndfile, as :func:`melinvert.io.save_audio` writes), float32 ``(samples,)``.

    The bench scores this, not the float estimate: a user scoring the WAV with ``melinvert
    score`` gets the same numbers. (16-bit rounding alone moved the log-mel L1 of a clip with
    digital silence from 0.166 to 0.295: the rounding noise lies above the log floor.)
    """
    import io as _io

    import soundfile as sf

    buf = _io.BytesIO()
    sf.write(buf, np.clip(np.asarray(y, dtype=np.float32), -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    buf.seek(0)
    out, _ = sf.read(buf, dtype="float32")
    return out


def _save_wav(path: Path, y: np.ndarray, sr: int) -> list[str]:
    from .io import save_audio

    notices = save_audio(path, y, sr, "PCM_16", overwrite=True)
    return [n.replace(f"{path}: ", "the WAV for listening: ") for n in notices]


def _plot(
    path: Path,
    db: np.ndarray,
    sr: int,
    cfg: MelConfig,
    title: str,
    vmin: float,
    vmax: float,
    error: np.ndarray | None,
) -> None:
    from .report import plot_mel

    duration = db.shape[-1] * cfg.hop_length / sr
    if error is not None:
        error = np.clip(error, -_ERROR_RANGE_DB, _ERROR_RANGE_DB)
    plot_mel(
        path,
        db,
        duration_s=duration,
        title=title,
        vmin=vmin,
        vmax=vmax,
        error_db=error,
        error_range_db=_ERROR_RANGE_DB,
    )


def _csv_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in CSV_COLUMNS}


def write_report(
    settings: BenchSettings,
    clips: Sequence[Clip],
    done_clips: Mapping[str, Mapping[str, Any]],
    done_pairs: Mapping[tuple[str, str], Mapping[str, Any]],
    skipped: Sequence[tuple[str, str]],
    failed: Sequence[tuple[str, str, str]],
    interrupted: bool,
    load_at_start: float | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Write results.csv, the summary figures, summary.md and index.html for the finished pairs.

    Returns
    -------
    rows : list of dict
        The CSV rows (clip order, then method order).
    summary : str
        The per-method table in Markdown.
    """
    from .io import write_text
    from .report import markdown_table, render_page, write_csv

    out = settings.out_dir
    cfg = settings.config
    methods = settings.all_methods
    rows = [_csv_row(done_pairs[(c.id, m)]) for c in clips for m in methods if (c.id, m) in done_pairs]
    write_csv(out / RESULTS_CSV, CSV_COLUMNS, rows)
    table, ranking = summarise(rows, methods, cfg.sample_rate)
    figures, detail_figures = _summary_figures(out, table, rows)
    notes = _notes(settings, rows, interrupted, failed)
    total_s = sum(float(r["audio_s"]) for r in done_clips.values() if r["clip"] in {c.id for c in clips})
    n_clips = len([c for c in clips if c.id in done_clips])
    intro = [
        f"config: {cfg.name or 'custom'} ({cfg.describe()})",
        f"{n_clips} of {len(clips)} clips ({total_s:.1f} s of audio), methods: {', '.join(methods)}; "
        f"{len(rows)} of {len(clips) * len(methods)} pairs finished"
        + (" (interrupted: rerun with --resume to finish)" if interrupted else ""),
    ]
    machine = machine_lines(settings.device, load_at_start)
    columns = summary_columns(settings)
    summary_md = markdown_table(columns, table) if table else "(no pair finished)"
    md = _summary_markdown(settings, intro, summary_md, ranking, skipped, notes, machine)
    write_text(out / SUMMARY_MD, md, overwrite=True)
    page = render_page(
        title=f"melinvert bench: {cfg.name or 'custom config'}",
        intro=intro,
        summary_columns=columns,
        summary_rows=table,
        ranking_note=ranking,
        figures=figures,
        clips=_clip_views(clips, methods, done_clips, done_pairs),
        detail_figures=detail_figures,
        skipped=skipped,
        notes=notes,
        machine=machine,
        command=settings.command,
        links=[(RESULTS_CSV, "results.csv"), (SUMMARY_MD, "summary.md")],
    )
    write_text(out / INDEX_HTML, page, overwrite=True)
    return rows, summary_md


def _summary_figures(
    out: Path, table: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Quality against real-time factor over the methods, and one bar chart per method:
    ``(figures, detail_figures)`` as (relative path, caption) pairs."""
    from .report import plot_method_bars, plot_quality_vs_rtf

    figures: list[tuple[str, str]] = []
    detail_figures: list[tuple[str, str]] = []
    if not table:
        return figures, detail_figures
    use_pesq = all(e["pesq_wb"] is not None for e in table)
    qkey = "pesq_wb" if use_pesq else "log_mel_l1"
    qlabel = "PESQ-WB (higher is better)" if use_pesq else "log-mel L1 (lower is better)"
    means = [(e["method"], e["rtf"], e[qkey]) for e in table if e["rtf"] and e[qkey] is not None]
    per_clip = [(r["method"], r["rtf"], r[qkey]) for r in rows if r.get(qkey) is not None and r["rtf"]]
    p = plot_quality_vs_rtf(out / FIGURES_DIR / "quality_vs_rtf.png", means, per_clip, quality_label=qlabel)
    figures.append((_rel(p, out), f"{qlabel} against real-time factor, per method (large) and clip (small)"))
    for e in table:
        m = e["method"]
        mine = [r for r in rows if r["method"] == m]
        cols = {k: [r.get(k) for r in mine] for k in _BAR_KEYS}
        p = plot_method_bars(
            out / FIGURES_DIR / f"method_{m}.png",
            m,
            [r["clip"] for r in mine],
            cols,
            means={k: e.get(k) for k in _BAR_KEYS},
        )
        detail_figures.append((_rel(p, out), f"{m}: scores per clip (dashed: mean)"))
    return figures, detail_figures


def _summary_markdown(
    settings: BenchSettings,
    intro: Sequence[str],
    summary_md: str,
    ranking: str,
    skipped: Sequence[tuple[str, str]],
    notes: Sequence[str],
    machine: Sequence[str],
) -> str:
    """The text of summary.md."""
    cfg = settings.config
    md = [f"# melinvert bench: {cfg.name or 'custom config'}", "", *[f"{line}  " for line in intro], ""]
    md += ["## Per-method means", "", summary_md, "", ranking, ""]
    if skipped:
        md += [f"## Skipped clips ({len(skipped)})", ""]
        md += [f"- `{src}`: {reason}" for src, reason in skipped]
        md.append("")
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Machine", ""] + [f"- {m}" for m in machine] + [""]
    md += ["## Command", "", "```", settings.command, "```", ""]
    md += [f"Per-pair rows: `{RESULTS_CSV}`; listening page: `{INDEX_HTML}`.", ""]
    return "\n".join(md)


def _clip_views(
    clips: Sequence[Clip],
    methods: Sequence[str],
    done_clips: Mapping[str, Mapping[str, Any]],
    done_pairs: Mapping[tuple[str, str], Mapping[str, Any]],
) -> list[Any]:
    """The listening page's clips: each finished clip with its finished pairs."""
    from .report import ClipView, PairView

    views = []
    for c in clips:
        crec = done_clips.get(c.id)
        if crec is None:
            continue
        pairs = []
        for m in methods:
            prec = done_pairs.get((c.id, m))
            if prec is not None:
                pairs.append(PairView(m, prec["audio"], prec["figure"], prec))
        views.append(
            ClipView(
                c.id,
                crec["source"],
                float(crec["audio_s"]),
                int(crec["sample_rate"]),
                crec["audio"],
                crec["figure"],
                pairs,
            )
        )
    return views


def _notes(
    settings: BenchSettings,
    rows: Sequence[Mapping[str, Any]],
    interrupted: bool,
    failed: Sequence[tuple[str, str, str]],
) -> list[str]:
    from .metrics import extras_available

    notes = [
        "RTF = wall seconds of the inversion / seconds of audio (below 1 is faster than real time); "
        "the mel computation and the scoring are not timed, and every method ran once on 0.5 s of "
        "noise before timing.",
        "Scores are of the 16-bit WAVs as written, against the original at the config's rate, trimmed "
        "to the shorter of the two and "
        "not shifted: lag_samples (positive: the estimate is late) and rms_ratio_db (level) show "
        "misalignment and gain beside PESQ. PESQ-WB and STOI are computed at 16 kHz.",
        "log-mel L1, spectral convergence and LSD use the config's own STFT and mel (LSD over the "
        "bins from its fmin to its fmax, clamped 80 dB below the original's loudest bin), as "
        "'melinvert score --preset' does: the same pair gives the same numbers in both.",
    ]
    if settings.mos:
        from .metrics import mos_status

        notes.append(
            "distillmos and dnsmos_* are no-reference MOS predictions (1-5, higher is better) of each "
            "estimate alone: DistillMOS and DNSMOS P.835 (OVRL, SIG, BAK) and P.808."
        )
        notes += [f"{model}: {why}" for model, why in mos_status().items() if why]
    if not settings.extras:
        notes.append("PESQ-WB and STOI were not computed (--no-extras); their cells are empty.")
    else:
        have = extras_available()
        missing = [p for p, ok in have.items() if not ok]
        if missing:
            notes.append(
                f"{' and '.join(missing)} not installed: those columns are empty "
                "(pip install 'melinvert[metrics]')."
            )
    empty = [r for r in rows if (r.get("pesq_wb") is None or r.get("stoi") is None) and r.get("notes")]
    if empty and settings.extras:
        notes.append(
            f"{len(empty)} pair(s) have an empty PESQ-WB or STOI cell; results.csv's notes column says why."
        )
    if settings.with_librosa:
        notes.append(
            "librosa: librosa.feature.melspectrogram with its defaults at the clip's own rate, then "
            "librosa.feature.inverse.mel_to_audio with its defaults (32 Griffin-Lim iterations), "
            "resampled to the config's rate for scoring; a reference, not the config's mel."
        )
    if interrupted:
        notes.append("Interrupted: only the finished pairs are reported; rerun with --resume to finish.")
    for clip, m, err in failed:
        notes.append(f"{clip} / {m} failed: {err}")
    return notes

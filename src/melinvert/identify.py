"""Tell what a mel file is from its values alone, and describe audio files.

A mel file found in the wild rarely says how it was made. :func:`identify_mel` infers the
layout, the number of bins and the compression from the values, then ranks the presets that
could have produced them:

* **Silence levels.** Every log compression clamps at a floor, and digital silence (or batch
  padding) lands exactly on it: ``ln 1e-5 = -11.513`` (HiFi-GAN, BigVGAN, Tacotron 2),
  ``ln 1e-7 = -16.118`` (Vocos), ``log10 1e-10 = -10`` (ParallelWaveGAN), Whisper's
  ``max - 2``, Coqui's clip at ``-4``, ``0`` for a linear mel. For each preset the exact
  silence level of every bin is computed with the preset itself (so ESPnet's STFT epsilon,
  which keeps silence above the floor, is recognised too) and the values sitting on it are
  counted.
* **Range.** A preset whose compression cannot produce the values (below its floor, negative
  in a linear mel, a span beyond Whisper's 2.0, ...) is ruled out
  (:meth:`~melinvert.config.Compression.range_problem`).
* **Dynamic range.** Without floor hits, the spread of the values read in each compression's
  units should be a plausible audio dynamic range (about 40-130 dB); ``ln`` and ``log10``
  differ by a factor 2.3 here.

Presets that compute the same values (``hifigan-22k-80`` and ``tacotron2-22k-80`` differ only
in padding) cannot be told apart and come out with equal scores: :attr:`MelIdentity.top`
lists that group.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import PRESETS, Compression, MelConfig
from .errors import MelinvertError, check
from .io import AUDIO_EXTENSIONS, LAYOUTS, MEL_EXTENSIONS, guess_mel_axis, read_audio, read_mel_file

#: Scores within this of the best form the top group (indistinguishable presets).
TOP_MARGIN = 0.05
#: Typical dynamic range of audio in a mel (dB) and the spread allowed around it (natural log).
_TYPICAL_DB = 85.0
_DB_SPREAD = 0.55


@dataclass(frozen=True)
class PresetMatch:
    """One preset that fits a mel.

    Attributes
    ----------
    preset : str
        Preset name (a key of :data:`melinvert.config.PRESETS`).
    score : float
        0 to 1; higher fits better. Equal scores mean the values cannot tell them apart.
    reason : str
        Why it fits, e.g. ``"80 bins, ln floor -11.513, 70.8% of values at its silence level"``.
    """

    preset: str
    score: float
    reason: str


@dataclass(frozen=True)
class MelIdentity:
    """What a mel is, inferred from its values.

    Attributes
    ----------
    layout : {"mels-first", "time-first"}
        How the array was stored.
    n_mels, frames : int
        Bins and frames (per item).
    batch : int or None
        Items in a batch axis, ``None`` without one.
    minimum, maximum : float
        Value range.
    compression : str
        The compression guess in words, e.g. ``"ln, floor 1e-05 (-11.513)"``.
    compression_kind : str
        ``ln``, ``log10``, ``db``, ``whisper``, ``coqui``, ``none`` (linear),
        ``standardised`` (mean/std normalised) or ``unknown``.
    floor : float or None
        The silence level found (in the file's units), ``None`` when none is hit.
    floor_fraction : float
        Fraction of values at that level.
    matches : tuple of PresetMatch
        Presets that fit, best first.
    notes : tuple of str
        Caveats (an ambiguous layout, no preset with this many bins, ...).
    recorded : MelConfig or None
        The config the file records, if it records one.
    hint : str or None
        When no preset fits but the compression is recognised (a librosa ``power_to_db``
        mel): the settings to pass, in one line.
    """

    layout: str
    n_mels: int
    frames: int
    batch: int | None
    minimum: float
    maximum: float
    compression: str
    compression_kind: str
    floor: float | None
    floor_fraction: float
    matches: tuple[PresetMatch, ...]
    notes: tuple[str, ...] = ()
    recorded: MelConfig | None = None
    hint: str | None = None

    @property
    def top(self) -> tuple[str, ...]:
        """The presets tied for the best score (those the values cannot tell apart)."""
        if not self.matches:
            return ()
        best = self.matches[0].score
        return tuple(m.preset for m in self.matches if m.score >= best - TOP_MARGIN)

    def format(self, name: str | None = None) -> str:
        """A human-readable report (several lines)."""
        head = f"{name}: " if name else ""
        shape = f"{self.n_mels} bins x {self.frames} frames"
        if self.batch is not None:
            shape = f"batch of {self.batch}, {shape}"
        lines = [
            f"{head}mel, {shape} ({self.layout}), values {self.minimum:.5g} to {self.maximum:.5g}",
        ]
        if self.recorded is not None:
            rec = self.recorded
            lines.append(f"  recorded config: {rec.name or 'custom'} ({rec.describe()})")
        comp = f"  compression: {self.compression}"
        if self.floor is not None:
            comp += f"; {100 * self.floor_fraction:.3g}% of values at the silence level {self.floor:.5g}"
        lines.append(comp)
        if self.matches:
            lines.append("  presets that fit (score: presets: reason):")
            shown = 0
            i = 0
            while i < len(self.matches) and shown < 6:
                group = [self.matches[i]]
                while (
                    i + len(group) < len(self.matches)
                    and abs(self.matches[i + len(group)].score - group[0].score) < 1e-9
                    and self.matches[i + len(group)].reason == group[0].reason
                ):
                    group.append(self.matches[i + len(group)])
                names = " or ".join(m.preset for m in group)
                lines.append(f"    {group[0].score:.2f}  {names}: {group[0].reason}")
                i += len(group)
                shown += 1
        else:
            lines.append("  presets that fit: none")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class AudioInfo:
    """Facts about an audio file.

    Attributes
    ----------
    path : str
    sample_rate : int
        Hz.
    channels, samples : int
    duration : float
        Seconds.
    peak, rms : float
        Linear, over all channels (full scale 1.0).
    subtype : str
        soundfile's sample format, e.g. ``PCM_16``.
    presets_at_rate : tuple of str
        Presets whose sample rate equals the file's.
    """

    path: str
    sample_rate: int
    channels: int
    samples: int
    duration: float
    peak: float
    rms: float
    subtype: str
    presets_at_rate: tuple[str, ...] = field(default=())

    @staticmethod
    def _db(x: float) -> str:
        return f"{20 * math.log10(x):.1f} dBFS" if x > 0 else "-inf dBFS"

    def format(self) -> str:
        """A human-readable report (two lines)."""
        ch = "1 channel" if self.channels == 1 else f"{self.channels} channels"
        line = (
            f"{self.path}: audio, {self.sample_rate} Hz, {ch}, {self.duration:.3f} s "
            f"({self.samples} samples), {self.subtype}, peak {self._db(self.peak)} ({self.peak:.3g}), "
            f"RMS {self._db(self.rms)}"
        )
        at = ", ".join(self.presets_at_rate) if self.presets_at_rate else "none (resampled on input)"
        return f"{line}\n  presets at this rate: {at}"


# ---------------------------------------------------------------------- audio


def inspect_audio(path: str | os.PathLike) -> AudioInfo:
    """Rate, channels, duration, peak and RMS of an audio file.

    Parameters
    ----------
    path : str or PathLike
        ``.wav``, ``.flac`` or ``.ogg``.
    """
    data, sr, subtype = read_audio(path)
    x = data.astype(np.float64)
    return AudioInfo(
        path=os.fspath(path),
        sample_rate=sr,
        channels=int(data.shape[0]),
        samples=int(data.shape[1]),
        duration=data.shape[1] / sr,
        peak=float(np.abs(x).max()),
        rms=float(np.sqrt(np.mean(x**2))),
        subtype=subtype,
        presets_at_rate=tuple(n for n, p in PRESETS.items() if p.config.sample_rate == sr),
    )


# ---------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class _Profile:
    """A compression hypothesis: its codec, magnitude power and the level silence encodes to."""

    label: str
    compression: Compression
    power: float
    silence: np.ndarray | None  # (n_mels,) per bin, (1,) any bin; None: data-dependent


def _comp_label(c: Compression) -> str:
    return c.codec.describe()


def _scalar_profile(comp: Compression, power: float) -> _Profile:
    sil = None if comp.codec.data_dependent else np.array([comp.silence_value()], dtype=np.float64)
    return _Profile(_comp_label(comp), comp, power, sil)


@functools.lru_cache(maxsize=1)
def _generic_profiles() -> tuple[_Profile, ...]:
    comps = [
        (Compression(kind="ln", floor=1e-5), 1.0),
        (Compression(kind="ln", floor=1e-7), 1.0),
        (Compression(kind="log10", floor=1e-5), 1.0),
        (Compression(kind="log10", floor=1e-10), 1.0),
        (Compression(kind="db", multiplier=10.0, floor=1e-10), 2.0),
        (Compression(kind="db", multiplier=20.0, floor=1e-5), 1.0),
        (Compression(kind="db", multiplier=10.0, floor=1e-10, top_db=80.0), 2.0),
        (Compression(kind="whisper", floor=1e-10), 2.0),
        (Compression(kind="coqui"), 1.0),
        (Compression(kind="none"), 2.0),
    ]
    return tuple(_scalar_profile(c, p) for c, p in comps)


@functools.lru_cache(maxsize=64)
def _preset_profile(name: str) -> _Profile:
    """The preset's exact silence level per bin, computed by running it on zeros."""
    from .dsp import mel_spectrogram

    cfg = PRESETS[name].config
    comp = cfg.compression
    label = _comp_label(comp)
    if comp.codec.data_dependent or comp.mean is not None:
        return _Profile(label, comp, cfg.power, None)
    n = max(cfg.min_samples, cfg.n_fft) + 4 * cfg.hop_length
    mel = mel_spectrogram(np.zeros(n, dtype=np.float64), cfg)
    return _Profile(label, comp, cfg.power, np.asarray(mel[:, mel.shape[1] // 2], dtype=np.float64))


def _silence_mask(v: np.ndarray, prof: _Profile) -> np.ndarray:
    """Values sitting on the profile's silence level; ``v`` is (batch, n_mels, frames)."""
    if prof.silence is None:
        below = prof.compression.codec.silence_below_max
        if below is None:
            return np.zeros(v.shape, dtype=bool)
        level = v.max(axis=(1, 2), keepdims=True) - below
    else:
        sil = prof.silence
        if sil.shape[0] not in (1, v.shape[1]):
            return np.zeros(v.shape, dtype=bool)
        level = sil[None, :, None]
    tol = 2e-5 * np.maximum(1.0, np.abs(level))
    return np.abs(v - level) <= tol


def _plausibility(v: np.ndarray, hits: np.ndarray, prof: _Profile) -> tuple[float, float | None]:
    """(prior in (0, 1], dynamic range in dB) of the non-silent values read with ``prof``."""
    rest = v[~hits]
    if rest.size < 8:
        return 0.5, None
    codec = prof.compression.codec
    hi = float(rest.max())
    if not codec.is_log:
        pos = rest[rest > 0]
        if pos.size < 8 or hi <= 0:
            return 0.5, None
        unit = 20.0 / prof.power
        db = unit * math.log10(hi / float(np.percentile(pos, 1)))
    else:
        per = codec.db_per_unit(prof.power)
        if per is None:
            return 0.5, None
        db = per * (hi - float(np.percentile(rest, 1)))
    if db <= 1e-6:
        return 0.02, db
    z = math.log(db / _TYPICAL_DB) / _DB_SPREAD
    return max(0.02, math.exp(-0.5 * z * z)), db


@dataclass(frozen=True)
class _Eval:
    score: float
    hits: int
    fraction: float
    level: float | None
    db: float | None


def _evaluate(v: np.ndarray, prof: _Profile) -> _Eval | None:
    """Score one profile against the values, or ``None`` when its compression rules them out."""
    if prof.compression.range_problem(torch.from_numpy(v)) is not None:
        return None
    mask = _silence_mask(v, prof)
    n = int(mask.sum())
    prior, db = _plausibility(v, mask, prof)
    hit = 1.0 - math.exp(-n / 2.0)
    level = float(v[mask].mean()) if n else None
    return _Eval(0.6 * hit + 0.4 * prior, n, n / v.size, level, db)


def _standardised(v: np.ndarray) -> tuple[float, str]:
    """Score for per-bin mean/std normalised values (ParallelWaveGAN/ESPnet features)."""
    lo, hi = float(v.min()), float(v.max())
    if not (lo < 0 < hi):
        return 0.0, ""
    mean, std = float(v.mean()), float(v.std())
    if std <= 0:
        return 0.0, ""
    close = math.exp(-abs(mean)) * math.exp(-abs(math.log(std)))
    # Silence in normalised features: each bin's minimum repeats, at a level that differs per bin.
    rows = v.transpose(1, 0, 2).reshape(v.shape[1], -1)
    mins = rows.min(axis=1)
    repeats = (np.abs(rows - mins[:, None]) <= 2e-5 * np.maximum(1.0, np.abs(mins))[:, None]).sum(axis=1)
    distinct = float(np.ptp(mins)) > 1e-3
    frac = float(np.mean(repeats >= 3)) if distinct else 0.0
    score = 0.6 * frac + 0.4 * close
    return score, f"mean {mean:.2f}, std {std:.2f}"


def _hit_text(e: _Eval) -> str:
    if e.hits:
        return f"{100 * e.fraction:.3g}% of values at its silence level {e.level:.5g}"
    if e.db is not None:
        return f"no silence-level hits, {e.db:.0f} dB dynamic range"
    return "no silence-level hits"


def _settings_hint(v: np.ndarray, prof: _Profile) -> str | None:
    """What to pass for values no preset produces but whose compression is known (dB mels)."""
    n_mels = v.shape[1]
    bases = [n for n, p in PRESETS.items() if p.config.n_mels == n_mels and p.config.power == prof.power]
    base = "librosa-default" if "librosa-default" in bases or not bases else bases[0]
    got = prof.compression.codec.infer_settings(v, PRESETS[base].config.power)
    if got is None:
        return None
    settings, notes = got
    comp = json.dumps(settings)
    more = "" if PRESETS[base].config.n_mels == n_mels else f" and its n_mels to {n_mels}"
    return (
        f"to invert it, save a config with 'melinvert presets {base} --json > mel.json', "
        f'set its "compression" to {comp}{more}, match its STFT settings to those the mel was made '
        f"with, and pass --config mel.json" + "".join(f"; {n}" for n in notes)
    )


def _analyse(
    v: np.ndarray,
) -> tuple[list[PresetMatch], tuple[str, str, float | None, float, str | None], float]:
    """Rank presets and guess the compression for mels-first values (batch, n_mels, frames)."""
    n_mels = v.shape[1]
    matches: list[PresetMatch] = []
    evals: dict[str, _Eval] = {}
    for name, preset in PRESETS.items():
        if preset.config.n_mels != n_mels:
            continue
        e = _evaluate(v, _preset_profile(name))
        if e is not None:
            evals[name] = e
            reason = f"{n_mels} bins, {_comp_label(preset.config.compression)}, {_hit_text(e)}"
            matches.append(PresetMatch(name, round(e.score, 4), reason))
    best_generic: tuple[float, str, str, float | None, float] = (-1.0, "unknown", "unknown", None, 0.0)
    best_prof: _Profile | None = None
    for prof in _generic_profiles():
        e = _evaluate(v, prof)
        if e is not None and e.score > best_generic[0]:
            best_generic = (e.score, prof.compression.kind, prof.label, e.level, e.fraction)
            best_prof = prof
    # A preset that explains more (ESPnet's epsilon silence) names the compression better.
    for name, e in evals.items():
        if e.score > best_generic[0] + 1e-9:
            comp = PRESETS[name].config.compression
            best_generic = (e.score, comp.kind, _comp_label(comp), e.level, e.fraction)
            best_prof = None
    std_score, std_text = _standardised(v)
    if std_score > best_generic[0]:
        best_generic = (std_score, "standardised", f"standardised per bin (mean/std; {std_text})", None, 0.0)
        best_prof = None
        for name, preset in PRESETS.items():
            c = preset.config
            if c.n_mels == n_mels and c.compression.codec.commonly_standardised:
                reason = (
                    f"{n_mels} bins, {c.compression.kind} features standardised with dataset statistics "
                    f"({std_text}); pass them with --stats"
                )
                matches = [m for m in matches if m.preset != name]
                matches.append(PresetMatch(name, round(std_score, 4), reason))
    order = list(PRESETS)
    matches.sort(key=lambda m: (-m.score, order.index(m.preset)))
    score, kind, label, level, frac = best_generic
    hint = _settings_hint(v, best_prof) if best_prof is not None and not matches else None
    return matches, (kind, label, level, frac, hint), score


def identify_mel(
    mel: np.ndarray | torch.Tensor,
    *,
    layout: str = "auto",
    n_mels: int | None = None,
    recorded: MelConfig | None = None,
) -> MelIdentity:
    """Infer layout, bins, compression and the fitting presets of a mel from its values.

    Parameters
    ----------
    mel : np.ndarray or torch.Tensor [shape=(n_mels, frames), (frames, n_mels), optionally with batch axes]
        Values as stored, finite.
    layout : {"auto", "mels-first", "time-first"}
        ``auto`` decides from the sizes (a preset's ``n_mels``), else tries both and keeps the
        better fit (mels-first on a tie, with a note).
    n_mels : int, optional
        Known number of bins (decides the layout).
    recorded : MelConfig, optional
        The config the file records; reported and used for ``n_mels``.

    Returns
    -------
    MelIdentity
    """
    check(layout in LAYOUTS, f"{layout=} must be one of {', '.join(LAYOUTS)}")
    a = mel.detach().cpu().numpy() if isinstance(mel, torch.Tensor) else np.asarray(mel)
    check(a.dtype.kind in "fiu", f"mel has non-numeric dtype {a.dtype}")
    a = a.astype(np.float64)
    check(a.size > 0, f"mel is empty (shape {a.shape})")
    check(bool(np.isfinite(a).all()), "mel contains NaN or Inf")
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    check(a.ndim in (2, 3), f"mel has shape {a.shape}: expected (n_mels, frames) with at most one batch axis")
    batch = a.shape[0] if a.ndim == 3 else None
    v3 = a if a.ndim == 3 else a[None]
    r, c = v3.shape[1:]
    if n_mels is None and recorded is not None:
        n_mels = recorded.n_mels
    notes: list[str] = []
    if layout == "auto":
        if n_mels is not None and (r == n_mels) != (c == n_mels):
            layout = "mels-first" if r == n_mels else "time-first"
        else:
            layout = guess_mel_axis(r, c) or "undecided"
    if layout == "undecided":
        tries = []
        for lay in ("mels-first", "time-first"):
            vv = v3 if lay == "mels-first" else np.ascontiguousarray(v3.transpose(0, 2, 1))
            res = _analyse(vv)
            best = res[0][0].score if res[0] else res[2] * 0.5
            tries.append((best, lay, vv, res))
        if r == c or abs(tries[0][0] - tries[1][0]) < 1e-9:
            chosen = tries[0]
            other = "time-first"
        else:
            chosen = max(tries, key=lambda t: t[0])
            other = "time-first" if chosen[1] == "mels-first" else "mels-first"
        notes.append(
            f"layout ambiguous for shape ({r}, {c}): read as {chosen[1]}; "
            f"pass --layout {other} if that is wrong"
        )
        _, layout, v, (matches, comp, _) = chosen
    else:
        v = v3 if layout == "mels-first" else np.ascontiguousarray(v3.transpose(0, 2, 1))
        matches, comp, _ = _analyse(v)
    kind, label, level, frac, hint = comp
    nb = v.shape[1]
    if not any(p.config.n_mels == nb for p in PRESETS.values()):
        notes.append(f"no preset has {nb} mel bins: describe it with --config FILE.json")
    elif not matches:
        notes.append(f"no {nb}-bin preset can produce these values")
    if recorded is not None and recorded.name and recorded.name not in [m.preset for m in matches]:
        notes.append(f"the recorded config names {recorded.name}, which the values alone do not suggest")
    return MelIdentity(
        layout=layout,
        n_mels=nb,
        frames=v.shape[2],
        batch=batch,
        minimum=float(v.min()),
        maximum=float(v.max()),
        compression=label,
        compression_kind=kind,
        floor=level,
        floor_fraction=frac if level is not None else 0.0,
        matches=tuple(matches),
        notes=tuple(notes),
        recorded=recorded,
        hint=hint,
    )


#: Values of a stored mel that :func:`identify_sampled` analyses at most (beyond that, frames
#: evenly spaced through the file): inspecting a long or decompressed mel costs bounded memory.
SAMPLE_VALUES = 1 << 22


def _frame_sample(a: np.ndarray, limit: int) -> np.ndarray:
    """At most about ``limit`` values of ``a`` (batch items kept first, then frames thinned
    evenly along the longer of the last two axes)."""
    if a.ndim == 3 and a.size > limit:
        a = a[: max(1, limit // max(a.shape[1] * a.shape[2], 1))]
    if a.ndim < 2 or a.size <= limit:
        return a
    axis = a.ndim - 1 if a.shape[-1] >= a.shape[-2] else a.ndim - 2
    n = a.shape[axis]
    k = max(limit // max(a.size // n, 1), 2)
    return np.take(a, np.unique(np.linspace(0, n - 1, k).round().astype(np.int64)), axis=axis)


def identify_sampled(
    arr: np.ndarray,
    *,
    layout: str = "auto",
    n_mels: int | None = None,
    recorded: MelConfig | None = None,
    limit: int = SAMPLE_VALUES,
) -> MelIdentity:
    """:func:`identify_mel` on at most about ``limit`` values of ``arr`` (evenly spaced frames),
    reporting the whole array's frames, batch and value range.

    Parameters
    ----------
    arr : np.ndarray [shape=(n_mels, frames), (frames, n_mels), optionally with batch axes]
        Values as stored, finite.
    """
    a = np.asarray(arr)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    sample = _frame_sample(a, limit)
    info = identify_mel(sample, layout=layout, n_mels=n_mels, recorded=recorded)
    if sample.size == a.size:
        return info
    frames = a.shape[-1] if info.layout == "mels-first" else a.shape[-2]
    return dataclasses.replace(
        info,
        frames=int(frames),
        batch=int(a.shape[0]) if a.ndim == 3 else None,
        minimum=float(a.min()),
        maximum=float(a.max()),
        notes=(*info.notes, f"values analysed on {sample.size} of {a.size} (frames evenly spaced)"),
    )


def identify_file(path: str | os.PathLike, *, layout: str = "auto") -> MelIdentity | AudioInfo:
    """Describe a mel file (:func:`identify_mel`) or an audio file (:func:`inspect_audio`).

    Parameters
    ----------
    path : str or PathLike
        ``.npy``/``.npz``/``.pt`` mel or ``.wav``/``.flac``/``.ogg`` audio.
    layout : {"auto", "mels-first", "time-first"}
        For mel files.
    """
    ext = Path(path).suffix.lower()
    if ext in AUDIO_EXTENSIONS:
        return inspect_audio(path)
    if ext in MEL_EXTENSIONS:
        arr, recorded = read_mel_file(path)
        return identify_sampled(arr, layout=layout, recorded=recorded)
    raise MelinvertError(
        f"{os.fspath(path)!r}: cannot inspect {ext or '(no extension)'!r} files; "
        f"expected {', '.join(MEL_EXTENSIONS + AUDIO_EXTENSIONS)}"
    )

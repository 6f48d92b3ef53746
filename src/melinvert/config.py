"""Mel configurations: the validated :class:`MelConfig`, its compression codecs and the presets.

A :class:`MelConfig` says everything needed to reproduce a mel spectrogram bit for bit: the
STFT (rate, sizes, window, padding), the magnitude (epsilon, power), the filterbank (scale,
normalisation, band edges) and the compression applied afterwards (:class:`Compression`). Two
configs are equal exactly when they produce the same mel for the same audio (the ``name`` a
preset carries is not compared).

Presets for the conventions in the wild live in :data:`PRESETS`; :func:`get_preset` returns
one by name, :func:`list_presets` lists them. ``docs/presets.md`` gives the source of every
parameter.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .codecs import WHISPER_RANGE as WHISPER_RANGE  # re-exported: it lived here
from .codecs import Codec, RangeReport, check_range, codec_class
from .codecs import torch as _torch_lazy
from .errors import MelinvertError, check

if TYPE_CHECKING:
    import torch
else:
    torch = _torch_lazy  # imported on first use (reading presets does not pay torch's import)

CONFIG_FORMAT_VERSION = 1

WINDOWS = ("hann", "hamming", "blackman", "rect")
PADDINGS = ("center", "half_overlap", "none")
PAD_MODES = ("reflect", "constant")
MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", None)
EPS_MODES = ("add", "clamp")
#: The built-in compression kinds (``melinvert.codecs.CODECS`` holds these and any registered).
COMPRESSIONS = ("none", "ln", "log10", "db", "log1p", "whisper", "coqui")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _is_num(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) and math.isfinite(x)


def _floats(name: str, values: Any) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise MelinvertError(f"compression {name} must be a sequence of numbers") from None
    return out


def _coerce(obj: Any, names: tuple[str, ...], kind: type) -> None:
    """Turn numpy scalars (e.g. a rate read from an .npz) into plain Python numbers."""
    for n in names:
        v = getattr(obj, n)
        if isinstance(v, (np.integer, np.floating)) and not isinstance(v, np.bool_):
            object.__setattr__(obj, n, kind(v) if kind is int and isinstance(v, np.integer) else float(v))


@dataclass(frozen=True)
class Compression:
    """How a linear mel is compressed, with an exact encode and a decode.

    The formulas live in the :class:`~melinvert.codecs.Codec` registered for ``kind``
    (:attr:`codec`); this frozen value holds the parameters, validates them and is what
    configs serialise. The per-bin ``mean``/``std`` standardisation applies to any kind.

    Parameters
    ----------
    kind : {"none", "ln", "log10", "db", "log1p", "whisper", "coqui"} or a registered kind
        ``none``: the linear mel itself. ``ln``/``log10``: ``log(max(x, floor))``
        (HiFi-GAN, BigVGAN, Vocos use ln; ESPnet and ParallelWaveGAN log10). ``db``:
        ``multiplier * log10(max(x, floor) / max(ref, floor))``, then, with ``top_db``, values
        below ``max - top_db`` of each item are raised to it (librosa ``power_to_db``).
        ``log1p``: ``ln(1 + x)``. ``whisper``: ``log10(max(x, floor))`` raised to at least its
        per-item maximum minus 8, then ``(v + 4) / 4``. ``coqui``: Coqui TTS's
        ``multiplier * log10(max(x, floor)) - ref_level_db`` mapped from
        ``[min_level_db, 0]`` to ``[-max_norm, max_norm]`` (``[0, max_norm]`` when not
        symmetric), clipped when ``clip_norm``.
    floor : float
        The clamp before the logarithm (amplitude or power units of the mel), > 0.
    multiplier : float
        dB multiplier: 10 for a power mel, 20 for a magnitude mel (``db`` and ``coqui``).
    ref, top_db :
        ``db`` reference level and dynamic range (``None``: no clipping).
    ref_level_db, min_level_db, max_norm, symmetric, clip_norm :
        ``coqui`` normalisation, named as in Coqui TTS's ``AudioProcessor``.
    mean, std : tuple of float, optional
        Per-mel-bin statistics applied after compression, ``(v - mean) / std`` (the
        normalisation ParallelWaveGAN and ESPnet apply with their dataset statistics).
    """

    kind: str = "ln"
    floor: float = 1e-5
    multiplier: float = 20.0
    ref: float = 1.0
    top_db: float | None = None
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    max_norm: float = 4.0
    symmetric: bool = True
    clip_norm: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        _coerce(
            self, ("floor", "multiplier", "ref", "top_db", "ref_level_db", "min_level_db", "max_norm"), float
        )
        codec_class(self.kind)  # an unknown kind names the registered ones
        check(_is_num(self.floor) and self.floor > 0, f"compression floor={self.floor} must be > 0")
        check(
            _is_num(self.multiplier) and self.multiplier > 0,
            f"compression multiplier={self.multiplier} must be > 0",
        )
        check(_is_num(self.ref) and self.ref > 0, f"compression ref={self.ref} must be > 0")
        check(
            self.top_db is None or (_is_num(self.top_db) and self.top_db > 0),
            f"compression top_db={self.top_db} must be None or > 0",
        )
        check(
            _is_num(self.min_level_db) and self.min_level_db < 0,
            f"compression min_level_db={self.min_level_db} must be < 0",
        )
        check(
            _is_num(self.max_norm) and self.max_norm > 0,
            f"compression max_norm={self.max_norm} must be > 0",
        )
        check(_is_num(self.ref_level_db), f"compression ref_level_db={self.ref_level_db} must be finite")
        check(
            (self.mean is None) == (self.std is None),
            "compression mean and std must be given together",
        )
        check(
            isinstance(self.symmetric, bool),
            f"compression symmetric={self.symmetric!r} must be True or False",
        )
        check(
            isinstance(self.clip_norm, bool),
            f"compression clip_norm={self.clip_norm!r} must be True or False",
        )
        if self.mean is not None:
            mean = _floats("mean", self.mean)
            std = _floats("std", self.std)
            check(
                len(mean) == len(std), f"compression mean ({len(mean)}) and std ({len(std)}) differ in length"
            )
            check(all(math.isfinite(v) for v in mean), "compression mean has NaN or Inf")
            check(all(math.isfinite(v) and v > 0 for v in std), "compression std must be finite and > 0")
            object.__setattr__(self, "mean", mean)
            object.__setattr__(self, "std", std)
        self.codec.validate()

    # ------------------------------------------------------------------ encode / decode
    @property
    def codec(self) -> Codec:
        """The :class:`~melinvert.codecs.Codec` of this ``kind`` (holds the formulas)."""
        return codec_class(self.kind)(self)

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.mean is None:
            return None
        check(
            x.shape[-2] == len(self.mean),
            f"mel has {x.shape[-2]} bins but the compression statistics have {len(self.mean)}",
        )
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device)[:, None]
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device)[:, None]
        return mean, std

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Compress a linear mel.

        Parameters
        ----------
        mel : torch.Tensor [shape=(..., n_mels, frames), non-negative]
            Linear mel (magnitude or power, as the config's ``power`` says).

        Returns
        -------
        torch.Tensor [shape=(..., n_mels, frames)]
            The compressed mel. ``db`` with ``top_db`` and ``whisper`` use the maximum of each
            item (the last two dimensions), so a batch equals its stacked items.
        """
        out = self.codec.encode(mel)
        stats = self._stats(out)
        if stats is not None:
            out = (out - stats[0]) / stats[1]
        return out

    def decode(self, mel: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`encode`: compressed mel -> linear mel (same shape, non-negative).

        Values clipped at the floor, ``top_db`` or Whisper's range decode to that level; the
        information below it is gone.
        """
        stats = self._stats(mel)
        x = mel * stats[1] + stats[0] if stats is not None else mel
        return self.codec.decode(x)

    # ------------------------------------------------------------------ value ranges
    @property
    def is_log(self) -> bool:
        """True when the compressed values are logarithmic (any kind but ``none``)."""
        return self.codec.is_log

    @property
    def linear_floor(self) -> float | None:
        """The clamp applied to the linear mel before the logarithm (mel units); ``None`` for
        kinds without one (``none``, ``log1p``)."""
        return self.codec.linear_floor

    def silence_value(self, n_mels: int | None = None) -> float | None:
        """The encoded value of an all-zero linear mel (the padding value for batches).

        ``None`` where it depends on the data (``whisper``, ``db`` with ``top_db``) or differs
        per bin (with ``mean``/``std``).
        """
        if self.mean is not None:
            return None
        return self.codec.silence_value()

    def check_range(self, mel: torch.Tensor, *, strict: bool = False) -> RangeReport:
        """Check that ``mel`` can be a mel of this compression; clamp small excursions.

        Impossible values (a linear mel for a log config, a log-mel for a linear config, NaN or
        Inf, values more than :data:`~melinvert.codecs.CLAMP_DECADES` decade below the floor)
        are an error. Values a little below the floor (or outside Coqui's clipped range), as
        predicted mels have, are clamped to it with a one-line notice, or are an error when
        ``strict``. Values within float16 rounding of the floor count as on it.

        Parameters
        ----------
        mel : torch.Tensor [shape=(..., n_mels, frames)]
            Compressed values as given to :meth:`decode`.
        strict : bool
            Refuse any value outside the range instead of clamping it.

        Returns
        -------
        RangeReport
            ``.error`` (one line or ``None``), ``.notice`` (one line or ``None``), ``.mel``
            (the values to decode: ``mel`` itself unless clamped), ``.clamped``, ``.total``.
            Standardised compressions (``mean``/``std``) are checked for emptiness and NaN only.
        """
        if self.mean is not None and mel.numel() and bool(torch.isfinite(mel).all()):
            return RangeReport(mel, total=mel.numel())
        return check_range(self.codec, mel, strict=strict)

    def range_problem(self, mel: torch.Tensor) -> str | None:
        """Say why ``mel`` cannot be a mel of this compression, or ``None`` if it can.

        The strict :meth:`check_range`: catches a linear mel handed to a log config (all values
        >= 0 where a log-mel of audio has most values below zero), a log-mel handed to a linear
        config (negative values), and any value below the floor the config can produce.
        """
        return self.check_range(mel, strict=True).error

    # ------------------------------------------------------------------ texts
    def describe(self) -> str:
        """One line naming the compression, e.g. ``"ln, floor 1e-5 (-11.513)"``."""
        text = self.codec.describe()
        return text + ", standardised per bin (mean/std)" if self.mean is not None else text

    def short(self) -> str:
        """A short name for tables, e.g. ``"ln 1e-5"``, ``"dB floor 1e-10 top 80"``, ``"whisper"``."""
        return self.codec.short()


@dataclass(frozen=True)
class MelConfig:
    """Everything needed to compute (and invert) one mel spectrogram convention.

    Parameters
    ----------
    sample_rate : int
        Audio rate in Hz.
    n_fft : int
        FFT size in samples.
    hop_length : int
        Frame step in samples.
    win_length : int, optional
        Window length in samples (<= ``n_fft``; zero-padded to ``n_fft`` in the centre, as
        librosa and torch do). ``None`` means ``n_fft``; stored resolved.
    window : {"hann", "hamming", "blackman", "rect"}
        Periodic window (``scipy.signal.get_window(..., fftbins=True)``, ``torch.hann_window``).
    padding : {"center", "half_overlap", "none"}
        ``center``: ``n_fft // 2`` samples each side (``torch.stft(center=True)``, librosa).
        ``half_overlap``: ``(n_fft - hop_length) // 2`` each side then no centring (HiFi-GAN,
        BigVGAN). ``none``: frames start at sample 0.
    pad_mode : {"reflect", "constant"}
        How the padding is filled.
    mag_eps : float
        Magnitude epsilon: ``sqrt(re^2 + im^2 + mag_eps)`` (``mag_eps_mode="add"``, HiFi-GAN's
        1e-9) or ``sqrt(max(re^2 + im^2, mag_eps))`` (``"clamp"``, ESPnet's 1e-10).
    mag_eps_mode : {"add", "clamp"}
    power : float
        Exponent of the magnitude before the filterbank: 1 magnitude, 2 power.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Filterbank edges in Hz; ``fmax=None`` means Nyquist.
    mel_scale : {"slaney", "htk"}
    mel_norm : {"slaney", None}
        ``slaney``: each triangle scaled to constant energy per Hz (librosa's default);
        ``None``: peak 1 (torchaudio's default).
    drop_last_frame : bool
        Drop the last STFT frame (Whisper).
    compression : Compression
        Applied to the linear mel.
    name : str, optional
        Preset name; informative only, not compared.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int | None = None
    window: str = "hann"
    padding: str = "center"
    pad_mode: str = "reflect"
    mag_eps: float = 0.0
    mag_eps_mode: str = "add"
    power: float = 1.0
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None
    mel_scale: str = "slaney"
    mel_norm: str | None = "slaney"
    drop_last_frame: bool = False
    compression: Compression = field(default_factory=Compression)
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _coerce(self, ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"), int)
        _coerce(self, ("mag_eps", "power", "fmin", "fmax"), float)
        check(self.name is None or isinstance(self.name, str), f"name={self.name!r} must be a string or None")
        sr, n_fft, hop = self.sample_rate, self.n_fft, self.hop_length
        check(_is_int(sr) and sr >= 1, f"sample_rate={sr!r} must be an integer >= 1 (Hz)")
        check(_is_int(n_fft) and n_fft >= 2, f"n_fft={n_fft!r} must be an integer >= 2")
        check(_is_int(hop) and hop >= 1, f"hop_length={hop!r} must be an integer >= 1")
        win = n_fft if self.win_length is None else self.win_length
        check(
            _is_int(win) and 1 <= win <= n_fft,
            f"win_length={self.win_length!r} must be an integer in [1, n_fft={n_fft}]",
        )
        object.__setattr__(self, "win_length", win)
        check(hop <= win, f"hop_length={hop} must be <= win_length={win} (frames would leave gaps)")
        check(self.window in WINDOWS, f"window={self.window!r} must be one of {', '.join(WINDOWS)}")
        check(self.padding in PADDINGS, f"padding={self.padding!r} must be one of {', '.join(PADDINGS)}")
        check(self.pad_mode in PAD_MODES, f"pad_mode={self.pad_mode!r} must be one of {', '.join(PAD_MODES)}")
        check(
            _is_num(self.mag_eps) and self.mag_eps >= 0,
            f"mag_eps={self.mag_eps!r} must be a number >= 0",
        )
        check(self.mag_eps_mode in EPS_MODES, f"mag_eps_mode={self.mag_eps_mode!r} must be 'add' or 'clamp'")
        check(
            _is_num(self.power) and self.power > 0,
            f"power={self.power!r} must be > 0 (1 magnitude, 2 power)",
        )
        check(_is_int(self.n_mels) and self.n_mels >= 1, f"n_mels={self.n_mels!r} must be an integer >= 1")
        nyq = sr / 2
        check(_is_num(self.fmin) and 0 <= self.fmin < nyq, f"fmin={self.fmin!r} must be in [0, {nyq:g}) Hz")
        if self.fmax is not None:
            check(
                _is_num(self.fmax) and self.fmin < self.fmax <= nyq,
                f"fmax={self.fmax!r} must be None or in (fmin={self.fmin:g}, {nyq:g}] Hz",
            )
            if self.fmax == nyq:  # the same filterbank as None: store one spelling
                object.__setattr__(self, "fmax", None)
        check(self.mel_scale in MEL_SCALES, f"mel_scale={self.mel_scale!r} must be 'slaney' or 'htk'")
        check(self.mel_norm in MEL_NORMS, f"mel_norm={self.mel_norm!r} must be 'slaney' or None")
        check(isinstance(self.drop_last_frame, bool), "drop_last_frame must be True or False")
        check(
            isinstance(self.compression, Compression),
            "compression must be a melinvert.Compression (use MelConfig.from_dict for dicts)",
        )
        if self.compression.mean is not None:
            check(
                len(self.compression.mean) == self.n_mels,
                f"compression statistics have {len(self.compression.mean)} bins but n_mels={self.n_mels}",
            )
        if self.padding == "half_overlap":
            check(
                (n_fft - hop) % 2 == 0,
                f"padding='half_overlap' needs n_fft - hop_length even; got {n_fft} - {hop}",
            )

    # ------------------------------------------------------------------ derived
    @property
    def n_freqs(self) -> int:
        """Number of one-sided STFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def frame_rate(self) -> float:
        """Frames per second, ``sample_rate / hop_length``."""
        return self.sample_rate / self.hop_length

    @property
    def fmax_hz(self) -> float:
        """Upper filterbank edge in Hz (Nyquist when ``fmax`` is None)."""
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

    @property
    def pad(self) -> int:
        """Samples of padding on each side before framing."""
        if self.padding == "center":
            return self.n_fft // 2
        if self.padding == "half_overlap":
            return (self.n_fft - self.hop_length) // 2
        return 0

    @property
    def min_samples(self) -> int:
        """The fewest samples that give at least one frame (and a valid reflect pad)."""
        need = max(self.n_fft - 2 * self.pad + (self.hop_length if self.drop_last_frame else 0), 1)
        if self.pad_mode == "reflect" and self.pad > 0:
            need = max(need, self.pad + 1)
        return need

    def n_frames(self, n_samples: int) -> int:
        """Frames the mel of ``n_samples`` audio samples has (0 if too short)."""
        if n_samples < self.min_samples:
            return 0
        t = 1 + (n_samples + 2 * self.pad - self.n_fft) // self.hop_length
        return t - 1 if self.drop_last_frame else t

    @property
    def min_frames(self) -> int:
        """The fewest frames a mel of this config can have (that of ``min_samples`` audio)."""
        return self.n_frames(self.min_samples)

    def n_samples(self, n_frames: int) -> int:
        """A signal length whose mel has ``n_frames`` frames (the default output length).

        The frames then cover the signal as the forward transform laid them: frame ``t`` is
        centred on sample ``t * hop_length`` (``center``) or ``t * hop_length + hop_length / 2``
        (``half_overlap``). Raises for fewer than :attr:`min_frames` frames, which no audio
        produces.
        """
        check(
            n_frames >= self.min_frames,
            f"a mel of {n_frames} frame(s) is shorter than any audio gives with this config "
            f"(at least {self.min_frames})",
        )
        t = n_frames + (1 if self.drop_last_frame else 0)
        return max(self.n_fft - 2 * self.pad + (t - 1) * self.hop_length, self.min_samples)

    # ------------------------------------------------------------------ (de)serialise
    def replace(self, **changes: Any) -> MelConfig:
        """A copy with some fields changed (validated again); the preset name is dropped."""
        changes.setdefault("name", None)
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as e:
            raise MelinvertError(f"cannot replace config fields: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``MelConfig.from_dict(c.to_dict()) == c``."""
        d = dataclasses.asdict(self)
        comp = d["compression"]
        for key in ("mean", "std"):
            if comp[key] is not None:
                comp[key] = list(comp[key])
        d["format"] = f"melinvert-config/{CONFIG_FORMAT_VERSION}"
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MelConfig:
        """Build from :meth:`to_dict` output (or a hand-written JSON object).

        Unknown keys are an error that names them, so a typo is never silently ignored.
        """
        check(isinstance(data, Mapping), f"a config must be a JSON object, got {type(data).__name__}")
        d = dict(data)
        fmt = d.pop("format", None)
        check(
            fmt is None or fmt == f"melinvert-config/{CONFIG_FORMAT_VERSION}",
            f"config format {fmt!r} is not supported by this melinvert",
        )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        check(not unknown, f"unknown config field(s): {', '.join(unknown)}")
        comp = d.get("compression")
        if comp is None:
            comp = Compression()
        elif isinstance(comp, str):
            comp = Compression(kind=comp)
        elif isinstance(comp, Mapping):
            cnames = {f.name for f in dataclasses.fields(Compression)}
            bad = sorted(set(comp) - cnames)
            check(not bad, f"unknown compression field(s): {', '.join(bad)}")
            comp = dict(comp)
            for key in ("mean", "std"):
                if comp.get(key) is not None:
                    check(
                        isinstance(comp[key], (list, tuple)), f"compression {key} must be a list of numbers"
                    )
                    comp[key] = tuple(comp[key])
            comp = Compression(**comp)
        elif not isinstance(comp, Compression):
            raise MelinvertError("compression must be an object, a kind name, or a Compression")
        d["compression"] = comp
        try:
            return cls(**d)
        except TypeError as e:  # pragma: no cover - guarded by the unknown-key check
            raise MelinvertError(f"bad config: {e}") from None

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MelConfig:
        """Parse :meth:`to_json` output; malformed JSON is a :class:`MelinvertError`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise MelinvertError(f"config is not valid JSON: {e.msg} at line {e.lineno}") from None
        return cls.from_dict(data)

    def differences(self, other: MelConfig) -> list[str]:
        """Names of the fields in which two configs differ (``compression.kind`` style)."""
        out = []
        for f in dataclasses.fields(self):
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name == "compression":
                for g in dataclasses.fields(Compression):
                    if getattr(a, g.name) != getattr(b, g.name):
                        out.append(f"compression.{g.name}")
            elif a != b:
                out.append(f.name)
        return out

    def describe(self) -> str:
        """One line naming the essentials, e.g. ``22050 Hz, n_fft 1024, hop 256, 80 mels ...``."""
        c = self.compression
        comp = c.codec.brief()
        return (
            f"{self.sample_rate} Hz, n_fft {self.n_fft}, hop {self.hop_length}, win {self.win_length}, "
            f"{self.n_mels} mels {self.fmin:g}-{self.fmax_hz:g} Hz ({self.mel_scale}, "
            f"norm {self.mel_norm}), {'power' if self.power == 2 else f'power {self.power:g}' if self.power != 1 else 'magnitude'}, "
            f"padding {self.padding}/{self.pad_mode}, {comp}"
        )


# ---------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """A named configuration with where it comes from."""

    name: str
    config: MelConfig
    project: str
    source: str
    notes: str = ""


def _preset(name: str, project: str, source: str, notes: str = "", **kw: Any) -> Preset:
    return Preset(name, MelConfig(name=name, **kw), project, source, notes)


_LN5 = Compression(kind="ln", floor=1e-5)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        _preset(
            "hifigan-22k-80",
            "HiFi-GAN (jik876/hifi-gan): config_v1.json + meldataset.py mel_spectrogram",
            "meldataset.mel_spectrogram: reflect pad (n_fft-hop)/2 each side, torch.stft(center=False, "
            "hann_window(1024)), sqrt(re^2+im^2+1e-9), librosa.filters.mel slaney (0-8000 Hz), "
            "log(clamp(x, min=1e-5)); config_v1.json: 22050 Hz, n_fft 1024, hop 256, win 1024, 80 mels",
            notes="Frames: n_samples // hop. The original's filterbank is stored as float32.",
            sample_rate=22050,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="half_overlap",
            pad_mode="reflect",
            mag_eps=1e-9,
            power=1.0,
            n_mels=80,
            fmin=0.0,
            fmax=8000.0,
            compression=_LN5,
        ),
        _preset(
            "tacotron2-22k-80",
            "Tacotron 2 (NVIDIA/tacotron2): hparams.py + layers.TacotronSTFT + stft.STFT + "
            "audio_processing.py",
            "stft.STFT.transform: reflect pad n_fft/2 each side, conv1d with a periodic scipy hann "
            "DFT basis at stride hop (= centred frames), sqrt(re^2+im^2) without epsilon; librosa "
            "slaney mel 0-8000 Hz; audio_processing.dynamic_range_compression: log(clamp(x, min=1e-5))",
            notes="Differs from hifigan-22k-80 only in padding (centred, frames 1 + n // hop) and in "
            "having no magnitude epsilon.",
            sample_rate=22050,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="center",
            pad_mode="reflect",
            power=1.0,
            n_mels=80,
            fmin=0.0,
            fmax=8000.0,
            compression=_LN5,
        ),
        _preset(
            "bigvgan-24k-100",
            "BigVGAN (NVIDIA/BigVGAN): configs/bigvgan_v2_24khz_100band_256x.json + meldataset.py",
            "meldataset.mel_spectrogram (HiFi-GAN's): reflect pad (n_fft-hop)//2, torch.stft(center=False), "
            "sqrt(re^2+im^2+1e-9), librosa slaney mel, log(clamp(x, 1e-5)); config: 24000 Hz, n_fft 1024, "
            "hop 256, win 1024, 100 mels, fmin 0, fmax null (Nyquist)",
            sample_rate=24000,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="half_overlap",
            pad_mode="reflect",
            mag_eps=1e-9,
            power=1.0,
            n_mels=100,
            fmin=0.0,
            fmax=None,
            compression=_LN5,
        ),
        _preset(
            "bigvgan-44k-128",
            "BigVGAN (NVIDIA/BigVGAN): configs/bigvgan_v2_44khz_128band_512x.json + meldataset.py",
            "as bigvgan-24k-100 with 44100 Hz, n_fft 2048, hop 512, win 2048, 128 mels, fmin 0, "
            "fmax null (Nyquist)",
            sample_rate=44100,
            n_fft=2048,
            hop_length=512,
            win_length=2048,
            padding="half_overlap",
            pad_mode="reflect",
            mag_eps=1e-9,
            power=1.0,
            n_mels=128,
            fmin=0.0,
            fmax=None,
            compression=_LN5,
        ),
        _preset(
            "vocos-24k-100",
            "Vocos (gemelo-ai/vocos): configs/vocos.yaml + vocos/feature_extractors.py + vocos/modules.py",
            "MelSpectrogramFeatures(padding='center') = torchaudio MelSpectrogram(24000, n_fft 1024, "
            "hop 256, n_mels 100, center=True, power=1) with torchaudio defaults: hann, reflect pad, "
            "htk scale, norm None, f_max sr//2; safe_log = log(clip(x, min=1e-7))",
            notes="torchaudio builds the filterbank in float32.",
            sample_rate=24000,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="center",
            pad_mode="reflect",
            power=1.0,
            n_mels=100,
            fmin=0.0,
            fmax=None,
            mel_scale="htk",
            mel_norm=None,
            compression=Compression(kind="ln", floor=1e-7),
        ),
        _preset(
            "whisper-16k-80",
            "Whisper (openai/whisper): whisper/audio.py log_mel_spectrogram (n_mels=80)",
            "torch.stft(n_fft 400, hop 160, hann_window(400), center=True reflect), last frame dropped, "
            "|X|^2, mel_filters.npz = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) (slaney), "
            "log10(clamp(x, 1e-10)), maximum(x, x.max() - 8), (x + 4) / 4",
            notes="Whisper takes the maximum over the whole tensor; melinvert over each item, "
            "which is the same for one clip. Frames: n_samples // 160.",
            sample_rate=16000,
            n_fft=400,
            hop_length=160,
            win_length=400,
            padding="center",
            pad_mode="reflect",
            power=2.0,
            n_mels=80,
            fmin=0.0,
            fmax=None,
            drop_last_frame=True,
            compression=Compression(kind="whisper", floor=1e-10),
        ),
        _preset(
            "whisper-16k-128",
            "Whisper large-v3 (openai/whisper): whisper/audio.py log_mel_spectrogram (n_mels=128)",
            "as whisper-16k-80 with mel_128 = librosa.filters.mel(sr=16000, n_fft=400, n_mels=128)",
            notes="Whisper takes the maximum over the whole tensor; melinvert over each item, "
            "which is the same for one clip. Frames: n_samples // 160.",
            sample_rate=16000,
            n_fft=400,
            hop_length=160,
            win_length=400,
            padding="center",
            pad_mode="reflect",
            power=2.0,
            n_mels=128,
            fmin=0.0,
            fmax=None,
            drop_last_frame=True,
            compression=Compression(kind="whisper", floor=1e-10),
        ),
        _preset(
            "espnet-22k-80",
            "ESPnet2 TTS (espnet/espnet): egs2/ljspeech/tts1/run.sh + egs2/TEMPLATE/tts1/tts.sh "
            "feats_extract_conf + espnet2/tts/feats_extract/log_mel_fbank.py",
            "layers/stft.Stft: torch.stft(center=True, reflect, hann_window(n_fft)); LogMelFbank: "
            "sqrt(clamp(re^2+im^2, min=1e-10)); layers/log_mel.LogMel: librosa slaney mel 80-7600 Hz, "
            "log10(clamp(x, min=1e-10)); run.sh fs 22050, n_fft 1024, n_shift 256, win_length null",
            notes="ESPnet then applies global_mvn with the dataset's feats_stats.npz: pass "
            "mean = sum/count and std = sqrt(sum_square/count - mean^2) as compression mean/std. "
            "ESPnet's Stft computes in float32 whatever the input dtype.",
            sample_rate=22050,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="center",
            pad_mode="reflect",
            mag_eps=1e-10,
            mag_eps_mode="clamp",
            power=1.0,
            n_mels=80,
            fmin=80.0,
            fmax=7600.0,
            compression=Compression(kind="log10", floor=1e-10),
        ),
        _preset(
            "pwg-22k-80",
            "ParallelWaveGAN (kan-bayashi/ParallelWaveGAN): egs/ljspeech/voc1/conf/parallel_wavegan.v1.yaml "
            "+ parallel_wavegan/bin/preprocess.py logmelfilterbank",
            "librosa.stft(center=True, pad_mode='reflect', hann), |X| without epsilon, librosa slaney "
            "mel 80-7600 Hz, log10(maximum(1e-10, x)); stored time-first (frames, n_mels)",
            notes="Training features are then standardised with stats.h5/stats.npy (sklearn "
            "StandardScaler mean and scale): pass them as compression mean/std.",
            sample_rate=22050,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="center",
            pad_mode="reflect",
            power=1.0,
            n_mels=80,
            fmin=80.0,
            fmax=7600.0,
            compression=Compression(kind="log10", floor=1e-10),
        ),
        _preset(
            "coqui-22k-80",
            "Coqui TTS (coqui-ai/TTS): TTS/config/shared_configs.py BaseAudioConfig defaults + "
            "TTS/utils/audio/processor.py AudioProcessor.melspectrogram + numpy_transforms.py",
            "librosa.stft(center=True, pad_mode='reflect', hann, win 1024), |X|, librosa slaney mel "
            "(BaseAudioConfig mel_fmin 0, mel_fmax None = Nyquist), amp_to_db: "
            "20*log10(maximum(1e-8, x)); normalize: -ref_level_db 20, (S + 100) / 100, "
            "symmetric to [-4, 4], clipped",
            notes="Every parameter is a BaseAudioConfig default (signal_norm, symmetric_norm, max_norm 4, "
            "min_level_db -100, ref_level_db 20, spec_gain 20, log10, clip_norm). Older Coqui/Mozilla "
            "TTS floored at 1e-5 instead of 1e-8; with clip_norm both give identical output. Recipes "
            "that set mel_fmax=8000 (or 7600) need fmax changed.",
            sample_rate=22050,
            n_fft=1024,
            hop_length=256,
            win_length=1024,
            padding="center",
            pad_mode="reflect",
            power=1.0,
            n_mels=80,
            fmin=0.0,
            fmax=None,
            compression=Compression(
                kind="coqui",
                floor=1e-8,
                multiplier=20.0,
                ref_level_db=20.0,
                min_level_db=-100.0,
                max_norm=4.0,
                symmetric=True,
                clip_norm=True,
            ),
        ),
        _preset(
            "librosa-default",
            "librosa.feature.melspectrogram defaults (librosa >= 0.10; checked against 0.11)",
            "sr 22050, n_fft 2048, hop 512, win n_fft, hann, center=True with pad_mode 'constant', "
            "power 2, filters.mel: 128 slaney-scale mels with slaney norm, fmin 0, fmax sr/2; "
            "no compression",
            notes="librosa < 0.10 padded with 'reflect'. librosa.filters.mel returns float32 by default.",
            sample_rate=22050,
            n_fft=2048,
            hop_length=512,
            win_length=2048,
            padding="center",
            pad_mode="constant",
            power=2.0,
            n_mels=128,
            fmin=0.0,
            fmax=None,
            compression=Compression(kind="none"),
        ),
        _preset(
            "torchaudio-default",
            "torchaudio.transforms.MelSpectrogram defaults (pytorch/audio "
            "src/torchaudio/transforms/_transforms.py)",
            "sr 16000, n_fft 400, win n_fft, hop win//2 = 200, hann_window, center=True reflect, "
            "power 2, normalized False, 128 htk mels, norm None, f_min 0, f_max sr//2; no compression",
            sample_rate=16000,
            n_fft=400,
            hop_length=200,
            win_length=400,
            padding="center",
            pad_mode="reflect",
            power=2.0,
            n_mels=128,
            fmin=0.0,
            fmax=None,
            mel_scale="htk",
            mel_norm=None,
            compression=Compression(kind="none"),
        ),
    ]
}


def list_presets() -> list[str]:
    """Names of the built-in presets, in registry order."""
    return list(PRESETS)


def get_preset(name: str) -> MelConfig:
    """The :class:`MelConfig` of a preset; an unknown name suggests the nearest ones."""
    if isinstance(name, str) and name in PRESETS:
        return PRESETS[name].config
    near = difflib.get_close_matches(str(name), list(PRESETS), n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(near)}?" if near else f"; known: {', '.join(PRESETS)}"
    raise MelinvertError(f"unknown preset {name!r}{hint}")


def resolve_config(config: MelConfig | str) -> MelConfig:
    """Accept a :class:`MelConfig` or a preset name."""
    if isinstance(config, MelConfig):
        return config
    if isinstance(config, str):
        return get_preset(config)
    raise MelinvertError(f"config must be a MelConfig or a preset name, got {type(config).__name__}")

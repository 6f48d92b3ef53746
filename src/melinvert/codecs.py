"""Compression codecs: one class per compression kind, in a registry.

A :class:`~melinvert.config.Compression` is the frozen, serialisable value users write
(``Compression(kind="ln", floor=1e-5)``); its :attr:`~melinvert.config.Compression.codec` is
an instance of the class registered for its ``kind`` here, which holds the formulas:
:meth:`Codec.encode` / :meth:`Codec.decode`, the levels silence encodes to, the value range
the encoder can produce and the texts that name it. The per-bin mean/std standardisation
applies on top of any kind and stays in ``Compression``.

Adding a kind is one subclass of :class:`Codec` (with ``kind`` set) and one
:func:`register_codec` call; ``Compression(kind=...)`` then accepts it.

Range checks (:func:`check_range`, :meth:`Compression.check_range`) separate two cases:

* impossible input (a linear mel given to a log config, a log-mel given to a linear config,
  NaN or Inf, values far below the floor): an error;
* values a little below the floor, as predicted mels have (an acoustic model's output plus its
  noise): raised to the floor with a one-line notice, or an error in ``strict`` mode. "A
  little" is at most :data:`CLAMP_DECADES` decades of the linear mel (20 dB of a magnitude
  mel); deeper values mean another floor (another preset) and are an error.

Values within float16 rounding of a bound (relative ``2**-11``, or half the precision of the
mel's own dtype where coarser, e.g. bfloat16) count as on it: no notice, nothing changed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import MelinvertError, check


class _LazyTorch:
    """``torch``, imported on first use: reading configs and presets does not pay its import."""

    def __getattr__(self, name: str) -> Any:
        import torch as _torch

        value = getattr(_torch, name)
        setattr(self, name, value)
        return value


if TYPE_CHECKING:
    import torch
else:
    torch = _LazyTorch()

if TYPE_CHECKING:  # pragma: no cover
    from .config import Compression

#: Whisper's dynamic range (log10 units) below the per-item maximum, and its affine map.
WHISPER_RANGE = 8.0
#: How far below the floor (decades of the linear mel) values are clamped rather than refused.
CLAMP_DECADES = 1.0
#: Relative tolerance of a bound: float16's half precision (values stored as float16 pass).
_REL_TOL = 2.0**-11


# ---------------------------------------------------------------------- range reports
@dataclass(frozen=True)
class RangeReport:
    """The result of a range check (:func:`check_range`).

    Attributes
    ----------
    mel : torch.Tensor [shape=(..., n_mels, frames)]
        The values to use: the input itself when nothing was clamped, else a new tensor with
        the values outside the codec's range raised (or lowered) to it.
    error : str or None
        Why the values cannot be a mel of this compression (one line), ``None`` if they can.
    notice : str or None
        One line saying what was clamped, ``None`` when nothing was.
    clamped, total : int
        Values clamped and values checked.
    """

    mel: torch.Tensor
    error: str | None = None
    notice: str | None = None
    clamped: int = 0
    total: int = 0

    def raise_for_error(self, prefix: str = "mel does not fit the config") -> torch.Tensor:
        """Raise :class:`MelinvertError` (``"{prefix}: {error}"``) on an error, else return :attr:`mel`."""
        check(self.error is None, f"{prefix}: {self.error}")
        return self.mel


def _tolerance(dtype: torch.dtype, level: float) -> float:
    eps = torch.finfo(dtype).eps / 2 if dtype.is_floating_point else 0.0
    return max(_REL_TOL, eps) * max(1.0, abs(level))


def _count(n: int) -> str:
    return f"{n:,}"


def check_range(codec: Codec, mel: torch.Tensor, *, strict: bool = False) -> RangeReport:
    """Check that ``mel`` can be a mel of ``codec``; clamp small excursions below its floor.

    Parameters
    ----------
    codec : Codec
    mel : torch.Tensor [shape=(..., n_mels, frames)]
        Compressed values (before any mean/std standardisation is undone: a standardised
        compression is not range-checked, its values can take any sign).
    strict : bool
        Values outside the range are an error, however close (no clamping).

    Returns
    -------
    RangeReport
    """
    total = mel.numel()
    if total == 0:
        return RangeReport(mel, error="the mel is empty")
    finite = torch.isfinite(mel)
    if not bool(finite.all()):
        bad = total - int(finite.sum())
        return RangeReport(mel, error=f"{_count(bad)} of {_count(total)} values are NaN or Inf", total=total)
    lo, hi = float(mel.min()), float(mel.max())
    problem = codec.impossible(mel, lo, hi)
    if problem is not None:
        return RangeReport(mel, error=problem, total=total)
    lower, upper = codec.bounds(mel)
    if lower is None and upper is None:
        return RangeReport(mel, total=total)
    # Values beyond a bound by more than float16 rounding decide; all values beyond it are clamped.
    out, low_n, high_n, depth = mel, 0, 0, 0.0
    if lower is not None:
        ref = float(lower.max()) if isinstance(lower, torch.Tensor) else lower
        if bool((mel < lower - _tolerance(mel.dtype, ref)).any()):
            low_n = int((mel < lower).sum())
            depth = max(depth, float((lower - mel).max()))
            out = torch.maximum(out, torch.as_tensor(lower, dtype=mel.dtype, device=mel.device))
    if upper is not None and hi > upper + _tolerance(mel.dtype, upper):
        high_n = int((mel > upper).sum())
        depth = max(depth, hi - upper)
        out = torch.clamp(out, max=upper)
    n = low_n + high_n
    if n == 0:
        return RangeReport(mel, total=total)
    decade = codec.decade()
    if strict or decade is None or depth > CLAMP_DECADES * decade:
        return RangeReport(mel, error=codec.range_error(mel, lo, hi), total=total)
    where = codec.range_name()
    lows = (
        ""
        if not low_n
        else f"down to {lo:.4g}"
        if not isinstance(lower, torch.Tensor)
        else f"{depth:.4g} under it"
    )
    highs = f"up to {hi:.4g}" if high_n else ""
    notice = (
        f"clamped {_count(n)} of {_count(total)} values ({100 * n / total:.2g}%) {where}, "
        f"{' and '.join(s for s in (lows, highs) if s)}"
    )
    return RangeReport(out, notice=notice, clamped=n, total=total)


# ---------------------------------------------------------------------- the codecs
def _num(x: float) -> str:
    """``1e-05`` -> ``1e-5``; other numbers as ``:g``."""
    e = math.log10(x) if x > 0 else 0.5
    return f"1e{round(e)}" if abs(e - round(e)) < 1e-9 and abs(e) >= 4 else f"{x:g}"


class Codec:
    """One compression kind: formulas, ranges and texts; subclass it and :func:`register_codec`.

    A codec is built from the :class:`~melinvert.config.Compression` it serves (``self.c``)
    and reads its parameters from there. Tensors are ``(..., n_mels, frames)``; data-dependent
    kinds use the maximum of each item (the last two dimensions).

    Class attributes
    ----------------
    kind : str
        The ``Compression.kind`` it implements.
    is_log : bool
        Its values are logarithmic.
    commonly_standardised : bool
        Mels of this kind are often standardised per bin with dataset statistics (ESPnet and
        ParallelWaveGAN log10 features): :mod:`melinvert.identify` offers presets of this kind
        for standardised values.
    """

    kind: ClassVar[str] = ""
    is_log: ClassVar[bool] = True
    commonly_standardised: ClassVar[bool] = False

    def __init__(self, compression: Compression):
        self.c = compression

    # -- formulas
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Linear mel (non-negative) -> compressed values, same shape."""
        raise NotImplementedError

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        """Compressed values -> linear mel (same shape, non-negative)."""
        raise NotImplementedError

    def validate(self) -> None:
        """Raise :class:`MelinvertError` for parameters this kind cannot use (default: none)."""

    # -- silence and floors
    @property
    def silence_below_max(self) -> float | None:
        """For kinds whose silence level depends on the data: how far (encoded units) it lies
        below each item's maximum. ``None`` for a fixed silence level."""
        return None

    @property
    def data_dependent(self) -> bool:
        """The encoding of a value depends on the rest of the item (its maximum)."""
        return self.silence_below_max is not None

    def silence_value(self) -> float | None:
        """Encoded value of an all-zero linear mel, ``None`` where it depends on the data."""
        if self.data_dependent:
            return None
        return float(self.encode(torch.zeros(1, 1, dtype=torch.float64)).item())

    @property
    def linear_floor(self) -> float | None:
        """The clamp applied to the linear mel before the logarithm (mel units), if any."""
        return float(self.c.floor)

    def decade(self) -> float | None:
        """Encoded units spanned by one decade of the linear mel (``None``: not logarithmic)."""
        return None

    def db_per_unit(self, power: float) -> float | None:
        """dB of the audio one encoded unit spans, for a mel of magnitude ``power``."""
        return None

    # -- range checks (see check_range)
    def impossible(self, mel: torch.Tensor, lo: float, hi: float) -> str | None:
        """Why the values cannot come from this kind whatever the clamping (or ``None``)."""
        return None

    def bounds(self, mel: torch.Tensor) -> tuple[float | torch.Tensor | None, float | None]:
        """(lowest, highest) value the encoder produces: a number, a per-item tensor
        broadcastable to ``mel``, or ``None`` for no bound."""
        return None, None

    def range_error(self, mel: torch.Tensor, lo: float, hi: float) -> str:
        """The error for values outside :meth:`bounds` that are not clamped."""
        return f"values in [{lo:.4g}, {hi:.4g}] fall outside what {self.kind} compression produces"

    def range_name(self) -> str:
        """Where clamped values were, for the notice: ``"below the ln floor -11.51"``."""
        lower, _ = self.bounds(torch.zeros(1, 1, dtype=torch.float64))
        return f"below the {self.kind} floor {lower:.4g}"

    # -- texts
    def describe(self) -> str:
        """One line, e.g. ``"ln, floor 1e-5 (-11.513)"``."""
        return self.kind

    def short(self) -> str:
        """A few characters for tables, e.g. ``"ln 1e-5"``."""
        return self.kind

    def brief(self) -> str:
        """The compression in :meth:`MelConfig.describe <melinvert.config.MelConfig.describe>`,
        e.g. ``"ln floor 1e-05"``."""
        return self.kind

    def infer_settings(self, values: np.ndarray, power: float) -> tuple[dict[str, Any], list[str]] | None:
        """Compression fields that reproduce ``values`` (batch, n_mels, frames) of a mel of
        magnitude ``power`` as far as the values tell, with caveats (one clause each);
        ``None`` when this kind has nothing to add to its defaults."""
        return None


class NoneCodec(Codec):
    """``none``: the linear mel itself."""

    kind = "none"
    is_log = False

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return mel

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.clamp(values, min=0.0)

    @property
    def linear_floor(self) -> float | None:
        return None

    def impossible(self, mel: torch.Tensor, lo: float, hi: float) -> str | None:
        if lo < -1e-6 * max(1.0, abs(hi)):
            return (
                f"negative values (min {lo:.4g}) in a mel whose config expects a linear mel; "
                "is it log-compressed? choose the matching preset or --config"
            )
        return None

    def describe(self) -> str:
        return "linear (non-negative, no compression)"


class _FloorLog(Codec):
    """``log_b(max(x, floor))``: ln and log10 share everything but the base."""

    def _log(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _level(self) -> float:
        return self.silence_value()  # type: ignore[return-value]

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return self._log(torch.clamp(mel, min=self.c.floor))

    def bounds(self, mel: torch.Tensor) -> tuple[float | torch.Tensor | None, float | None]:
        return self._level(), None

    def impossible(self, mel: torch.Tensor, lo: float, hi: float) -> str | None:
        if lo >= 0.0 and hi > 0.0:
            return (
                f"all values are >= 0 (min {lo:.4g}, max {hi:.4g}): this looks like a linear mel, "
                f"but the config expects a {self.kind}-compressed mel"
            )
        return None

    def range_error(self, mel: torch.Tensor, lo: float, hi: float) -> str:
        return (
            f"values down to {lo:.4g}, below the {self.kind} floor {self._level():.4g} this config "
            "produces; wrong preset or compression?"
        )

    def describe(self) -> str:
        return f"{self.kind}, floor {_num(self.c.floor)} ({self._level():.5g})"

    def short(self) -> str:
        return f"{self.kind} {self.c.floor:.0e}".replace("e-0", "e-")

    def brief(self) -> str:
        return f"{self.kind} floor {self.c.floor:g}"


class LnCodec(_FloorLog):
    """``ln``: ``log(max(x, floor))`` (HiFi-GAN, BigVGAN, Tacotron 2, Vocos)."""

    kind = "ln"

    def _log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    def _level(self) -> float:
        return math.log(self.c.floor)

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.exp(values)

    def decade(self) -> float:
        return math.log(10.0)

    def db_per_unit(self, power: float) -> float:
        return 20.0 / power / math.log(10.0)


class Log10Codec(_FloorLog):
    """``log10``: ``log10(max(x, floor))`` (ESPnet, ParallelWaveGAN)."""

    kind = "log10"
    commonly_standardised = True

    def _log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log10(x)

    def _level(self) -> float:
        return math.log10(self.c.floor)

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.pow(10.0, values)

    def decade(self) -> float:
        return 1.0

    def db_per_unit(self, power: float) -> float:
        return 20.0 / power


class DbCodec(Codec):
    """``db``: ``multiplier * log10(max(x, floor) / max(ref, floor))``, optionally raised to at
    least each item's maximum minus ``top_db`` (librosa ``power_to_db``/``amplitude_to_db``)."""

    kind = "db"

    def _offset(self) -> float:
        return self.c.multiplier * math.log10(max(self.c.ref, self.c.floor))

    def _level(self) -> float:
        return self.c.multiplier * math.log10(self.c.floor) - self._offset()

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        out = self.c.multiplier * torch.log10(torch.clamp(mel, min=self.c.floor))
        out = out - self._offset()
        if self.c.top_db is not None:
            top = out.amax(dim=(-2, -1), keepdim=True)
            out = torch.maximum(out, top - self.c.top_db)
        return out

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.pow(10.0, (values + self._offset()) / self.c.multiplier)

    @property
    def silence_below_max(self) -> float | None:
        return self.c.top_db if self.c.top_db else None

    def decade(self) -> float:
        return self.c.multiplier

    def db_per_unit(self, power: float) -> float:
        return 1.0

    def bounds(self, mel: torch.Tensor) -> tuple[float | torch.Tensor | None, float | None]:
        return self._level(), None

    def range_error(self, mel: torch.Tensor, lo: float, hi: float) -> str:
        return (
            f"values down to {lo:.4g}, below the db floor {self._level():.4g} this config produces; "
            "wrong preset or compression?"
        )

    def describe(self) -> str:
        if self.c.top_db:
            return f"dB ({self.c.multiplier:g}·log10), clipped at the maximum - {self.c.top_db:g} dB (top_db)"
        return (
            f"dB ({self.c.multiplier:g}·log10), floor {self.c.multiplier * math.log10(self.c.floor):.5g} dB"
        )

    def short(self) -> str:
        return f"dB floor {self.c.floor:.0e}" + (f" top {self.c.top_db:g}" if self.c.top_db else "")

    def brief(self) -> str:
        return f"db floor {self.c.floor:g}"

    def infer_settings(self, values: np.ndarray, power: float) -> tuple[dict[str, Any], list[str]]:
        """librosa ``power_to_db`` settings (``amin`` 1e-10 of a power mel): ``ref=np.max``
        when every item peaks at 0 dB, ``top_db`` from the span when each item's minimum
        repeats above librosa's ``amin`` level (the clip level)."""
        multiplier = 20.0 / power  # 10·log10 of a power mel is 20·log10 of its magnitude
        floor = 1e-10 ** (power / 2.0)
        tops = values.max(axis=(1, 2))
        lows = values.min(axis=(1, 2))
        spans = tops - lows
        notes: list[str] = []
        if np.all(np.abs(tops) <= 1e-4):
            notes.append(
                "the maximum is 0 dB, so it was made with ref=np.max: the absolute level is lost and "
                "ref 1.0 decodes it with its loudest bin at 1.0 (set the output gain yourself)"
            )
        tol = 1e-4 * np.maximum(1.0, np.abs(lows))[:, None, None]
        repeats = (np.abs(values - lows[:, None, None]) <= tol).sum(axis=(1, 2))
        at_amin = np.abs(lows - multiplier * math.log10(floor)) <= 1e-3
        clipped = bool(np.all(repeats >= 3) and not np.any(at_amin)) and float(np.ptp(spans)) <= 1e-3
        top_db = float(round(float(spans.mean()), 3)) if clipped else None
        if top_db is None:
            notes.append(f"no clip level: top_db None (or above the values' span, {spans.max():.4g} dB)")
        settings = {"kind": "db", "multiplier": multiplier, "floor": floor, "ref": 1.0, "top_db": top_db}
        return settings, notes


class Log1pCodec(Codec):
    """``log1p``: ``ln(1 + x)``."""

    kind = "log1p"

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        return torch.log1p(mel)

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.expm1(torch.clamp(values, min=0.0))

    @property
    def linear_floor(self) -> float | None:
        return None

    def impossible(self, mel: torch.Tensor, lo: float, hi: float) -> str | None:
        if lo < -1e-6:
            return f"negative values (min {lo:.4g}) are impossible for log1p compression"
        return None


class WhisperCodec(Codec):
    """``whisper``: ``log10(max(x, floor))`` raised to at least the item's maximum minus 8, then
    ``(v + 4) / 4`` (OpenAI Whisper's log-mel)."""

    kind = "whisper"

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        out = torch.log10(torch.clamp(mel, min=self.c.floor))
        top = out.amax(dim=(-2, -1), keepdim=True)
        out = torch.maximum(out, top - WHISPER_RANGE)
        return (out + 4.0) / 4.0

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        return torch.pow(10.0, 4.0 * values - 4.0)

    @property
    def silence_below_max(self) -> float:
        return WHISPER_RANGE / 4.0

    def decade(self) -> float:
        return 0.25

    def db_per_unit(self, power: float) -> float:
        return 40.0

    def bounds(self, mel: torch.Tensor) -> tuple[float | torch.Tensor | None, float | None]:
        return mel.amax(dim=(-2, -1), keepdim=True) - WHISPER_RANGE / 4.0, None

    def range_error(self, mel: torch.Tensor, lo: float, hi: float) -> str:
        span = float((mel.amax(dim=(-2, -1)) - mel.amin(dim=(-2, -1))).max())
        return f"values span {span:.4g}, more than the 2.0 Whisper's encoding allows; not a Whisper log-mel?"

    def range_name(self) -> str:
        return "below Whisper's floor (2.0 under each item's maximum)"

    def describe(self) -> str:
        return "Whisper log-mel (log10, range 8 below the maximum, (x + 4) / 4)"


class CoquiCodec(Codec):
    """``coqui``: Coqui TTS's ``multiplier * log10(max(x, floor)) - ref_level_db`` mapped from
    ``[min_level_db, 0]`` to ``[-max_norm, max_norm]`` (``[0, max_norm]`` when not symmetric),
    clipped when ``clip_norm``."""

    kind = "coqui"

    def _span(self) -> float:
        return 2 * self.c.max_norm if self.c.symmetric else self.c.max_norm

    def _low(self) -> float:
        return -self.c.max_norm if self.c.symmetric else 0.0

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        c = self.c
        db = c.multiplier * torch.log10(torch.clamp(mel, min=c.floor)) - c.ref_level_db
        out = (db - c.min_level_db) / (-c.min_level_db)
        if c.symmetric:
            out = 2 * c.max_norm * out - c.max_norm
            if c.clip_norm:
                out = torch.clamp(out, -c.max_norm, c.max_norm)
        else:
            out = c.max_norm * out
            if c.clip_norm:
                out = torch.clamp(out, 0.0, c.max_norm)
        return out

    def decode(self, values: torch.Tensor) -> torch.Tensor:
        c = self.c
        s = (values - self._low()) / self._span()
        db = s * (-c.min_level_db) + c.min_level_db + c.ref_level_db
        return torch.pow(10.0, db / c.multiplier)

    def decade(self) -> float:
        return self.c.multiplier / -self.c.min_level_db * self._span()

    def db_per_unit(self, power: float) -> float:
        return -self.c.min_level_db / self._span()

    def bounds(self, mel: torch.Tensor) -> tuple[float | torch.Tensor | None, float | None]:
        if not self.c.clip_norm:
            return None, None
        return self._low(), self.c.max_norm

    def range_error(self, mel: torch.Tensor, lo: float, hi: float) -> str:
        return (
            f"values in [{lo:.4g}, {hi:.4g}] fall outside Coqui's normalised range "
            f"[{self._low():g}, {self.c.max_norm:g}]"
        )

    def range_name(self) -> str:
        return f"outside Coqui's normalised range [{self._low():g}, {self.c.max_norm:g}]"

    def describe(self) -> str:
        return f"Coqui normalised dB in [{self._low():g}, {self.c.max_norm:g}] (min_level_db {self.c.min_level_db:g})"


# ---------------------------------------------------------------------- the registry
#: Codec class of every compression kind, by name (in registration order).
CODECS: dict[str, type[Codec]] = {}


def register_codec(cls: type[Codec], *, replace: bool = False) -> type[Codec]:
    """Register ``cls`` for ``Compression(kind=cls.kind)``; usable as a class decorator.

    Raises
    ------
    MelinvertError
        ``cls`` is not a :class:`Codec` subclass with a ``kind`` name, or the kind is taken
        (and ``replace`` is false).
    """
    check(isinstance(cls, type) and issubclass(cls, Codec), f"{cls!r} is not a Codec subclass")
    kind = cls.kind
    check(
        isinstance(kind, str) and kind.isidentifier(), f"codec {cls.__name__} needs a kind name, got {kind!r}"
    )
    check(replace or kind not in CODECS, f"a codec for kind {kind!r} is already registered")
    CODECS[kind] = cls
    return cls


def codec_class(kind: Any) -> type[Codec]:
    """The codec class registered for ``kind``; an unknown kind names the known ones."""
    if isinstance(kind, str) and kind in CODECS:
        return CODECS[kind]
    raise MelinvertError(f"compression {kind=} must be one of {', '.join(CODECS)}")


for _cls in (NoneCodec, LnCodec, Log10Codec, DbCodec, Log1pCodec, WhisperCodec, CoquiCodec):
    register_codec(_cls)
del _cls

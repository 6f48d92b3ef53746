"""Augmentation of the training mels with the degradations of predicted mels.

A learned stage meant for the mels an acoustic model predicts is trained on mels degraded as
such mels are (:mod:`melinvert.degrade`) while its target stays the clean audio. The families,
as ``melinvert train --augment SPEC`` names them (``SPEC``: comma-separated ``NAME=VALUE``):

==============  =======================  ===============================================
name            value                    what each crop gets
==============  =======================  ===============================================
``level``       ``LO:HI`` dB             a level offset (:func:`~melinvert.degrade.shift_level`)
``smooth_t``    ``LO:HI`` frames, >= 0   Gaussian blur along frames (standard deviation)
``smooth_f``    ``LO:HI`` mel bins, >= 0 Gaussian blur along mel bins (standard deviation)
``noise``       ``LO:HI`` nepers, >= 0   Gaussian noise on the natural-log mel (its std)
``mask``        ``P`` in [0, 1]          with probability ``P``, the mel an oracle enhancer
                                         leaves of the crop mixed with another crop of the
                                         batch (:func:`~melinvert.degrade.oracle_masked_mel`)
``mask_snr``    ``LO:HI`` dB             the speech-to-interferer ratio of those mixtures
                                         (default ``0:20``)
``clean``       ``P`` in [0, 1]          with probability ``P`` the crop is left clean
==============  =======================  ===============================================

A single number ``X`` is the range ``X:X``. Each crop draws each strength uniformly from its
range (and its coin flips) from a generator that is a pure function of ``(seed, step)``
(:func:`augment_generator`), so a resumed run draws what an uninterrupted one would. The
order is the mask first (it replaces the crop's mel), then level, blur in time, blur in
frequency and noise (:class:`~melinvert.degrade.Degradation`). The interferer of a mixture is
the next crop of the batch (the first for the last), or white noise from the step's generator
when the batch has one crop or that crop is silent; a silent crop is never masked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..config import MelConfig
from ..degrade import Degradation, apply, oracle_masked_mel
from ..errors import MelinvertError, check

#: Families with a strength range, in the order they are drawn, and whether they must be >= 0.
RANGES: dict[str, bool] = {
    "level": False,
    "smooth_t": True,
    "smooth_f": True,
    "noise": True,
    "mask_snr": False,
}
#: Families that are probabilities.
PROBABILITIES = ("mask", "clean")
#: SNR range of the masked mixtures when ``mask_snr`` is not given, dB.
DEFAULT_MASK_SNR = (0.0, 20.0)

SYNTAX = (
    "comma-separated NAME=VALUE: level=LO:HI (dB), smooth_t=LO:HI (frames), smooth_f=LO:HI (mel bins), "
    "noise=LO:HI (nepers), mask=P, mask_snr=LO:HI (dB), clean=P; e.g. "
    "smooth_t=0:1.5,smooth_f=0:1,noise=0:0.3,level=-6:6,mask=0.3"
)


@dataclasses.dataclass(frozen=True)
class Draw:
    """What one crop gets: its :class:`~melinvert.degrade.Degradation`, the SNR (dB) of its
    masked mixture (``None``: not masked)."""

    degradation: Degradation
    mask_snr_db: float | None


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Strength ranges of the predicted-mel families (``None``: family off); see the module."""

    level: tuple[float, float] | None = None
    smooth_t: tuple[float, float] | None = None
    smooth_f: tuple[float, float] | None = None
    noise: tuple[float, float] | None = None
    mask: float = 0.0
    mask_snr: tuple[float, float] = DEFAULT_MASK_SNR
    clean: float = 0.0

    @property
    def spec(self) -> str:
        """The canonical ``SPEC`` string (families in a fixed order, ranges as ``LO:HI``)."""
        parts = []
        for name in ("level", "smooth_t", "smooth_f", "noise"):
            r = getattr(self, name)
            if r is not None:
                parts.append(f"{name}={r[0]:g}:{r[1]:g}")
        if self.mask > 0:
            parts.append(f"mask={self.mask:g}")
            parts.append(f"mask_snr={self.mask_snr[0]:g}:{self.mask_snr[1]:g}")
        if self.clean > 0:
            parts.append(f"clean={self.clean:g}")
        return ",".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The families on, for a checkpoint's record: ranges as ``[lo, hi]``, probabilities."""
        out: dict[str, Any] = {}
        for name in ("level", "smooth_t", "smooth_f", "noise"):
            r = getattr(self, name)
            if r is not None:
                out[name] = list(r)
        if self.mask > 0:
            out["mask"] = self.mask
            out["mask_snr"] = list(self.mask_snr)
        if self.clean > 0:
            out["clean"] = self.clean
        return out

    def draw(self, rng: np.random.Generator, n: int) -> list[Draw]:
        """The strengths of ``n`` crops, each uniform in its range (a fixed number of draws per
        crop, so crop ``b``'s strengths do not depend on the others')."""
        draws = []
        for _ in range(n):
            v = {name: rng.uniform(*r) if (r := getattr(self, name)) is not None else 0.0 for name in RANGES}
            masked = bool(rng.uniform() < self.mask)
            clean = bool(rng.uniform() < self.clean)
            if clean:
                draws.append(Draw(Degradation(), None))
                continue
            deg = Degradation(
                level_db=v["level"], time_sigma=v["smooth_t"], freq_sigma=v["smooth_f"], noise_std=v["noise"]
            )
            draws.append(Draw(deg, float(v["mask_snr"]) if masked else None))
        return draws

    def apply(
        self,
        mel: torch.Tensor,
        audio: torch.Tensor,
        draws: Sequence[Draw],
        config: MelConfig,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Degrade compressed mels ``(B, n_mels, T)`` of audio ``(B, samples)`` as ``draws`` say.

        Returns compressed mels of the same shape, dtype and device; ``mel`` is not changed.
        """
        check(len(draws) == mel.shape[0], f"{len(draws)} draws for a batch of {mel.shape[0]}")
        out = []
        for b, d in enumerate(draws):
            m = mel[b]
            if d.mask_snr_db is not None and float(audio[b].abs().max()) > 0:
                inter = _interferer(audio, b, generator)
                masked = oracle_masked_mel(audio[b].cpu().double(), inter, config, d.mask_snr_db)
                check(
                    masked.shape == m.shape,
                    f"masked mel shape {tuple(masked.shape)} differs from the crop's {tuple(m.shape)}",
                )
                m = masked.to(dtype=m.dtype, device=m.device)
            out.append(apply(m, config, d.degradation, generator=generator))
        return torch.stack(out)


def _interferer(audio: torch.Tensor, b: int, generator: torch.Generator) -> torch.Tensor:
    """The next item of the batch (float64, CPU), or white noise when it is silent or alone."""
    n = audio.shape[0]
    if n > 1:
        other = audio[(b + 1) % n].cpu().double()
        if float(other.abs().max()) > 0:
            return other
    return torch.randn(audio.shape[-1], generator=generator, dtype=torch.float64)


def augment_generator(seed: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """The augmentation's random sources at ``step``: a pure function of ``(seed, step)``,
    independent of the crops' (:func:`melinvert.neural.tasks.step_generator`)."""
    rng = np.random.default_rng([seed, step, 2])
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, step, 3]).integers(2**62)))
    return rng, gen


def _number(name: str, value: str, text: str) -> float:
    """``text`` (part of ``value``) as a finite float."""
    try:
        x = float(text)
    except ValueError:
        raise MelinvertError(f"--augment {name}={value}: {text!r} is not a number ({SYNTAX})") from None
    check(math.isfinite(x), f"--augment {name}={value}: {text!r} must be finite")
    return x


def parse_augment(spec: str | Augmentation | None) -> Augmentation | None:
    """An :class:`Augmentation` from a ``SPEC`` string (see the module); ``None``, ``""`` or
    ``"none"``: no augmentation. Errors are one line naming the family and the problem."""
    if spec is None or isinstance(spec, Augmentation):
        return spec
    check(isinstance(spec, str), f"augment must be a SPEC string, got {type(spec).__name__}")
    text = spec.strip()
    if text.lower() in ("", "none", "off"):
        return None
    fields: dict[str, Any] = {}
    for item in text.split(","):
        check("=" in item, f"--augment item {item.strip()!r} must be NAME=VALUE ({SYNTAX})")
        name, value = (s.strip() for s in item.split("=", 1))
        known = (*RANGES, *PROBABILITIES)
        check(name in known, f"--augment: unknown family {name!r}; known: {', '.join(known)}")
        check(name not in fields, f"--augment: {name} is given twice")
        if name in PROBABILITIES:
            p = _number(name, value, value)
            check(0.0 <= p <= 1.0, f"--augment {name}={value}: a probability must be in [0, 1]")
            fields[name] = p
            continue
        lo_t, sep, hi_t = value.partition(":")
        lo = _number(name, value, lo_t)
        hi = _number(name, value, hi_t) if sep else lo
        check(lo <= hi, f"--augment {name}={value}: bad range, LO must not exceed HI")
        check(not RANGES[name] or lo >= 0, f"--augment {name}={value}: bad range, strengths must be >= 0")
        fields[name] = (lo, hi)
    aug = Augmentation(**fields)
    check(
        bool(aug.spec) and aug.spec != f"clean={aug.clean:g}",
        f"--augment {spec!r} degrades nothing: give at least one of level, smooth_t, smooth_f, noise, mask",
    )
    return aug


def degraded_copy(
    mels: Sequence[torch.Tensor],
    audio: Sequence[np.ndarray],
    augment: Augmentation,
    config: MelConfig,
    seed: int,
) -> list[torch.Tensor]:
    """A fixed degraded copy of validation mels: each compressed mel ``(n_mels, T_i)`` of
    ``audio[i]`` degraded once, with draws from ``seed`` alone; the interferer of a mixture is
    the next clip (tiled or cut to length), or white noise when there is one clip."""
    rng = np.random.default_rng([seed, 2**31, 2])
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, 2**31, 3]).integers(2**62)))
    draws = augment.draw(rng, len(mels))
    out = []
    for i, (m, y) in enumerate(zip(mels, audio, strict=True)):
        pair = [torch.from_numpy(np.asarray(y, dtype=np.float64))]
        if len(audio) > 1:
            other = np.asarray(audio[(i + 1) % len(audio)], dtype=np.float64)
            pair.append(torch.from_numpy(np.resize(other, y.shape[0])))
        out.append(augment.apply(m[None], torch.stack(pair), draws[i : i + 1], config, gen)[0])
    return out

"""Helpers shared by several test modules: where the optional real speech lies, a reference
test signal and librosa's filterbank.

(Imported as ``from helpers import ...``: pytest puts this folder on ``sys.path``.)
"""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np

from melinvert import MelConfig

#: Optional real recordings next to the repository (``../shared``); tests using them skip without.
SHARED_SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"


def harmonic_noise(sr: int, seconds: float, *, seed: int = 0, f0: float = 150.0) -> np.ndarray:
    """Nine harmonics of ``f0`` with random phases plus white noise, peak 0.5, float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    y = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 10))
    y = y + 0.1 * rng.standard_normal(t.size)
    return 0.5 * y / np.abs(y).max()


def ref_filterbank(c: MelConfig) -> np.ndarray:
    """The config's mel filterbank by librosa, float64 ``(n_mels, n_freqs)``."""
    return librosa.filters.mel(
        sr=c.sample_rate,
        n_fft=c.n_fft,
        n_mels=c.n_mels,
        fmin=c.fmin,
        fmax=c.fmax_hz,
        htk=c.mel_scale == "htk",
        norm=c.mel_norm,
        dtype=np.float64,
    )


def plain_methods():
    """The plain functions behind the registered stages, by stage name, for tests that call
    them directly: ``(magnitude, init, phase (algorithm, re-fits?), optimisers)``."""
    import functools

    from melinvert import magnitude, optimize, phase

    mags = {n: getattr(magnitude, n) for n in ("transpose", "pinv", "nnls", "gd")}
    inits = {"random": phase.init_random, "zero": phase.init_zero, "pghi": phase.init_pghi}
    phases = {}
    for n in ("gla", "fgla", "agla"):
        phases[n] = (getattr(phase, n), False)
        phases["m" + n] = (getattr(phase, n), True)
    opts = {
        "wave_lbfgs": optimize.wave_lbfgs,
        "wave_lbfgs_noise": functools.partial(optimize.wave_lbfgs, init="noise"),
        "stft_gd": optimize.stft_gd,
        "joint": optimize.joint,
    }
    return mags, inits, phases, opts

"""A speech-like test signal the project synthesises itself (no recordings needed).

Voiced vowels come from a glottal pulse train with a pitch glide, given a -12 dB/octave
glottal tilt and lip radiation, then shaped by three formant resonators; unvoiced segments
are noise bursts band-passed like fricatives; short pauses separate them. Used by
``melinvert demo``, the tests and the benchmarks when no real speech is at hand.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

#: (F1, F2, F3) in Hz and bandwidths for a few vowels (adult male averages).
VOWELS = {
    "a": ((730, 1090, 2440), (90, 110, 160)),
    "i": ((270, 2290, 3010), (60, 100, 150)),
    "u": ((300, 870, 2240), (60, 90, 150)),
    "e": ((530, 1840, 2480), (70, 100, 150)),
    "o": ((570, 840, 2410), (80, 90, 150)),
}


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    r = math.exp(-math.pi * bw / sr)
    theta = 2 * math.pi * freq / sr
    a = [1.0, -2 * r * math.cos(theta), r * r]
    return signal.lfilter([1.0 - r], a, x)


def _envelope(n: int, sr: int, attack: float = 0.02, release: float = 0.04) -> np.ndarray:
    env = np.ones(n)
    na, nr = min(n // 2, int(attack * sr)), min(n // 2, int(release * sr))
    if na:
        env[:na] = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, na))
    if nr:
        env[n - nr :] = 0.5 + 0.5 * np.cos(np.linspace(0, np.pi, nr))
    return env


def vowel(
    sr: int, seconds: float, f0: tuple[float, float], name: str, rng: np.random.Generator
) -> np.ndarray:
    """One voiced segment: pulse train gliding from ``f0[0]`` to ``f0[1]`` Hz through formants."""
    n = int(seconds * sr)
    f = np.linspace(f0[0], f0[1], n) * (1 + 0.01 * np.sin(2 * np.pi * 5.0 * np.arange(n) / sr))  # vibrato
    phase = np.cumsum(f / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    src = signal.lfilter([1.0], [1.0, -0.97], signal.lfilter([1.0], [1.0, -0.97], pulses))  # glottal tilt
    src = np.diff(src, prepend=0.0)  # lip radiation
    src += 0.002 * rng.standard_normal(n)  # breath
    formants, bws = VOWELS[name]
    out = sum(_resonator(src, fr, bw, sr) * g for fr, bw, g in zip(formants, bws, (1.0, 0.6, 0.3)))
    return out * _envelope(n, sr)


def fricative(
    sr: int, seconds: float, rng: np.random.Generator, band: tuple[float, float] = (3500, 7500)
) -> np.ndarray:
    """One unvoiced noise burst, band-passed (``band`` clipped to below Nyquist)."""
    n = int(seconds * sr)
    hi = min(band[1], 0.45 * sr)
    lo = min(band[0], 0.5 * hi)
    sos = signal.butter(4, [lo, hi], btype="band", fs=sr, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n)) * _envelope(n, sr, 0.01, 0.02)


def speech_like(sr: int = 22050, seconds: float = 3.0, seed: int = 0, peak: float = 0.5) -> np.ndarray:
    """A speech-like signal of ``seconds`` at ``sr``: vowels with pitch glides, fricatives, pauses.

    Returns
    -------
    np.ndarray [shape=(samples,), float32, peak ``peak``]
    """
    rng = np.random.default_rng(seed)
    n_total = int(seconds * sr)
    parts: list[np.ndarray] = [np.zeros(int(0.1 * sr))]
    names = list(VOWELS)
    base = rng.uniform(95, 210)
    while sum(len(p) for p in parts) < n_total:
        kind = rng.choice(["v", "v", "f", "p"])
        if kind == "v":
            dur = rng.uniform(0.18, 0.4)
            f0a = base * rng.uniform(0.85, 1.2)
            seg = vowel(sr, dur, (f0a, f0a * rng.uniform(0.8, 1.25)), names[rng.integers(len(names))], rng)
            seg *= 0.3 / max(np.abs(seg).max(), 1e-9)
        elif kind == "f":
            seg = 0.06 * fricative(sr, rng.uniform(0.06, 0.14), rng) / 0.3
        else:
            seg = np.zeros(int(rng.uniform(0.04, 0.12) * sr))
        parts.append(seg)
    y = np.concatenate(parts)[:n_total]
    y = y * (peak / max(np.abs(y).max(), 1e-9))
    return y.astype(np.float32)

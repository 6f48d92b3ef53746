"""Training data: audio files in, random crops out (mels are computed on the fly by the tasks).

Files are read once, mixed to mono and resampled (soxr) to the config's rate, and kept in
memory as float32. Each clip remembers the rate its file had: above half of it the
resampled clip holds nothing (a 16 kHz recording at 22.05 kHz is empty above 8 kHz), and the
losses leave those bins out (:func:`band_mask`) instead of teaching the model that speech
has no energy there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..config import MelConfig
from ..errors import check

#: Fraction of a source's Nyquist frequency below which its bins count in the losses (the
#: resampler's transition band lies above it).
BAND_EDGE = 0.95


@dataclasses.dataclass(frozen=True)
class Clip:
    """One training or validation recording.

    Attributes
    ----------
    name : str
        The file's name (no folders).
    audio : np.ndarray [shape=(samples,), float32]
        At the config's rate.
    source_rate : int
        The file's own rate in Hz.
    rate : int
        The rate of ``audio`` (the config's) in Hz.
    """

    name: str
    audio: np.ndarray
    source_rate: int
    rate: int

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / self.rate


def collect_audio(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Audio files named, or found (recursively, hidden ones skipped) in folders; sorted, unique."""
    from ..io import AUDIO_EXTENSIONS, find_inputs

    check(len(inputs) > 0, "no audio files or folders given")
    return [f for f, _ in find_inputs(inputs, AUDIO_EXTENSIONS, file_kind="audio")]


def load_clips(
    paths: Sequence[Path],
    config: MelConfig,
    *,
    on_file: Callable[[Path], None] | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[Clip]:
    """Read ``paths`` at ``config.sample_rate``; clips shorter than one frame are an error.

    With ``on_skip``, a file that cannot be used (unreadable, too short) is passed to
    ``on_skip(path, reason)`` and left out instead; none usable is still an error.
    """
    from ..errors import MelinvertError
    from ..io import load_audio

    clips = []
    for p in paths:
        source_rate = _file_rate(p)
        try:
            y, _, _ = load_audio(p, config.sample_rate)
            check(
                y.shape[0] >= config.min_samples,
                f"{str(p)!r} is shorter than one frame ({config.min_samples} samples at "
                f"{config.sample_rate} Hz)",
            )
        except MelinvertError as e:
            if on_skip is None:
                raise
            on_skip(p, str(e))
            continue
        clips.append(Clip(p.name, y, source_rate, config.sample_rate))
        if on_file is not None:
            on_file(p)
    check(bool(clips), f"none of the {len(paths)} audio file(s) could be read")
    return clips


def _file_rate(p: Path) -> int:
    import soundfile as sf

    try:
        return int(sf.info(str(p)).samplerate)
    except Exception:  # load_audio reports unreadable files with a proper message
        return 0


def split_files(paths: Sequence[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Hold out ``max(1, round(fraction * n))`` files for validation, chosen by ``seed``."""
    check(0 < fraction < 1, f"val fraction={fraction} must be in (0, 1)")
    check(len(paths) >= 2, f"{len(paths)} audio file(s): need at least 2 to hold some out, or pass --val")
    order = np.random.default_rng([seed, 7]).permutation(len(paths))
    n_val = max(1, round(fraction * len(paths)))
    val = sorted(paths[i] for i in order[:n_val])
    train = sorted(paths[i] for i in order[n_val:])
    return train, val


def digest(clips: Sequence[Clip]) -> str:
    """SHA-256 (first 16 hex digits) of the clips' names, rates and lengths, in order."""
    h = hashlib.sha256()
    for c in clips:
        h.update(f"{c.name}|{c.source_rate}|{c.audio.shape[0]}\n".encode())
    return h.hexdigest()[:16]


def summary(clips: Sequence[Clip]) -> dict[str, object]:
    """Files, minutes and source rates of a set of clips (for the checkpoint record)."""
    rates: dict[str, int] = {}
    for c in clips:
        rates[str(c.source_rate)] = rates.get(str(c.source_rate), 0) + 1
    return {
        "files": len(clips),
        "minutes": round(sum(c.seconds for c in clips) / 60.0, 3),
        "source_rates": rates,
        "digest": digest(clips),
    }


class Crops:
    """Random fixed-length crops from clips, as a batch.

    Parameters
    ----------
    clips : sequence of Clip
    config : MelConfig
    crop_frames : int
        Mel frames per crop; the crop has ``config.n_samples(crop_frames)`` samples.
    gain_db : float
        Each crop is scaled by a random gain, uniform in ``[-gain_db, gain_db]`` dB and
        limited so that its peak stays below 0.99.
    """

    def __init__(self, clips: Sequence[Clip], config: MelConfig, crop_frames: int, gain_db: float = 0.0):
        check(len(clips) > 0, "no training clips")
        self.clips = list(clips)
        self.samples = config.n_samples(crop_frames)
        lengths = np.array([c.audio.shape[0] for c in self.clips], dtype=np.float64)
        self.prob = lengths / lengths.sum()
        self.gain_db = gain_db

    def batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(audio (B, samples) float32, nyquist (B,) Hz of each crop's source)``."""
        idx = rng.choice(len(self.clips), size=batch_size, p=self.prob)
        out = np.zeros((batch_size, self.samples), dtype=np.float32)
        nyq = np.zeros(batch_size, dtype=np.float32)
        for b, i in enumerate(idx):
            c = self.clips[i]
            n = c.audio.shape[0]
            start = int(rng.integers(0, max(1, n - self.samples + 1)))
            seg = c.audio[start : start + self.samples]
            g = 10.0 ** (rng.uniform(-self.gain_db, self.gain_db) / 20.0) if self.gain_db > 0 else 1.0
            peak = float(np.abs(seg).max()) if seg.size else 0.0
            if peak * g > 0.99:
                g = 0.99 / peak
            out[b, : seg.shape[0]] = seg * g
            nyq[b] = c.source_rate / 2.0
        return torch.from_numpy(out), torch.from_numpy(nyq)


def band_mask(nyquist: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """``(B, n_bins)`` float mask: 1 below ``BAND_EDGE`` of each item's source Nyquist, else 0."""
    return (freqs[None, :] < BAND_EDGE * nyquist[:, None]).to(freqs.dtype)

"""melinvert: turn mel spectrograms of any convention back into audio.

The public face::

    import melinvert
    cfg = melinvert.get_preset("hifigan-22k-80")
    mel = melinvert.mel_spectrogram(audio, cfg)          # (..., n_mels, frames)
    audio2 = melinvert.invert(mel, cfg)                  # (..., samples)
    melinvert.metrics.score(audio, audio2, cfg.sample_rate, config=cfg)
"""

from __future__ import annotations

from . import metrics
from .config import PRESETS, Compression, MelConfig, Preset, get_preset, list_presets
from .dsp import istft, mel_basis, mel_spectrogram, stft
from .errors import MelinvertError
from .identify import identify_mel
from .io import load_audio, load_mel, load_stats, save_audio, save_mel
from .pipeline import invert, invert_blocks, list_methods

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "Compression",
    "MelConfig",
    "MelinvertError",
    "Preset",
    "__version__",
    "get_preset",
    "identify_mel",
    "invert",
    "invert_blocks",
    "istft",
    "list_methods",
    "list_presets",
    "load_audio",
    "load_mel",
    "load_stats",
    "mel_basis",
    "mel_spectrogram",
    "metrics",
    "save_audio",
    "save_mel",
    "stft",
]

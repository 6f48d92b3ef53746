"""melinvert: turn mel spectrograms of any convention back into audio.

The public face::

    import melinvert
    cfg = melinvert.get_preset("hifigan-22k-80")
    mel = melinvert.mel_spectrogram(audio, cfg)          # (..., n_mels, frames)
    audio2 = melinvert.invert(mel, cfg)                  # (..., samples)
"""

from __future__ import annotations

from .config import PRESETS, Compression, MelConfig, Preset, get_preset, list_presets
from .dsp import istft, mel_basis, mel_spectrogram, stft
from .errors import MelinvertError

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "Compression",
    "MelConfig",
    "MelinvertError",
    "Preset",
    "__version__",
    "get_preset",
    "istft",
    "list_presets",
    "mel_basis",
    "mel_spectrogram",
    "stft",
]

from .pipeline import invert, invert_blocks, list_methods

__all__ += ["invert", "invert_blocks", "list_methods"]

from .identify import identify_mel  # noqa: E402
from .io import load_audio, load_mel, load_stats, save_audio, save_mel  # noqa: E402

__all__ += ["identify_mel", "load_audio", "load_mel", "load_stats", "save_audio", "save_mel"]

"""melinvert: turn mel spectrograms of any convention back into audio.

The public face::

    import melinvert
    cfg = melinvert.get_preset("hifigan-22k-80")
    mel = melinvert.mel_spectrogram(audio, cfg)          # (..., n_mels, frames)
    audio2 = melinvert.invert(mel, cfg)                  # (..., samples)
    melinvert.metrics.score(audio, audio2, cfg.sample_rate, config=cfg)

The names below are imported on first use (PEP 562), so that ``import melinvert`` (and the
command line's ``--version`` and ``--help``) does not pay for torch.
"""

from __future__ import annotations

from . import _startup

if _startup.is_cli():  # Ctrl-C while 'melinvert' loads: one line and 130 (melinvert.commands releases)
    _startup.guard()

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the submodule defining it.
_EXPORTS = {
    "PRESETS": "config",
    "Compression": "config",
    "MelConfig": "config",
    "Preset": "config",
    "get_preset": "config",
    "list_presets": "config",
    "istft": "dsp",
    "mel_basis": "dsp",
    "mel_spectrogram": "dsp",
    "stft": "dsp",
    "MelinvertError": "errors",
    "identify_mel": "identify",
    "load_audio": "io",
    "load_mel": "io",
    "load_stats": "io",
    "save_audio": "io",
    "save_mel": "io",
    "invert": "pipeline",
    "invert_blocks": "pipeline",
    "list_methods": "pipeline",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)  # a submodule: melinvert.metrics, ...
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:
    from . import metrics
    from .config import PRESETS, Compression, MelConfig, Preset, get_preset, list_presets
    from .dsp import istft, mel_basis, mel_spectrogram, stft
    from .errors import MelinvertError
    from .identify import identify_mel
    from .io import load_audio, load_mel, load_stats, save_audio, save_mel
    from .pipeline import invert, invert_blocks, list_methods

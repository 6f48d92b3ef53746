"""What each model learns from a batch of audio crops: inputs, targets and the loss.

A task turns audio ``(B, samples)`` (with each crop's source Nyquist frequency, for the band
mask) into a scalar loss for its model; the mels are computed here, on the fly, exactly as
:func:`melinvert.invert` will see them (compressed with the config, then decoded, so the
floors the compression applies are part of the input).

- ``refiner``: masked L1 between natural-log magnitudes (both clamped at 80 dB below each
  item's peak, so inaudible bins do not count) plus the spectral convergence of the linear
  magnitudes.
- ``degli``: the true spectrum plus complex Gaussian noise (SNR uniform in [-6, 12] dB, as
  in Masuyama et al. 2021) goes through one iteration; L1 between the network's output and
  the true residual ``Z - X``, relative to the mean amplitude.
- ``cnn_vocoder``: L1 between log-STFT magnitudes of the prediction and the target at three
  resolutions (``n_fft / 2``, ``n_fft``, ``2 n_fft``, hop a quarter of each) plus their
  spectral convergence.

Every loss leaves out the bins at or above 95% of the crop's source Nyquist frequency
(:func:`melinvert.neural.data.band_mask`): a 16 kHz recording says nothing about 8-11 kHz.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import MelConfig
from ..dsp import FrameOps
from ..errors import check
from ..operator import mel_operator
from ..phase import project_magnitude
from .data import band_mask

#: Items' magnitudes are clamped this far below their peak before logarithms in the losses.
LOSS_RANGE_DB = 80.0


def _freqs(n_fft: int, sample_rate: int, device: torch.device) -> torch.Tensor:
    return torch.fft.rfftfreq(n_fft, 1.0 / sample_rate).to(device=device, dtype=torch.float32)


def model_mel(audio: torch.Tensor, config: MelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(linear mel (B, n_mels, T), complex STFT (B, T', F))`` of audio ``(B, samples)``.

    The mel went through the config's compression and back (what ``invert`` decodes); the
    STFT has all frames (``T' = T + 1`` with ``drop_last_frame``).
    """
    ops = FrameOps(config, audio.shape[-1], dtype=audio.dtype, device=audio.device)
    spec = ops.analysis(audio)  # (B, T', F)
    op = mel_operator(config, dtype=audio.dtype, device=audio.device)
    mel = op(op.spec_power(op.mel_frames_of(spec, dim=1)).transpose(1, 2))
    comp = config.compression
    return comp.decode(comp.encode(mel)).clamp_min(0.0), spec


def _log_floor(x: torch.Tensor) -> torch.Tensor:
    """Per item: ``peak * 10 ** (-LOSS_RANGE_DB / 20)``, shaped to broadcast over ``x``."""
    peak = x.flatten(1).amax(dim=1).clamp_min(1e-12)
    return (peak * 10.0 ** (-LOSS_RANGE_DB / 20.0)).reshape(-1, *([1] * (x.dim() - 1)))


def log_l1_sc(
    pred_log: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked (log-magnitude L1, spectral convergence) of ``exp(pred_log)`` against ``target``.

    ``pred_log``, ``target`` ``(B, F, T)``; ``mask`` ``(B, F, 1)``.
    """
    floor = _log_floor(target)
    lt = torch.log(torch.maximum(target, floor))
    lp = torch.maximum(pred_log, torch.log(floor))
    w = mask.expand_as(target)
    l1 = ((lp - lt).abs() * w).sum() / w.sum().clamp_min(1.0)
    pred = torch.exp(pred_log)
    sc = torch.linalg.vector_norm((pred - target) * w) / torch.linalg.vector_norm(target * w).clamp_min(1e-8)
    return l1, sc


# ---------------------------------------------------------------------- the tasks


@dataclasses.dataclass(frozen=True)
class Task:
    """Training defaults and the loss of one model kind.

    Attributes
    ----------
    kind : str
    defaults : dict
        ``batch_size``, ``crop_frames``, ``lr``, ``steps``, ``val_every``, ``gain_db``,
        ``val_method``, ``val_n_iter``.
    loss : callable
        ``loss(model, audio, nyquist, config, generator, mel=None) -> (loss, parts)``; ``mel``
        (linear, ``(B, n_mels, T)``) replaces the mel computed from the audio where the model
        reads one.
    fit : callable
        ``fit(model, audio, config, mel=None)``: set input statistics before training (from
        ``mel`` when given, else from the audio's).
    reads_mel : bool
        Whether the model's input is the mel (so that augmented or given mels can train it).
    """

    kind: str
    defaults: dict[str, Any]
    loss: Callable[..., tuple[torch.Tensor, dict[str, float]]]
    fit: Callable[..., None]
    reads_mel: bool = True


def _fit_mel_input(
    model: nn.Module, audio: torch.Tensor, config: MelConfig, mel: torch.Tensor | None = None
) -> None:
    inp = getattr(model, "inp", None)
    if inp is not None:
        inp.fit(model_mel(audio, config)[0] if mel is None else mel)


def compressed_mel(audio: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """The compressed mel ``(B, n_mels, T)`` of audio ``(B, samples)`` (what a mel file holds;
    ``config.compression.decode`` of it is :func:`model_mel`'s mel)."""
    mel, _ = model_mel(audio, config)
    return config.compression.encode(mel)


def decoded_mel(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """A compressed mel decoded to the linear mel the models read (as :func:`model_mel`)."""
    return config.compression.decode(mel).clamp_min(0.0)


def refiner_loss(
    model: nn.Module,
    audio: torch.Tensor,
    nyquist: torch.Tensor,
    config: MelConfig,
    gen: torch.Generator,
    mel: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    own, spec = model_mel(audio, config)
    mel = own if mel is None else _same_shape(mel, own)
    spec = mel_operator(config, dtype=audio.dtype, device=audio.device).mel_frames_of(spec, dim=1)
    target = spec.abs().transpose(1, 2)  # (B, F, T)
    pred = model(mel)
    mask = band_mask(nyquist, _freqs(config.n_fft, config.sample_rate, audio.device))[..., None]
    l1, sc = log_l1_sc(pred, target, mask)
    return l1 + sc, {"log_l1": float(l1.detach()), "sc": float(sc.detach())}


def degli_loss(
    model: nn.Module,
    audio: torch.Tensor,
    nyquist: torch.Tensor,
    config: MelConfig,
    gen: torch.Generator,
    mel: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    check(mel is None, "degli learns from STFTs, not mels: it takes no mel")
    ops = FrameOps(config, audio.shape[-1], dtype=audio.dtype, device=audio.device)
    x = ops.analysis(audio)  # (B, T, F)
    amp = x.abs()
    b = x.shape[0]
    snr_db = torch.rand(b, generator=gen) * 18.0 - 6.0
    power = amp.square().mean(dim=(1, 2)).cpu()
    sigma = torch.sqrt(power / 10.0 ** (snr_db / 10.0) / 2.0).to(x.device)
    noise = (
        torch.complex(torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen)).to(x.device)
        * sigma[:, None, None]
    )
    xn = x + noise
    y = project_magnitude(xn, amp)
    z = ops.analysis(ops.synthesis(y))
    r = model(xn, y, z, amp)
    target = z - x
    mask = band_mask(nyquist, _freqs(config.n_fft, config.sample_rate, audio.device))[:, None, :]
    err = (r - target).abs() * mask
    scale = (amp * mask).sum() / mask.expand_as(amp).sum().clamp_min(1.0)
    l1 = err.sum() / mask.expand_as(amp).sum().clamp_min(1.0) / scale.clamp_min(1e-8)
    return l1, {"l1": float(l1.detach())}


def _same_shape(mel: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    check(
        mel.shape == own.shape,
        f"the mel given {tuple(mel.shape)} does not fit the audio's mel {tuple(own.shape)}",
    )
    return mel.to(dtype=own.dtype, device=own.device)


def _stft_mag(x: torch.Tensor, n_fft: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    s = torch.stft(x, n_fft, hop_length=n_fft // 4, window=win, center=True, return_complex=True)
    return s.abs()  # (B, F, T)


def vocoder_loss(
    model: nn.Module,
    audio: torch.Tensor,
    nyquist: torch.Tensor,
    config: MelConfig,
    gen: torch.Generator,
    mel: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    if mel is None:
        mel, _ = model_mel(audio, config)
    else:
        check(
            mel.shape[-1] == config.n_frames(audio.shape[-1]), "the mel given does not fit the audio's frames"
        )
    pred = model(mel)
    n = audio.shape[-1]
    pred = pred[:, :n] if pred.shape[-1] >= n else torch.nn.functional.pad(pred, (0, n - pred.shape[-1]))
    total = audio.new_zeros(())
    parts = {}
    for k, n_fft in enumerate(resolutions(config)):
        t = _stft_mag(audio, n_fft)
        p = _stft_mag(pred, n_fft)
        mask = band_mask(nyquist, _freqs(n_fft, config.sample_rate, audio.device))[..., None]
        l1, sc = log_l1_sc(torch.log(p.clamp_min(1e-7)), t, mask)
        total = total + l1 + sc
        parts[f"l1_{k}"] = float(l1.detach())
    return total / 3.0, parts


def resolutions(config: MelConfig) -> list[int]:
    """FFT sizes of the vocoder's multi-resolution loss: half, once and twice the config's."""
    base = config.n_fft
    return [max(64, base // 2), base, 2 * base]


TASKS: dict[str, Task] = {
    "refiner": Task(
        "refiner",
        {
            "batch_size": 16,
            "crop_frames": 96,
            "lr": 1e-3,
            "steps": 4000,
            "val_every": 250,
            "gain_db": 12.0,
            "val_method": "refiner+pghi+fgla",
            "val_n_iter": 32,
        },
        refiner_loss,
        _fit_mel_input,
    ),
    "degli": Task(
        "degli",
        {
            "batch_size": 4,
            "crop_frames": 32,
            "lr": 1e-3,
            "steps": 2000,
            "val_every": 250,
            "gain_db": 12.0,
            "val_method": "nnls+pghi+degli",
            "val_n_iter": 16,
        },
        degli_loss,
        _fit_mel_input,
        reads_mel=False,
    ),
    "cnn_vocoder": Task(
        "cnn_vocoder",
        {
            "batch_size": 8,
            "crop_frames": 24,
            "lr": 1e-3,
            "steps": 3000,
            "val_every": 250,
            "gain_db": 12.0,
            "val_method": "cnn_vocoder",
            "val_n_iter": 0,
        },
        vocoder_loss,
        _fit_mel_input,
    ),
}


def step_generator(seed: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """The random sources of one training step, a pure function of ``(seed, step)``.

    Crops and noise of step ``k`` never depend on how the run got there, so a resumed run
    draws exactly what an uninterrupted one would.
    """
    rng = np.random.default_rng([seed, step])
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, step, 1]).integers(2**62)))
    return rng, gen


def lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over ``min(200, steps // 10)`` steps, then cosine decay to ``lr / 10``."""
    warm = max(1, min(200, steps // 10))
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, steps - warm))
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))

"""What each model learns from a batch of audio crops: inputs, targets and the loss.

A task turns audio ``(B, samples)`` (with each crop's source Nyquist frequency, for the band
mask) into a scalar loss for its model; the mels are computed here, on the fly, exactly as
:func:`melinvert.invert` will see them (compressed with the config, then decoded, so the
floors the compression applies are part of the input).

- ``refiner``: the mel goes through :func:`melinvert.predicted.sharpen_mel` first, as the
  ``learned`` pipeline's ``sharpen`` stage hands it over (a recording's mel passes unchanged,
  an over-smoothed one is sharpened); masked L1 between natural-log magnitudes (both clamped
  at 80 dB below each item's peak, so inaudible bins do not count) plus the spectral
  convergence of the linear magnitudes.
- ``degli``: from a state of mel-re-fitted fast Griffin-Lim (NNLS + PGHI from the crop's mel,
  then a random number of plain iterations), one iteration with the network learns to land
  where ``DEGLI_AHEAD`` plain iterations land (complex L1, relative to the mean amplitude).
  Masuyama et al. (2021) trained on the true spectrum plus complex noise at -6..12 dB SNR,
  states far from those a PGHI start gives, and a network trained so made our iterations worse
  than plain Griffin-Lim; a loss against the true spectrum cannot work from PGHI's start at all
  (its phase offsets are arbitrary).
- ``cnn_vocoder``: the waveform of its training-free prior (``default``'s steps, run on the
  crop's mel) is corrected; loss: L1 between the natural-log mels (the config's filterbank,
  80 dB range) of the prediction and the target, plus the spectral convergence of the linear
  STFT magnitudes at three resolutions (``n_fft / 2``, ``n_fft``, ``2 n_fft``, hop a quarter of
  each). (An L1 between log-STFT magnitudes, the seed's loss, taught the correction to fill the
  quiet bins with noise: its own loss -10%, PESQ-WB -0.04, log-mel L1 x3.)

Every loss leaves out the bins at or above 95% of the crop's source Nyquist frequency
(:func:`melinvert.neural.data.band_mask`): a 16 kHz recording says nothing about 8-11 kHz
(the vocoder's mel term excepted: a mel band is wider than that edge, and the config's mels
are what the vocoder is judged on).
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
from .models import degli_update

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
    return l1, spectral_convergence(torch.exp(pred_log), target, w)


def spectral_convergence(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``||(pred - target) w|| / ||target w||`` over the whole batch (magnitudes, any shape)."""
    return torch.linalg.vector_norm((pred - target) * weight) / torch.linalg.vector_norm(
        target * weight
    ).clamp_min(1e-8)


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
    from ..predicted import sharpen_mel

    own, spec = model_mel(audio, config)
    mel = own if mel is None else _same_shape(mel, own)
    spec = mel_operator(config, dtype=audio.dtype, device=audio.device).mel_frames_of(spec, dim=1)
    target = spec.abs().transpose(1, 2)  # (B, F, T)
    pred = model(sharpen_mel(mel, config))  # what `learned` hands it; a recording's mel as it is
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
    """Learn to jump ahead: from a state of mel-re-fitted fast Griffin-Lim (NNLS + PGHI from the
    crop's mel, then ``k`` plain ``mfgla`` iterations, ``k`` uniform in ``[0, DEGLI_ROLLOUT)``),
    one iteration with the network should land where ``DEGLI_AHEAD`` plain iterations from the
    same state land. The target lies on the same trajectory, so its phase is comparable bin by
    bin (PGHI's phase offsets against the true spectrum are arbitrary); loss: complex L1 to it,
    relative to the mean amplitude. The states come from plain iterations, not the network's own
    (a network trained on its own rollouts fed back its errors and diverged after 500 steps):
    ``j`` iterations that each jump ``DEGLI_AHEAD`` ahead meet the states of ``j * DEGLI_AHEAD``
    plain ones, which ``DEGLI_ROLLOUT`` covers."""
    from ..magnitude import nnls
    from ..phase import MelRefit, _consistent, init_pghi, momentum

    check(mel is None, "degli learns from STFTs, not mels: it takes no mel")
    own, _ = model_mel(audio, config)
    op = mel_operator(config, dtype=audio.dtype, device=audio.device)
    full = op.extend_frames(own)  # (B, M, T') as the phase stage sees it
    ops = FrameOps(config, audio.shape[-1], dtype=audio.dtype, device=audio.device)
    k = int(torch.randint(0, DEGLI_ROLLOUT, (1,), generator=gen))
    with torch.no_grad():
        mag = nnls(full, config, n_iter=20).transpose(-1, -2).contiguous()  # (B, T', F)
        refit = MelRefit(full.transpose(-1, -2).contiguous(), config)
        t = torch.polar(mag, init_pghi(mag, config))
        c_prev = t
        for i in range(k + DEGLI_AHEAD):
            c, mag, _ = _consistent(ops, project_magnitude(t, mag), mag, refit, None, i)
            if i == k:
                state = (t, c, c_prev, mag)  # the state the network starts from
            t, c_prev = momentum(c, c_prev, 1.0 + DEGLI_ALPHA), c
        x, c, c_prev, mag = state  # and t: DEGLI_AHEAD plain iterations on
    nxt = degli_update(model, x, c, c_prev, mag, DEGLI_ALPHA)
    mask = band_mask(nyquist, _freqs(config.n_fft, config.sample_rate, audio.device))[:, None, :]
    w = mask.expand_as(mag)
    scale = (mag * w).sum() / w.sum().clamp_min(1.0)
    l1 = ((nxt - t).abs() * w).sum() / w.sum().clamp_min(1.0) / scale.clamp_min(1e-8)
    return l1, {"l1": float(l1.detach()), "k": float(k)}


#: Plain iterations a training state of ``degli`` may have run (16 jumps of ``DEGLI_AHEAD``).
DEGLI_ROLLOUT = 16
#: Momentum of ``degli``'s fast Griffin-Lim step in training (the stage's default).
DEGLI_ALPHA = 0.99
#: Plain ``mfgla`` iterations one ``degli`` iteration learns to stand for.
DEGLI_AHEAD = 4


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


def prior_audio(mel: torch.Tensor, config: MelConfig, method: str, length: int) -> torch.Tensor:
    """The waveform ``(B, length)`` the training-free ``method`` makes of linear mels
    ``(B, n_mels, T)`` (what the CNN vocoder corrects), without gradients."""
    from .. import registry
    from ..pipeline import invert_block, make_context

    with torch.no_grad():
        return invert_block(registry.parse(method), make_context(mel, config, length=length))


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
    n = audio.shape[-1]
    pred = model(mel, prior_audio(mel, config, model.prior, n))
    ops = FrameOps(config, n, dtype=audio.dtype, device=audio.device)
    op = mel_operator(config, dtype=audio.dtype, device=audio.device)
    mel_t, mel_p = (op(op.spec_power(ops.analysis(x)).transpose(1, 2)) for x in (audio, pred))
    floor = _log_floor(mel_t)
    mel_l1 = (torch.log(torch.maximum(mel_p, floor)) - torch.log(torch.maximum(mel_t, floor))).abs().mean()
    total = mel_l1
    parts = {"mel_l1": float(mel_l1.detach())}
    for k, n_fft in enumerate(resolutions(config)):
        t = _stft_mag(audio, n_fft)
        p = _stft_mag(pred, n_fft)
        w = band_mask(nyquist, _freqs(n_fft, config.sample_rate, audio.device))[..., None].expand_as(t)
        sc = spectral_convergence(p, t, w)
        total = total + sc / 3.0
        parts[f"sc_{k}"] = float(sc.detach())
    return total, parts


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
            "crop_frames": 64,
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
            "batch_size": 6,
            "crop_frames": 48,
            "lr": 5e-4,
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

"""Stage 1 of the cascade: linear mel -> linear STFT magnitude.

Each method has the calling shape ``method(mel, config, *, n_iter=None) -> magnitude``:

``mel`` : torch.Tensor [shape=(..., n_mels, frames), non-negative]
    The LINEAR mel (the config's compression already undone, see :func:`decode_mel`), in the
    config's power (magnitude mel for ``power=1``, power mel for ``power=2``).
returns : torch.Tensor [shape=(..., n_freqs, frames), non-negative]
    The STFT magnitude ``|X|`` (always magnitude, whatever the config's power).

Methods: ``transpose`` (normalised transpose of the filterbank), ``pinv`` (pseudo-inverse
clipped at zero), ``nnls`` (non-negative least squares, solved by accelerated projected
gradient from the clipped pseudo-inverse) and ``gd`` (gradient descent on the log-magnitude
against the log-mel).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from .config import MelConfig
from .dsp import mel_basis, mel_basis_np

MagnitudeMethod = Callable[..., torch.Tensor]


def decode_mel(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Undo the config's compression: ``(..., n_mels, frames)`` -> linear mel (non-negative)."""
    return config.compression.decode(mel).clamp_min(0.0)


def _to_magnitude(power_est: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """``|X| ** power`` -> ``|X|``."""
    if config.power == 1:
        return power_est
    return power_est.clamp_min(0.0).pow(1.0 / config.power)


#: Singular values of the filterbank below this fraction of the largest are treated as zero by
#: the pseudo-inverse. Filterbanks with more mels than their FFT resolves (Whisper's 128 mels or
#: torchaudio's defaults at n_fft 400) have singular values of ~1e-17 relative: numerically zero,
#: but whether LAPACK puts them just above or below a machine-epsilon cutoff differs between
#: builds, and one kept gives a pseudo-inverse with entries of ~1e16. Well-posed filterbanks
#: have none below 0.08.
PINV_RCOND = 1e-4


@functools.lru_cache(maxsize=32)
def _pinv_np(key: tuple) -> np.ndarray:
    from .dsp import _mel_basis_np

    fb = np.array(_mel_basis_np(*key))
    u, s, vt = np.linalg.svd(fb, full_matrices=False)
    keep = s > PINV_RCOND * s.max()
    out = (vt[keep].T / s[keep]) @ u[:, keep].T
    out.flags.writeable = False
    return out


def _key(config: MelConfig) -> tuple:
    return (
        config.sample_rate,
        config.n_fft,
        config.n_mels,
        float(config.fmin),
        float(config.fmax_hz),
        config.mel_scale,
        config.mel_norm,
    )


def pinv_matrix(config: MelConfig, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of the filterbank, ``(n_freqs, n_mels)`` (cached in numpy)."""
    return torch.as_tensor(np.array(_pinv_np(_key(config))), dtype=dtype, device=device)


def transpose(mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None) -> torch.Tensor:
    """Normalised transpose: ``fb.T @ mel / (fb.T @ fb @ 1)``; a flat spectrum maps back flat.

    Bins outside ``[fmin, fmax]`` (no filter covers them) come back as zero.
    """
    fb = mel_basis(config, dtype=mel.dtype, device=mel.device)
    norm = fb.T @ fb.sum(dim=1, keepdim=True)  # (n_freqs, 1)
    est = (fb.T @ mel) / norm.clamp_min(torch.finfo(mel.dtype).tiny)
    est = torch.where(norm > 0, est, torch.zeros_like(est))
    return _to_magnitude(est, config)


def pinv(mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None) -> torch.Tensor:
    """Pseudo-inverse of the filterbank applied to the mel, clipped at zero."""
    pi = pinv_matrix(config, dtype=mel.dtype, device=mel.device)
    return _to_magnitude((pi @ mel).clamp_min(0.0), config)


def nnls_solve(mel: torch.Tensor, config: MelConfig, *, n_iter: int = 36) -> torch.Tensor:
    """Solve ``min ||fb @ P - mel||^2`` over ``P >= 0`` frame by frame (all frames at once).

    FISTA (accelerated projected gradient, step ``1 / ||fb||_2^2``) with a warm start from the
    clipped pseudo-inverse, for exactly ``n_iter`` iterations (no data-dependent stop, so a
    batch gives the same result as its items alone), on the bins some filter covers (the
    others stay zero).

    Returns
    -------
    torch.Tensor [shape=(..., n_freqs, frames)]
        ``P``, an estimate of ``|X| ** power`` (not yet the magnitude).
    """
    fb_full = mel_basis(config, dtype=mel.dtype, device=mel.device)
    active = np.flatnonzero(mel_basis_np(config).sum(axis=0) > 0)
    lo, hi = int(active[0]), int(active[-1]) + 1
    fb = fb_full[:, lo:hi].contiguous()
    fbt = fb.T.contiguous()
    step = 1.0 / float(np.linalg.norm(mel_basis_np(config)[:, lo:hi], 2) ** 2)
    pi = pinv_matrix(config, dtype=mel.dtype, device=mel.device)[lo:hi]
    lead = mel.shape[:-2]
    m = mel.reshape(-1, *mel.shape[-2:])
    p = (pi @ m).clamp_min_(0.0)
    y = p
    t = 1.0
    for _ in range(n_iter):
        r = fb @ y - m
        p_next = torch.sub(y, fbt @ r, alpha=step).clamp_min_(0.0)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        y = torch.lerp(p, p_next, 1.0 + (t - 1.0) / t_next)  # p_next + beta (p_next - p)
        p, t = p_next, t_next
    out = mel.new_zeros(*lead, config.n_freqs, mel.shape[-1])
    out[..., lo:hi, :] = p.reshape(*lead, hi - lo, mel.shape[-1])
    return out


def nnls(mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None) -> torch.Tensor:
    """Non-negative least squares, actually solved (see :func:`nnls_solve`)."""
    return _to_magnitude(nnls_solve(mel, config, n_iter=36 if n_iter is None else n_iter), config)


def gd(mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None, lr: float = 0.05) -> torch.Tensor:
    """Gradient descent (Adam) on the log-magnitude against the log-mel.

    Minimises ``mean((log(fb @ |X|^p + e) - log(mel + e))^2)`` over ``log |X|``, starting
    from the NNLS estimate; ``e`` is 1e-5 of the mel's peak. The approach of nnAudio issue #57,
    kept as a comparison point.
    """
    n_iter = 100 if n_iter is None else n_iter
    fb = mel_basis(config, dtype=mel.dtype, device=mel.device)
    start = nnls(mel, config, n_iter=20)
    floor = 1e-5 * mel.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    target = torch.log(mel + floor)
    theta = torch.log(start + 1e-3 * floor.sqrt()).detach().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    with torch.enable_grad():
        for _ in range(n_iter):
            opt.zero_grad(set_to_none=True)
            est = fb @ torch.exp(theta * config.power)
            # sum of per-item means: each item's gradient is what it would be alone
            loss = ((torch.log(est + floor) - target) ** 2).mean(dim=(-2, -1)).sum()
            loss.backward()
            opt.step()
    return torch.exp(theta.detach())


MAGNITUDE_METHODS: dict[str, tuple[MagnitudeMethod, str]] = {
    "transpose": (transpose, "normalised transpose of the filterbank (fast, smooth, biased)"),
    "pinv": (pinv, "pseudo-inverse clipped at zero (what librosa's unsolved NNLS returns)"),
    "nnls": (nnls, "non-negative least squares solved by FISTA from the clipped pseudo-inverse"),
    "gd": (gd, "gradient descent on the log-magnitude against the log-mel (nnAudio #57)"),
}

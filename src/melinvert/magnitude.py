"""Stage 1 of the cascade: linear mel -> linear STFT magnitude.

Each method is a plain function ``method(mel, config, *, n_iter=None) -> magnitude``:

``mel`` : torch.Tensor [shape=(..., n_mels, frames), non-negative]
    The LINEAR mel (the config's compression already undone, see :func:`decode_mel`), in the
    config's power (magnitude mel for ``power=1``, power mel for ``power=2``).
returns : torch.Tensor [shape=(..., n_freqs, frames), non-negative]
    The STFT magnitude ``|X|`` (always magnitude, whatever the config's power).

Methods: ``transpose`` (normalised transpose of the filterbank), ``pinv`` (pseudo-inverse
clipped at zero), ``nnls`` (non-negative least squares, solved by accelerated projected
gradient from the clipped pseudo-inverse) and ``gd`` (gradient descent on the log-magnitude
against the log-mel). Each is registered as a ``magnitude`` stage
(:mod:`melinvert.registry`) at the bottom of this module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import registry
from .config import MelConfig
from .operator import PINV_RCOND, mel_operator
from .stage import Context, State

#: ``callback(iteration, None, loss (B,)) -> stop?`` (stage 1 has no waveform yet)
StageCallback = Callable[[int, torch.Tensor | None, torch.Tensor], bool]

__all__ = ["PINV_RCOND", "decode_mel", "gd", "nnls", "nnls_solve", "pinv", "pinv_matrix", "transpose"]


def decode_mel(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Undo the config's compression: ``(..., n_mels, frames)`` -> linear mel (non-negative)."""
    return config.compression.decode(mel).clamp_min(0.0)


def pinv_matrix(config: MelConfig, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of the filterbank, ``(n_freqs, n_mels)`` (cached)."""
    return mel_operator(config, dtype=dtype, device=device).pinv


def transpose(
    mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None, callback: StageCallback | None = None
) -> torch.Tensor:
    """Normalised transpose: ``fb.T @ mel / (fb.T @ fb @ 1)``; a flat spectrum maps back flat.

    Bins outside ``[fmin, fmax]`` (no filter covers them) come back as zero.
    """
    op = mel_operator(config, dtype=mel.dtype, device=mel.device)
    fb = op.fb
    norm = fb.T @ fb.sum(dim=1, keepdim=True)  # (n_freqs, 1)
    est = (fb.T @ mel) / norm.clamp_min(torch.finfo(mel.dtype).tiny)
    est = torch.where(norm > 0, est, torch.zeros_like(est))
    return op.to_magnitude(est)


def pinv(
    mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None, callback: StageCallback | None = None
) -> torch.Tensor:
    """Pseudo-inverse of the filterbank applied to the mel, clipped at zero."""
    op = mel_operator(config, dtype=mel.dtype, device=mel.device)
    return op.to_magnitude((op.pinv @ mel).clamp_min(0.0))


def nnls_solve(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    n_iter: int = 36,
    callback: StageCallback | None = None,
) -> torch.Tensor:
    """Solve ``min ||fb @ P - mel||^2`` over ``P >= 0`` frame by frame (all frames at once).

    FISTA (accelerated projected gradient, step ``1 / ||fb||_2^2``) with a warm start from the
    clipped pseudo-inverse, for exactly ``n_iter`` iterations (no data-dependent stop, so a
    batch gives the same result as its items alone), on the bins some filter covers (the
    others stay zero). ``callback(i, None, residual)`` after each iteration, with the relative
    residual ``||fb @ y - mel|| / ||mel||`` per item of the extrapolated point; True stops.

    Returns
    -------
    torch.Tensor [shape=(..., n_freqs, frames)]
        ``P``, an estimate of ``|X| ** power`` (not yet the magnitude).
    """
    op = mel_operator(config, dtype=mel.dtype, device=mel.device)
    lo, hi = op.lo, op.hi
    step = op.step
    lead = mel.shape[:-2]
    m = mel.reshape(-1, *mel.shape[-2:])
    p = (op.pinv[lo:hi] @ m).clamp_min_(0.0)
    y = p
    t = 1.0
    m_norm = (
        torch.linalg.vector_norm(m, dim=(-2, -1)).clamp_min(torch.finfo(m.dtype).tiny) if callback else None
    )
    for i in range(n_iter):
        r = op.cover_forward(y) - m
        p_next = torch.sub(y, op.cover_adjoint(r), alpha=step).clamp_min_(0.0)
        t_next = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
        y = torch.lerp(p, p_next, 1.0 + (t - 1.0) / t_next)  # p_next + beta (p_next - p)
        p, t = p_next, t_next
        if callback is not None and callback(i, None, torch.linalg.vector_norm(r, dim=(-2, -1)) / m_norm):
            break
    out = mel.new_zeros(*lead, config.n_freqs, mel.shape[-1])
    out[..., lo:hi, :] = p.reshape(*lead, hi - lo, mel.shape[-1])
    return out


def nnls(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    n_iter: int | None = None,
    callback: StageCallback | None = None,
) -> torch.Tensor:
    """Non-negative least squares, actually solved (see :func:`nnls_solve`)."""
    power_est = nnls_solve(mel, config, n_iter=36 if n_iter is None else n_iter, callback=callback)
    return mel_operator(config, dtype=mel.dtype, device=mel.device).to_magnitude(power_est)


def gd(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    n_iter: int | None = None,
    lr: float = 0.05,
    callback: StageCallback | None = None,
) -> torch.Tensor:
    """Gradient descent (Adam) on the log-magnitude against the log-mel.

    Minimises ``mean((log(fb @ |X|^p + e) - log(mel + e))^2)`` over ``log |X|``, starting
    from the NNLS estimate; ``e`` is 1e-5 of the mel's peak. The approach of nnAudio issue #57,
    kept as a comparison point. ``callback(i, None, loss)`` after each step; True stops.
    """
    n_iter = 100 if n_iter is None else n_iter
    op = mel_operator(config, dtype=mel.dtype, device=mel.device)
    start = nnls(mel, config, n_iter=20)
    floor = 1e-5 * mel.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    target = torch.log(mel + floor)
    theta = torch.log(start + 1e-3 * floor.sqrt()).detach().requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    with torch.enable_grad():
        for i in range(n_iter):
            opt.zero_grad(set_to_none=True)
            est = op(torch.exp(theta * config.power))
            per_item = op.log_error(est, target, floor).square().mean(dim=(-2, -1))
            # sum of per-item means: each item's gradient is what it would be alone
            per_item.sum().backward()
            opt.step()
            if callback is not None and callback(i, None, per_item.detach()):
                break
    return torch.exp(theta.detach())


# ---------------------------------------------------------------------- stages


def _stage(fn: Callable[..., torch.Tensor]) -> Callable[..., State]:
    """A stage from a plain method: the block's target mel -> ``State.mag``."""

    def run(state: State, ctx: Context, *, iters: int | None = None, **params: object) -> State:
        kw = dict(params, callback=ctx.progress)
        if iters is not None:
            kw["n_iter"] = iters
        return state.replace(mag=ctx.stage_magnitude(fn(state.mel, ctx.config, **kw)))

    run.__name__ = run.__qualname__ = f"{fn.__name__}_stage"
    run.__doc__ = f"Stage-1 wrapper of :func:`{fn.__name__}`."
    return run


registry.register(
    "transpose",
    "magnitude",
    _stage(transpose),
    description="normalised transpose of the filterbank (fast, smooth, biased)",
)
registry.register(
    "pinv",
    "magnitude",
    _stage(pinv),
    description="pseudo-inverse clipped at zero (what librosa's unsolved NNLS returns)",
)
registry.register(
    "nnls",
    "magnitude",
    _stage(nnls),
    params={"iters": 36},
    description="non-negative least squares solved by FISTA from the clipped pseudo-inverse",
)
registry.register(
    "gd",
    "magnitude",
    _stage(gd),
    params={"iters": 100, "lr": 0.05},
    description="gradient descent on the log-magnitude against the log-mel (nnAudio #57)",
)

"""Mels that no waveform made: a TTS model's (over-smoothed) or an enhancer's (masked) output.

Fitting such a mel exactly rebuilds its blur (issue 12). What this module adds, measured in
``benchmarks/predicted_research.py`` (table and findings in ``benchmarks/predicted_research.md``):

:func:`sharpen_mel`
    Adaptive unsharp masking of the log-mel along time, then along mel bins. A recording's
    log-mel has a typical *roughness* (:func:`mel_roughness`: energy of second differences
    over energy of first differences, over the cells within 8 nepers of the peak): 0.93-1.55
    along time and 1.49-2.18 along mel bins on 22 clips of real speech (hifigan-22k-80), 0.33-0.52
    and 0.81-1.23 after a Gaussian blur of 1 frame and 0.7 bin. An item below a target is
    sharpened just enough to reach it (bisection on the unsharp amount); an item at or above
    it is returned unchanged, so the mel of a recording passes through bit for bit.
:func:`ripple_depth`
    The last step of :func:`sharpen_mel`: the harmonic ripple of the mel bins below 1 kHz (they
    resolve a voice's harmonics) scaled to the depth a recording of that voice has, from a
    prior measured on real speech (:data:`RIPPLE_PRIOR`); the unsharp mask alone leaves it too
    deep on some voices and too shallow on others, and DNSMOS hears it.
:func:`sharpened_nnls`
    Stage 1 with the stage-1 calling shape: :func:`sharpen_mel`, then
    :func:`melinvert.magnitude.nnls`. The recommended new ``default``'s stage 1; the stage-2
    re-fit (:class:`melinvert.phase.MelRefit`) must then follow the sharpened mel, which
    :func:`sharpen_mel` returns (see :func:`invert_linear`).
:class:`TolerantRefit`
    A :class:`~melinvert.phase.MelRefit` that re-fits only the part of the log-mel error above
    a tolerance (and/or scaled by an exponent < 1). Measured: helps log-noisy mels, costs the
    mels of recordings PESQ; not in the recommended recipe.
:func:`mel_consistency`
    How far a mel is from the mel of a waveform: the re-fit residual after a few iterations
    (noise and masking raise it; blur does *not*: a blurred mel is easier to fit than a
    recording's) and the roughness along both axes (blur lowers it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from . import registry
from .config import MelConfig, resolve_config
from .dsp import FrameOps, as_tensor, mel_band_edges
from .errors import check, check_positive
from .magnitude import decode_mel, nnls
from .operator import mel_operator
from .phase import MelRefit, agla, init_pghi, per_item_params
from .stage import Context, State

#: Roughness targets of :func:`sharpen_mel` (time, mel bins): below the lowest a recording of
#: real speech measured (0.93, 1.49) on 22 clips, above what a blur of a frame and 0.7 bin leaves.
SHARPEN_TARGETS = (0.9, 1.45)

#: Largest unsharp amount :func:`sharpen_mel` uses along an axis. A Gaussian blur of a frame
#: along time cannot be brought back to :data:`SHARPEN_TARGETS`'s 0.9 by the 3-tap unsharp mask
#: without over-sharpening (on blurs of 1 frame / 0.7 bin the bisection ran into the old cap of 6
#: on every clip, where the log-mel is further from the original's than at 4): with the amount
#: held at 4, blurs of 1-1.3 frames gain PESQ-WB +0.03 to +0.27 and DNSMOS +0.02 to +0.19 on the
#: dev and corpus clips (DistillMOS +0.03 to +0.28 on the dev clips, but -0.06 on 8 corpus clips
#: at a 1.3-frame blur); milder blurs never reach the cap (``benchmarks/predicted_research.md``,
#: 2026-12-05). Along mel bins the amounts found are 0.5-2.6, under the cap.
SHARPEN_MAX_AMOUNT = 4.0

#: Cells of the log-mel within this many nepers of the item's peak count for the roughness.
ACTIVE_RANGE = 8.0

#: Depth prior of the harmonic ripple in the mel bins below :data:`RIPPLE_BAND_HZ`:
#: ``depth_out = c * depth_in ** b`` (``(c, b)``, depths in nepers of the magnitude mel, see
#: :func:`ripple_depth`). Fitted (log-log least squares) on 40 clips of the training corpus (37
#: LibriSpeech, 3 LJ Speech) blurred by 0.8/0.5, 1/0.7 and 1.3/0.9 (frames/bins) and sharpened
#: without the step: the recording's ripple is 0.67-1.63x as deep as the one the unsharp mask
#: leaves (too deep on LJ Speech's voice, too shallow on low voices), rms log error 0.15-0.25;
#: after the prior 0.09-0.12 at each strength. Without the 3 clips that are also in the held-out
#: set: (0.914, 0.531); on vocos-24k-100 and bigvgan-44k-128: (0.92, 0.53) and (0.90, 0.48).
#: ``python benchmarks/harmonic_research.py --fit-prior hifigan-22k-80``; findings in
#: ``benchmarks/predicted_research.md``, 2026-12-05 (session 9).
RIPPLE_PRIOR = (0.91, 0.54)

#: Upper edge of the band whose harmonic ripple :func:`ripple_depth` rescales (Hz): below it the
#: mel bins of the measured configurations are 31-41 Hz apart and resolve a voice's harmonics.
RIPPLE_BAND_HZ = 1000.0

#: Standard deviation (Hz) of the Gaussian along mel bins that separates the ripple from the
#: envelope (2 bins of hifigan-22k-80).
RIPPLE_DETREND_HZ = 75.0

#: Range of the ripple gain of :func:`ripple_depth`.
RIPPLE_GAIN_RANGE = (0.5, 2.0)

#: Frames whose magnitude-mel sum below :data:`RIPPLE_BAND_HZ` is within this many nepers of
#: the loudest frame's count for the ripple depth (the voiced frames, mostly).
RIPPLE_ACTIVE_RANGE = 3.0

#: Where the prior was measured, so where :func:`ripple_depth` acts: STFT resolution
#: ``sample_rate / win_length`` and mel-bin spacing below :data:`RIPPLE_BAND_HZ` (both Hz). Coarser
#: STFTs (whisper's 400-point one at 16 kHz: 40 Hz) or finer mels do not resolve the ripple the
#: same way; there the step is skipped.
RIPPLE_STFT_HZ = (18.0, 27.0)
RIPPLE_SPACING_HZ = (28.0, 45.0)


def _check_linear(mel: Any, config: MelConfig, name: str = "mel") -> torch.Tensor:
    check(
        isinstance(mel, torch.Tensor) and mel.dim() == 3 and mel.is_floating_point(),
        f"{name} must be a floating-point tensor shaped (batch, n_mels, frames), got "
        f"{tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__}",
    )
    check(
        mel.shape[1] == config.n_mels,
        f"{name} has {mel.shape[1]} mel bins but the config has n_mels={config.n_mels}",
    )
    check(mel.shape[2] >= 1, f"{name} has no frames")
    check(
        bool(torch.isfinite(mel).all()) and bool((mel >= 0).all()), f"{name} must be finite and non-negative"
    )
    return mel


def _log_and_active(lin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``ln`` of the linear mel floored at 1e-7 of each item's peak, the active mask, the floor."""
    peak = lin.amax(dim=(-2, -1), keepdim=True)
    floor = (peak * 1e-7).clamp_min(torch.finfo(lin.dtype).tiny)
    log = torch.log(torch.maximum(lin, floor))
    return log, log > torch.log(peak.clamp_min(torch.finfo(lin.dtype).tiny)) - ACTIVE_RANGE, floor


def _roughness(log: torch.Tensor, active: torch.Tensor, dim: int) -> torch.Tensor:
    """``mean(d2^2) / mean(d1^2)`` of ``log`` along ``dim`` over active cells, ``(B,)``."""
    n = log.shape[dim]
    if n < 3:
        return log.new_full(log.shape[:1], float("nan"))
    d1 = log.diff(dim=dim)
    d2 = d1.diff(dim=dim)
    a1 = active.narrow(dim, 1, n - 1).to(log.dtype)
    a2 = active.narrow(dim, 1, n - 2).to(log.dtype)
    num = (d2.square() * a2).sum(dim=(-2, -1)) / a2.sum(dim=(-2, -1)).clamp_min(1.0)
    den = (d1.square() * a1).sum(dim=(-2, -1)) / a1.sum(dim=(-2, -1)).clamp_min(1.0)
    return num / den.clamp_min(1e-12)


def mel_roughness(mel: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Roughness of a LINEAR mel ``(B, n_mels, T)`` along time and mel bins, ``(B, 2)``.

    ``mean((second difference)^2) / mean((first difference)^2)`` of the log-mel along each
    axis, over cells within :data:`ACTIVE_RANGE` nepers of the item's peak: 3 for white noise,
    towards 0 for a smooth surface; NaN along an axis shorter than 3.
    """
    log, active, _ = _log_and_active(_check_linear(mel, config))
    return torch.stack([_roughness(log, active, -1), _roughness(log, active, -2)], dim=-1)


def _unsharp(log: torch.Tensor, amount: torch.Tensor, dim: int) -> torch.Tensor:
    """``log + amount * (log - [1/4, 1/2, 1/4] * log)`` along ``dim``, edges replicated."""
    x = log.movedim(dim, -1)
    pad = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
    high = 0.5 * x - 0.25 * pad[..., :-2] - 0.25 * pad[..., 2:]
    return (x + amount.view(-1, *([1] * (x.dim() - 1))) * high).movedim(-1, dim)


def ripple_band(config: MelConfig) -> tuple[int, float] | None:
    """How many mel bins the ripple step rescales and the detrending width there (bins), or ``None``.

    The bins are those whose centre lies below :data:`RIPPLE_BAND_HZ` and the next one (its top 4
    are tapered, so the step fades out at 1 kHz).

    ``None`` where the configuration lies outside the envelope the ripple prior was measured in
    (:data:`RIPPLE_STFT_HZ`, :data:`RIPPLE_SPACING_HZ`) or has fewer than 8 bins below 1 kHz.
    """
    centres = mel_band_edges(config.n_mels, config.fmin, config.fmax_hz, config.mel_scale)[1:-1]
    n_low = int((centres < RIPPLE_BAND_HZ).sum())
    if n_low < 8:
        return None
    spacing = float(np.median(np.diff(centres[:n_low])))
    stft_hz = config.sample_rate / config.win_length
    if not (
        RIPPLE_STFT_HZ[0] <= stft_hz <= RIPPLE_STFT_HZ[1]
        and RIPPLE_SPACING_HZ[0] <= spacing <= RIPPLE_SPACING_HZ[1]
    ):
        return None
    return n_low + 1, RIPPLE_DETREND_HZ / spacing


def _gaussian_smooth_bins(log: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of ``(B, n, T)`` along ``n``: std ``sigma`` bins, radius ``4 sigma``,
    edges replicated (scipy's ``gaussian_filter1d(mode="nearest")``)."""
    radius = int(4 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=log.dtype, device=log.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    b, n, t = log.shape
    x = log.transpose(1, 2).reshape(b * t, 1, n)
    x = torch.nn.functional.pad(x, (radius, radius), mode="replicate")
    return torch.nn.functional.conv1d(x, kernel).view(b, t, n).transpose(1, 2)


def ripple_depth(
    log: torch.Tensor,
    config: MelConfig,
    *,
    prior: tuple[float, float] = RIPPLE_PRIOR,
    deepen_only: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescale the harmonic ripple of the low mel bins to a voice's depth.

    Below 1 kHz the mel bins resolve a voice's harmonics; a blur flattens that ripple, and
    :func:`sharpen_mel`'s unsharp mask restores it by an amount set by the whole mel, which
    is too deep for some voices and too shallow for others. Here the ripple ``r = L -
    G * L`` (``G`` a Gaussian along bins of :data:`RIPPLE_DETREND_HZ`) of the bins below
    :data:`RIPPLE_BAND_HZ` is measured on the loud frames (rms over the inner bins, nepers
    of the magnitude mel: ``L / power``) and scaled by ``g = c * depth ** (b - 1)`` (the
    depth a recording of that voice has, ``prior = (c, b)``, :data:`RIPPLE_PRIOR`), ``g``
    clipped to :data:`RIPPLE_GAIN_RANGE`, tapered to 1 over the band's top 4 bins.

    Parameters
    ----------
    log : torch.Tensor
        Natural log of a linear mel, ``(B, n_mels, T)``.
    config : MelConfig
        Its configuration; where :func:`ripple_band` is ``None`` the mel is returned as it is.
    prior : tuple of float
        ``(c, b)`` of the depth prior.
    deepen_only : torch.Tensor, optional
        ``(B,)`` bool: items whose gain is held at >= 1 (a ripple deeper than the prior's is
        left as it is).

    Returns
    -------
    log : torch.Tensor
        The rescaled log-mel, ``(B, n_mels, T)``.
    gain : torch.Tensor
        The ripple gain per item, ``(B,)`` (ones where the band is out of the envelope).
    """
    check(
        isinstance(log, torch.Tensor) and log.dim() == 3 and log.shape[1] == config.n_mels,
        f"log must be a tensor shaped (batch, n_mels={config.n_mels}, frames), got "
        f"{tuple(log.shape) if isinstance(log, torch.Tensor) else type(log).__name__}",
    )
    check(
        deepen_only is None or tuple(deepen_only.shape) == (log.shape[0],),
        f"deepen_only must be one bool per item, shaped ({log.shape[0]},)",
    )
    band = ripple_band(config)
    ones = log.new_ones(log.shape[0])
    if band is None or log.shape[-2] < 3:
        return log, ones
    n_low, sigma = band
    low = log[:, :n_low]
    ripple = low - _gaussian_smooth_bins(low, sigma)
    energy = torch.logsumexp(low / config.power, dim=-2)  # (B, T), ln of the magnitude-mel sum
    loud = (energy > energy.amax(-1, keepdim=True) - RIPPLE_ACTIVE_RANGE).to(log.dtype)[:, None, :]
    inner = ripple[:, 1:-1] / config.power
    depth = ((inner.square() * loud).sum(dim=(-2, -1)) / (loud.sum(dim=(-2, -1)) * inner.shape[1])).sqrt()
    c, b = prior
    gain = (c * depth.clamp_min(1e-3) ** (b - 1)).clamp(*RIPPLE_GAIN_RANGE)
    if deepen_only is not None:
        gain = torch.where(deepen_only, gain.clamp_min(1.0), gain)
    taper = torch.ones(n_low, dtype=log.dtype, device=log.device)
    taper[-4:] = torch.tensor([0.8, 0.6, 0.4, 0.2], dtype=log.dtype, device=log.device)
    out = log.clone()
    out[:, :n_low] = low + (gain.view(-1, 1, 1) - 1) * ripple * taper.view(1, -1, 1)
    return out, gain


def sharpen_mel(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    targets: tuple[float, float] = SHARPEN_TARGETS,
    max_amount: float = SHARPEN_MAX_AMOUNT,
    steps: int = 12,
    ripple: bool = True,
) -> torch.Tensor:
    """Sharpen an over-smoothed LINEAR mel ``(B, n_mels, T)`` back to a recording's roughness.

    Along time, then along mel bins: where an item's roughness (:func:`mel_roughness`) is
    below that axis's target, the log-mel gets the unsharp mask ``L + a (L - [1/4, 1/2, 1/4] *
    L)`` with the amount ``a`` in ``[0, max_amount]`` that brings the roughness to the target
    (``steps`` bisection steps, per item; ``max_amount`` where even that falls short: a strong
    blur is sharpened part of the way, see :data:`SHARPEN_MAX_AMOUNT`); otherwise it is left as
    it is. Then, if ``ripple``, the harmonic ripple below 1 kHz of a sharpened item is brought
    to a voice's depth (:func:`ripple_depth`; an item sharpened along time only is deepened
    where its ripple is shallower than a voice's, never flattened). Cells at the floor (1e-7 of the peak) stay as
    given, and a sharpened item is scaled back to the energy it was given (its level). Returns
    the linear mel, same shape and dtype; an item at or above both targets is returned
    unchanged.
    """
    _check_linear(mel, config)
    check(
        len(targets) == 2 and all(isinstance(t, (int, float)) and 0 < t < 3 for t in targets),
        f"targets={targets!r} must be two roughness values in (0, 3)",
    )
    check_positive("max_amount", max_amount)
    check(isinstance(steps, int) and steps >= 1, f"steps={steps!r} must be an integer >= 1")
    check(isinstance(ripple, bool), f"ripple={ripple!r} must be true or false")
    log, active, floor = _log_and_active(mel)
    changed = torch.zeros(mel.shape[0], dtype=torch.bool, device=mel.device)
    across = torch.zeros_like(changed)  # the items sharpened across mel bins
    for dim, target in ((-1, targets[0]), (-2, targets[1])):
        if log.shape[dim] < 3:
            continue
        before = _roughness(log, active, dim)
        if not bool((before < target).any()):
            continue  # every item is rough enough along this axis (a recording's mel): unchanged
        lo = torch.zeros_like(before)
        hi = torch.full_like(before, float(max_amount))
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            short = _roughness(_unsharp(log, mid, dim), active, dim) < target
            lo = torch.where(short, mid, lo)
            hi = torch.where(short, hi, mid)
        log = _unsharp(log, torch.where(before < target, lo, torch.zeros_like(lo)), dim)
        changed |= before < target
        if dim == -2:
            across = before < target
    if ripple and bool(changed.any()):
        # only the unsharp mask across bins can have made the ripple too deep; an item sharpened
        # along time only may still have lost ripple to a blur across bins too mild to trip the
        # target (a low voice's), so it is deepened but never flattened
        log = torch.where(
            changed.view(-1, 1, 1), ripple_depth(log, config, deepen_only=changed & ~across)[0], log
        )
    keep = changed.view(-1, 1, 1) & (mel > floor)
    sharp = torch.where(keep, torch.exp(log), torch.zeros_like(mel))
    # the same energy as given: unsharp masking in the log domain lifts the peaks, so the level
    # would rise (measured +5 dB on a blur of a frame and 0.7 bin, and DNSMOS -0.15 for it)
    given = torch.where(keep, mel, torch.zeros_like(mel)).sum(dim=(-2, -1), keepdim=True)
    gain = given / sharp.sum(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(mel.dtype).tiny)
    return torch.where(keep, sharp * gain, mel)


def sharpened_nnls(mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None) -> torch.Tensor:
    """Stage 1: :func:`sharpen_mel`, then :func:`melinvert.magnitude.nnls`.

    ``mel`` LINEAR ``(B, n_mels, T)``; returns the magnitude ``(B, n_freqs, T)``. The stage-2
    re-fit should follow ``sharpen_mel(mel)``, not ``mel`` (:func:`invert_linear` does).
    """
    return nnls(sharpen_mel(mel, config), config, n_iter=n_iter)


class TolerantRefit(MelRefit):
    """:class:`~melinvert.phase.MelRefit` that re-fits only the log-mel error above ``tolerance``.

    The band gain becomes ``exp(exponent * shrink(ln(mel / est), tolerance))`` with ``shrink(r,
    t) = sign(r) max(|r| - t, 0)``; ``tolerance=0, exponent=1`` is :class:`MelRefit` (up to
    rounding). Arguments as :class:`MelRefit`, plus ``tolerance`` (nepers, >= 0) and
    ``exponent`` (in (0, 1]).
    """

    def __init__(
        self, mel: torch.Tensor, config: MelConfig, *, tolerance: float = 0.0, exponent: float = 1.0
    ):
        check(
            isinstance(tolerance, (int, float)) and tolerance >= 0,
            f"tolerance={tolerance!r} must be a number >= 0",
        )
        check(
            isinstance(exponent, (int, float)) and 0 < exponent <= 1,
            f"exponent={exponent!r} must be a number in (0, 1]",
        )
        super().__init__(mel, config)
        self.tolerance = float(tolerance)
        self.exponent = float(exponent)

    def _ratio(self, ratio: torch.Tensor) -> torch.Tensor:
        """``exp(exponent * shrink(ln ratio, tolerance))`` (the ratio itself at 0 and 1)."""
        if self.tolerance == 0 and self.exponent == 1.0:
            return ratio
        r = torch.log(ratio.clamp_min(self.tiny))
        r = torch.sign(r) * (r.abs() - self.tolerance).clamp_min(0.0)
        return torch.exp(r * self.exponent)


def invert_linear(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    length: int,
    nnls_iter: int = 20,
    n_iter: int = 16,
    sharpen: bool = True,
    sharpen_kw: dict | None = None,
    tolerance: float = 0.0,
    refit_exponent: float = 1.0,
    callback: Any = None,
) -> torch.Tensor:
    """The recommended cascade on a LINEAR mel ``(B, n_mels, T)`` -> audio ``(B, length)``.

    :func:`sharpen_mel` (if ``sharpen``), NNLS (``nnls_iter``), PGHI, ``n_iter`` accelerated
    Griffin-Lim iterations re-fitted (:class:`TolerantRefit`) to the sharpened mel. With
    ``sharpen=False, tolerance=0, refit_exponent=1`` this is today's ``default`` (as one
    block; like it, the items left as given get the momentum 0.9 of ``given_alpha`` and
    ``given_beta``). ``callback`` as :func:`melinvert.phase.agla`'s.
    """
    _check_linear(mel, config)
    given = mel
    if sharpen:
        mel = sharpen_mel(mel, config, **(sharpen_kw or {}))
    magla = next(s for s in registry.parse("default").steps if s.stage.name == "magla")
    names = ("alpha", "beta", "given_alpha", "given_beta")
    momentum = per_item_params({k: magla.params[k] for k in names}, mel, given)
    mel = mel_operator(config, dtype=mel.dtype, device=mel.device).extend_frames(mel)  # Whisper's frame
    mag = nnls(mel, config, n_iter=nnls_iter).transpose(-1, -2).contiguous()
    ops = FrameOps(config, length, dtype=mag.dtype, device=mag.device)
    check(
        ops.n_frames == mag.shape[1],
        f"length={length} gives {ops.n_frames} frames, the mel has {mag.shape[1]}",
    )
    refit = TolerantRefit(
        mel.transpose(-1, -2).contiguous(), config, tolerance=tolerance, exponent=refit_exponent
    )
    return agla(mag, ops, init_pghi(mag, config), n_iter=n_iter, refit=refit, callback=callback, **momentum)  # type: ignore[arg-type]


class MelConsistency(NamedTuple):
    """Result of :func:`mel_consistency`, each ``(B,)`` float64 (numpy)."""

    residual: Any  #: log-mel L1 (nepers) left after re-fitting; a recording's ~0.08 after 10 iterations
    roughness_time: Any  #: :func:`mel_roughness` along time; a recording's >= 0.9
    roughness_freq: Any  #: along mel bins; a recording's >= 1.45

    def problems(self, i: int = 0) -> list[str]:
        """Lines saying how item ``i`` is not the mel of a waveform (empty if it looks like one)."""
        out = []
        if self.roughness_time[i] < SHARPEN_TARGETS[0]:
            out.append(
                f"over-smoothed in time (roughness {self.roughness_time[i]:.2f} < {SHARPEN_TARGETS[0]})"
            )
        if self.roughness_freq[i] < SHARPEN_TARGETS[1]:
            out.append(
                f"over-smoothed across mel bins (roughness {self.roughness_freq[i]:.2f} < {SHARPEN_TARGETS[1]})"
            )
        if self.residual[i] > RESIDUAL_LIMIT:
            out.append(f"no waveform fits it (residual {self.residual[i]:.3f} > {RESIDUAL_LIMIT} log-mel L1)")
        return out


#: Re-fit residual (log-mel L1 after :func:`mel_consistency`'s 10 iterations) above which a mel is
#: not the mel of a waveform: recordings measured 0.074-0.078, log-noise of std 0.2 0.124-0.131,
#: oracle-masked mixtures 0.235-0.255.
RESIDUAL_LIMIT = 0.1


def mel_consistency(mel: Any, config: MelConfig | str, *, n_iter: int = 10) -> MelConsistency:
    """How far a mel (in the config's compression, ``(..., n_mels, T)``) is from any waveform's.

    Runs NNLS, PGHI and ``n_iter`` mel-re-fitted accelerated Griffin-Lim iterations and keeps
    the last log-mel L1 residual; also measures :func:`mel_roughness`. Leading dimensions are
    flattened into the batch. See :meth:`MelConsistency.problems` for a verdict.
    """
    config = resolve_config(config)
    check(isinstance(n_iter, int) and n_iter >= 1, f"n_iter={n_iter!r} must be an integer >= 1")
    t, _, _ = as_tensor(mel, name="mel")
    check(t.dim() >= 2, f"mel must be shaped (..., n_mels, frames), got shape {tuple(t.shape)}")
    lin = _check_linear(decode_mel(t.reshape(-1, *t.shape[-2:]), config), config)
    rough = mel_roughness(lin, config).double().cpu().numpy()
    losses: list[torch.Tensor] = []

    def keep(p: Any) -> bool:
        if p.stage == "magla":
            losses.append(p.loss)
        return False

    import warnings

    from .errors import MelinvertNotice
    from .pipeline import invert

    # the default cascade without the sharpening: what the mel of a waveform is fitted by (its
    # notices, e.g. values clamped at the floor, are not this measurement's to give)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MelinvertNotice)
        invert(
            t.reshape(-1, *t.shape[-2:]),
            config,
            method=f"nnls(iters=20)+pghi+magla(iters={n_iter})",
            callback=keep,
        )
    return MelConsistency(losses[-1].double().cpu().numpy(), rough[:, 0], rough[:, 1])


# ---------------------------------------------------------------------- stages


def _sharpen_stage(
    state: State,
    ctx: Context,
    *,
    targets: tuple[float, float],
    max_amount: float,
    steps: int,
    ripple: bool,
) -> State:
    """The ``mel`` stage: the mel later stages fit, sharpened where it is over-smoothed."""
    return state.replace(
        mel=sharpen_mel(
            state.mel, ctx.config, targets=targets, max_amount=max_amount, steps=steps, ripple=ripple
        )
    )


registry.register(
    "sharpen",
    "mel",
    _sharpen_stage,
    params={"targets": SHARPEN_TARGETS, "max_amount": SHARPEN_MAX_AMOUNT, "steps": 12, "ripple": True},
    description="sharpen an over-smoothed (predicted) log-mel back to a recording's roughness and "
    "its harmonic ripple below 1 kHz to a voice's depth (ripple=false: without); leaves the mel of "
    "a recording as it is",
)

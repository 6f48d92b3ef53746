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

import torch

from . import registry
from .config import MelConfig, resolve_config
from .dsp import FrameOps, as_tensor
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


def sharpen_mel(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    targets: tuple[float, float] = SHARPEN_TARGETS,
    max_amount: float = SHARPEN_MAX_AMOUNT,
    steps: int = 12,
) -> torch.Tensor:
    """Sharpen an over-smoothed LINEAR mel ``(B, n_mels, T)`` back to a recording's roughness.

    Along time, then along mel bins: where an item's roughness (:func:`mel_roughness`) is
    below that axis's target, the log-mel gets the unsharp mask ``L + a (L - [1/4, 1/2, 1/4] *
    L)`` with the amount ``a`` in ``[0, max_amount]`` that brings the roughness to the target
    (``steps`` bisection steps, per item; ``max_amount`` where even that falls short: a strong
    blur is sharpened part of the way, see :data:`SHARPEN_MAX_AMOUNT`); otherwise it is left as
    it is. Cells at the floor (1e-7 of the peak) stay as given, and a sharpened item is scaled
    back to the energy it was given (its level). Returns the linear mel, same shape and dtype;
    an item at or above both targets is returned unchanged.
    """
    _check_linear(mel, config)
    check(
        len(targets) == 2 and all(isinstance(t, (int, float)) and 0 < t < 3 for t in targets),
        f"targets={targets!r} must be two roughness values in (0, 3)",
    )
    check_positive("max_amount", max_amount)
    check(isinstance(steps, int) and steps >= 1, f"steps={steps!r} must be an integer >= 1")
    log, active, floor = _log_and_active(mel)
    changed = torch.zeros(mel.shape[0], dtype=torch.bool, device=mel.device)
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
    state: State, ctx: Context, *, targets: tuple[float, float], max_amount: float, steps: int
) -> State:
    """The ``mel`` stage: the mel later stages fit, sharpened where it is over-smoothed."""
    return state.replace(
        mel=sharpen_mel(state.mel, ctx.config, targets=targets, max_amount=max_amount, steps=steps)
    )


registry.register(
    "sharpen",
    "mel",
    _sharpen_stage,
    params={"targets": SHARPEN_TARGETS, "max_amount": SHARPEN_MAX_AMOUNT, "steps": 12},
    description="sharpen an over-smoothed (predicted) log-mel back to a recording's roughness; "
    "leaves the mel of a recording as it is",
)

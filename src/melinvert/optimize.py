"""Stage 3: optimise a waveform directly against the mel it must have.

Every optimiser has the calling shape::

    optimizer(mel, config, start, *, n_iter, callback=None, known=None) -> audio

``mel`` : torch.Tensor [shape=(B, n_mels, frames), non-negative]
    Target LINEAR mel (the config's compression already undone), in the config's power.
``start`` : torch.Tensor [shape=(B, samples)]
    Starting waveform (the cascade's output); float32 or float64, on any device. Everything
    is computed in its dtype and on its device.
``n_iter`` : int >= 0
    Iterations (0 returns ``start``).
``callback`` : callable, optional
    ``callback(iteration, estimate (B, samples), loss (B,)) -> stop?``; called with the start
    as iteration 0 and after every iteration. Returning True stops; the best estimate so far
    (by the optimiser's loss, per item) is returned.
``known`` : torch.Tensor [shape=(B, K)], optional
    Samples at the start of the block that are fixed (the previous block's output when a
    long input is inverted block by block), held as :meth:`melinvert.dsp.FrameOps.synthesis`
    holds them: the result's first ``K - ramp`` samples equal them and the last ``ramp``
    (``FrameOps.KNOWN_RAMP_HOPS`` hops) cross-fade from them into the free estimate.
returns : torch.Tensor [shape=(B, samples)]
    The lowest-loss estimate seen (the start included), so never worse than ``start`` on the
    optimiser's own loss.

Optimisers, registered in :data:`OPTIMIZERS`:

``wave_lbfgs``
    L-BFGS on the waveform itself (after Decorsiere et al., IEEE/ACM TASLP 23(1), 2015). Loss:
    the mean squared difference of log mels, ``mean (ln(mel(x) + d) - ln(M + d))^2`` with
    ``d = floor^power * max(M)`` per item (:func:`mel_loss`), floor 1e-2. The paper compressed
    with ``log1p``, l2-normalised both mels and started from noise (``loss="log1p"``,
    ``init="noise"``); here the start is the cascade's output. The L-BFGS (:func:`lbfgs`) is
    batched with a history and a line search per item, so a batch gives its stacked items.
``wave_lbfgs_noise``
    The paper's setting: the same L-BFGS started from Gaussian noise (std 1e-6), ignoring
    ``start`` (its length and dtype are used).
``stft_gd``
    Adam on a free STFT ``V = exp(a) * exp(i phi)`` (log-magnitude ``a``, phase ``phi``),
    minimising ``w_c ||STFT(iSTFT(V)) - V|| / ||V_0|| + w_m rms(ln(mel(|V|) + d) - ln(M + d))``
    (unsquared norms, ``w_c = w_m = 0.5``, rate 0.1 after a 20-step warm-up); the estimate is
    ``iSTFT(V)``.
``joint``
    ADMM on magnitude and phase together (after Masuyama, Ueno & Ono, arXiv 2501.05557):
    ``min 1/2 || |X| - Y ||^2 + lam/2 ||F W - M||^2`` over a consistent ``Z = X``,
    ``Y >= 0`` and ``W = Y``; see :func:`joint`. Magnitude mels (``power=1``) only.

Every choice above (losses, floors, norms, weights, rates, starts, iteration counts) was
measured against the alternatives on real speech: ``benchmarks/optimizers.md`` and
``benchmarks/optimizers.png`` (``python benchmarks/optimizers.py --help``). In short: from
``default``'s output each of them raises PESQ-WB, ``joint`` the most per second; none beats
simply running the mel-refitted Griffin-Lim of stage 2 longer from scratch, which is why the
``quality`` pipeline spends most of its time there and ends with 20 ``wave_lbfgs`` iterations
(they tighten the log-mel fit and add a little PESQ on every clip).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import registry
from .config import MelConfig
from .dsp import Boundary, FrameOps
from .errors import check, check_positive
from .operator import mel_operator
from .phase import Callback, power
from .stage import Context, Reporter, State

OptimizerFn = Callable[..., torch.Tensor]

#: Relative floor of wave_lbfgs's log-mel loss (``d = floor^power * max(M)``), measured against
#: 1e-3 and 3e-2 (``benchmarks/optimizers.md``).
DEFAULT_FLOOR = 1e-2


# ---------------------------------------------------------------------- shared pieces


def _check_common(
    mel: torch.Tensor, config: MelConfig, start: torch.Tensor, n_iter: int, known: torch.Tensor | None
) -> None:
    check(
        isinstance(n_iter, int) and not isinstance(n_iter, bool) and n_iter >= 0,
        f"n_iter={n_iter!r} must be an integer >= 0",
    )
    check(
        isinstance(start, torch.Tensor) and start.dim() == 2 and start.is_floating_point(),
        f"start must be a floating-point tensor shaped (batch, samples), got "
        f"{tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__}",
    )
    check(
        isinstance(mel, torch.Tensor) and mel.dim() == 3 and mel.shape[1] == config.n_mels,
        f"mel must be shaped (batch, n_mels={config.n_mels}, frames), got "
        f"{tuple(mel.shape) if isinstance(mel, torch.Tensor) else type(mel).__name__}",
    )
    check(
        mel.shape[0] == start.shape[0],
        f"mel batch {mel.shape[0]} and start batch {start.shape[0]} differ",
    )
    frames = config.n_frames(start.shape[-1])
    check(
        frames == mel.shape[-1],
        f"start has {start.shape[-1]} samples, which give {frames} frames, but the mel has {mel.shape[-1]}",
    )
    check(bool(torch.isfinite(start).all()), "start contains NaN or Inf")
    check(bool(torch.isfinite(mel).all()) and bool((mel >= 0).all()), "mel must be finite and non-negative")
    if known is not None:
        check(
            isinstance(known, torch.Tensor)
            and known.dim() == 2
            and known.shape[0] == start.shape[0]
            and known.shape[1] < start.shape[1],
            f"known must be shaped (batch={start.shape[0]}, K) with K < {start.shape[1]} samples, got "
            f"{tuple(known.shape) if isinstance(known, torch.Tensor) else type(known).__name__}",
        )


class MelObjective:
    """The mel of a waveform (or of an STFT magnitude) and its log-domain distance to a target.

    Parameters
    ----------
    mel : torch.Tensor [shape=(B, n_mels, frames), non-negative]
        Target linear mel.
    config : MelConfig
    length : int
        Waveform length in samples.
    floor : float
        Relative floor ``d = floor^power * max(M)`` (per item) inside the logarithms.
    dtype, device :
        Those of the waveforms to be scored.
    """

    def __init__(
        self,
        mel: torch.Tensor,
        config: MelConfig,
        length: int,
        *,
        floor: float = DEFAULT_FLOOR,
        dtype: torch.dtype,
        device: torch.device,
    ):
        check(
            isinstance(floor, (int, float)) and not isinstance(floor, bool) and 0 < floor < 1,
            f"floor={floor!r} must be a number in (0, 1)",
        )
        self.config = config
        self.ops = FrameOps(config, length, dtype=dtype, device=device)
        op = mel_operator(config, dtype=dtype, device=device)
        self.op = op
        self.lo, self.hi = op.lo, op.hi
        self.fb = op.fb_cover  # (M, F')
        self.fb_t = op.fb_cover_t  # (F', M)
        self.target = mel.to(dtype=dtype, device=device).transpose(1, 2).contiguous()  # (B, T, M)
        peak = self.target.amax(dim=(1, 2), keepdim=True)
        tiny = torch.finfo(dtype).tiny
        self.delta = (floor**config.power * peak).clamp_min(1e3 * tiny)  # (B, 1, 1)
        self.log_target = torch.log(self.target + self.delta)
        # d|X|/dX is unbounded at X = 0 without an epsilon: add the smallest harmless one
        self.eps = config.mag_eps if config.mag_eps > 0 else 1e-12 * max(1.0, float(peak.max())) ** 2

    def magnitude_mel(self, mag: torch.Tensor) -> torch.Tensor:
        """Mel ``(B, T, M)`` of an STFT magnitude ``(B, T, F)`` (``|X|``, not yet powered)."""
        return self.op.cover_mel_frames_first(self.op.to_power(mag[..., self.lo : self.hi]))

    def spec_mel(self, spec: torch.Tensor) -> torch.Tensor:
        """Mel ``(B, T, M)`` of a complex STFT ``(B, T', F)``, with the config's magnitude epsilon."""
        s = self.op.mel_frames_of(spec, dim=1)[..., self.lo : self.hi]
        return self.op.cover_mel_frames_first(self.op.spec_power(s, extra_eps=self.eps))

    def log_error(self, est: torch.Tensor) -> torch.Tensor:
        """``ln(est + d) - ln(M + d)``, ``(B, T, M)``."""
        return self.op.log_error(est, self.log_target, self.delta)

    def wave_loss(self, x: torch.Tensor) -> torch.Tensor:
        """``mean (ln(mel(x) + d) - ln(M + d))^2`` per item, ``(B,)``."""
        return self.log_error(self.spec_mel(self.ops.analysis(x))).square().mean(dim=(1, 2))

    def log1p_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Decorsiere et al.'s loss: ``mean (a / ||a|| - b / ||b||)^2`` with ``a = ln(1 + mel(x))``,
        ``b = ln(1 + M)`` (norms per item), ``(B,)``."""
        a = torch.log1p(self.spec_mel(self.ops.analysis(x)))
        b = torch.log1p(self.target)
        tiny = torch.finfo(a.dtype).tiny
        a = a / torch.linalg.vector_norm(a, dim=(1, 2), keepdim=True).clamp_min(tiny)
        b = b / torch.linalg.vector_norm(b, dim=(1, 2), keepdim=True).clamp_min(tiny)
        return (a - b).square().mean(dim=(1, 2))


def _wave_loss_of(obj: MelObjective, spec: torch.Tensor) -> torch.Tensor:
    """:meth:`MelObjective.wave_loss` of the waveform whose STFT ``spec`` is (no new analysis)."""
    return obj.log_error(obj.spec_mel(spec)).square().mean(dim=(1, 2))


def mel_loss(
    audio: torch.Tensor, mel: torch.Tensor, config: MelConfig, *, floor: float = DEFAULT_FLOOR
) -> torch.Tensor:
    """The loss ``wave_lbfgs`` minimises, differentiable in ``audio``.

    Parameters
    ----------
    audio : torch.Tensor [shape=(B, samples)]
        Waveforms (float32 or float64).
    mel : torch.Tensor [shape=(B, n_mels, frames), non-negative]
        Target linear mels; ``frames = config.n_frames(samples)``.
    config : MelConfig
    floor : float
        Relative floor ``d = floor^power * max(M)`` per item.

    Returns
    -------
    torch.Tensor [shape=(B,)]
        ``mean over bands and frames of (ln(mel(audio) + d) - ln(M + d))^2`` (nepers squared).
    """
    _check_common(mel, config, audio.detach(), 0, None)
    obj = MelObjective(mel, config, audio.shape[-1], floor=floor, dtype=audio.dtype, device=audio.device)
    return obj.wave_loss(audio)


def _report(best: Reporter, callback: Callback | None, i: int, x: torch.Tensor, loss: torch.Tensor) -> bool:
    """Keep the best estimate per item and tell the optimiser's callback; True means stop."""
    best.observe(x, loss)
    return bool(callback(i, x.detach(), loss.detach())) if callback is not None else False


# ---------------------------------------------------------------------- L-BFGS


def lbfgs(
    fun: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x0: torch.Tensor,
    *,
    n_iter: int,
    history: int = 10,
    first_step: float = 1e-3,
    callback: Callable[[int, torch.Tensor, torch.Tensor], bool] | None = None,
    c1: float = 1e-4,
    max_search: int = 12,
) -> torch.Tensor:
    """Batched L-BFGS: every item has its own history and its own line search.

    Parameters
    ----------
    fun : callable
        ``fun(x (B, N)) -> (loss (B,), gradient (B, N))``, item ``b``'s loss depending on
        ``x[b]`` only.
    x0 : torch.Tensor [shape=(B, N)]
    n_iter : int
        Iterations (each costs one evaluation of ``fun`` when the full step is accepted).
    history : int
        Curvature pairs kept per item.
    first_step : float
        Length of the first (steepest-descent) step relative to ``||x0||`` (or to
        ``sqrt(N)`` when ``x0`` is nearly zero); the first line search also expands it by 4x
        while the loss keeps falling.
    callback : callable, optional
        ``callback(iteration, x, loss) -> stop?``, with the start as iteration 0.
    c1 : float
        Armijo constant of the backtracking line search (factor 0.5).
    max_search : int
        Evaluations per line search; an item whose search fails keeps its point and restarts
        its history, and one whose restarted (steepest-descent) search fails too is left where
        it is (converged to rounding); the run ends early when every item is.

    Returns
    -------
    torch.Tensor [shape=(B, N)]
        The last iterate; the loss never rises (Armijo), so it is also the best one.
    """
    x = x0.detach().clone()
    b, n = x.shape
    f, g = fun(x)
    if callback is not None and callback(0, x, f):
        return x
    hist = _History(history, b, n, x)
    fresh = torch.ones(b, dtype=torch.bool, device=x.device)  # no usable curvature yet
    frozen = torch.zeros(b, dtype=torch.bool, device=x.device)  # failed twice in a row: converged
    scale0 = first_step * torch.maximum(x.norm(dim=1), x.new_tensor(1e-3 * math.sqrt(n)))
    for it in range(1, n_iter + 1):
        d, slope = hist.direction(g, fresh, scale0)
        x_new, f_new, g_new, accepted = _line_search(fun, x, f, g, d, slope, fresh, frozen, c1, max_search)
        hist.push(x_new - x, g_new - g, accepted)
        failed = ~accepted & ~frozen
        if bool(failed.any()):  # restart the history of items whose search failed
            hist.valid[:, failed] = False
        frozen |= failed & fresh  # a steepest-descent step failed too: nothing left to gain
        fresh = failed
        x, f, g = x_new, f_new, g_new
        if callback is not None and callback(it, x, f):
            break
        if bool(frozen.all()):
            break
    return x


class _History:
    """Per-item L-BFGS curvature pairs ``(s, y)`` in a ring of ``size`` slots."""

    def __init__(self, size: int, b: int, n: int, like: torch.Tensor):
        self.size = size
        self.s = like.new_zeros(size, b, n)
        self.y = like.new_zeros(size, b, n)
        self.rho = like.new_zeros(size, b)
        self.valid = torch.zeros(size, b, dtype=torch.bool, device=like.device)
        self.slot = 0

    def direction(
        self, g: torch.Tensor, fresh: torch.Tensor, scale0: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two-loop recursion per item (invalid pairs contribute nothing): ``(d, g . d)``;
        items without curvature, or whose direction lost descent, take scaled steepest descent."""
        b = g.shape[0]
        q = g.clone()
        alpha = g.new_zeros(self.size, b)
        order = [(self.slot - 1 - j) % self.size for j in range(self.size)]
        for i in order:
            a = self.rho[i] * (self.s[i] * q).sum(1) * self.valid[i]
            alpha[i] = a
            q.sub_(a[:, None] * self.y[i])
        newest = order[0]
        yy = (self.y[newest] * self.y[newest]).sum(1)
        gamma = (self.s[newest] * self.y[newest]).sum(1) / yy.clamp_min(torch.finfo(g.dtype).tiny)
        gnorm = g.norm(dim=1).clamp_min(torch.finfo(g.dtype).tiny)
        gamma = torch.where(fresh | ~self.valid[newest], scale0 / gnorm, gamma)
        r = gamma[:, None] * q
        for i in reversed(order):
            beta = self.rho[i] * (self.y[i] * r).sum(1) * self.valid[i]
            r.add_((alpha[i] - beta)[:, None] * self.s[i])
        d = -r
        slope = (g * d).sum(1)
        uphill = slope >= 0
        if bool(uphill.any()):  # lost descent (rounding): fall back to steepest descent
            d = torch.where(uphill[:, None], -g * (scale0 / gnorm)[:, None], d)
            slope = (g * d).sum(1)
        return d, slope

    def push(self, s: torch.Tensor, yv: torch.Tensor, accepted: torch.Tensor) -> None:
        """Store the pair of this iteration where it is positive (so the inverse Hessian stays
        positive); the slot advances either way."""
        slot = self.slot
        sy = (s * yv).sum(1)
        keep = accepted & (sy > 1e-10 * s.norm(dim=1) * yv.norm(dim=1))
        self.s[slot] = torch.where(keep[:, None], s, self.s[slot])
        self.y[slot] = torch.where(keep[:, None], yv, self.y[slot])
        self.rho[slot] = torch.where(keep, 1.0 / sy.clamp_min(torch.finfo(s.dtype).tiny), self.rho[slot])
        self.valid[slot] = keep
        self.slot = (slot + 1) % self.size


def _line_search(
    fun: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    d: torch.Tensor,
    slope: torch.Tensor,
    fresh: torch.Tensor,
    frozen: torch.Tensor,
    c1: float,
    max_search: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backtracking (Armijo) line search per item; items without curvature (``fresh``) first
    expand their step by 4x while the loss keeps falling, since their step length is only a
    guess. Returns ``(x, f, g, accepted)``."""
    b = x.shape[0]
    t = x.new_ones(b)
    accepted = torch.zeros(b, dtype=torch.bool, device=x.device)
    expanding = fresh.clone()
    active = ~frozen
    x_new, f_new, g_new = x.clone(), f.clone(), g.clone()
    for _ in range(max_search):
        trial = x + t[:, None] * d
        ft, gt = fun(trial)
        ok = active & (ft <= f + c1 * t * slope) & torch.isfinite(ft)
        improve = ok & expanding & (ft < f_new)
        take = improve | (ok & ~expanding)
        x_new = torch.where(take[:, None], trial, x_new)
        f_new = torch.where(take, ft, f_new)
        g_new = torch.where(take[:, None], gt, g_new)
        accepted |= take
        stalled = active & expanding & ~improve  # expansion over: done, or backtrack
        done = (ok & ~expanding) | (stalled & accepted)
        expanding &= ~stalled
        active &= ~done
        if not bool(active.any()):
            break
        t = torch.where(active & expanding, t * 4.0, torch.where(active, t * 0.5, t))
    return x_new, f_new, g_new, accepted


# ---------------------------------------------------------------------- wave_lbfgs


def wave_lbfgs(
    mel: torch.Tensor,
    config: MelConfig,
    start: torch.Tensor,
    *,
    n_iter: int,
    callback: Callback | None = None,
    known: torch.Tensor | None = None,
    init: str = "start",
    seed: int = 0,
    loss: str = "log",
    floor: float = DEFAULT_FLOOR,
    history: int = 10,
) -> torch.Tensor:
    """L-BFGS on the waveform against the log mel (see the module docstring).

    Parameters
    ----------
    mel, config, start, n_iter, callback, known :
        The optimiser calling shape (module docstring).
    init : {"start", "noise"}
        ``noise``: start from Gaussian noise of std 1e-6 (seeded with ``seed``), as
        Decorsiere et al. did; ``start`` then gives only the length, dtype and device.
    loss : {"log", "log1p"}
        ``log``: :func:`mel_loss`. ``log1p``: the paper's, ``mean (a/||a|| - b/||b||)^2`` with
        ``a = ln(1 + mel(x))`` and ``b = ln(1 + M)``; on mels of audio in [-1, 1] it is nearly
        linear in the mel, and measured worse (``benchmarks/optimizers.md``).
    floor : float
        Relative floor of the log mel (:func:`mel_loss`).
    history : int
        L-BFGS curvature pairs per item.

    Returns
    -------
    torch.Tensor [shape=(B, samples)]
    """
    _check_common(mel, config, start, n_iter, known)
    check(init in ("start", "noise"), f"init={init!r} must be 'start' or 'noise'")
    check(loss in ("log", "log1p"), f"loss={loss!r} must be 'log' or 'log1p'")
    if init == "noise":
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn(start.shape, generator=gen, dtype=torch.float64) * 1e-6
        start = noise.to(dtype=start.dtype, device=start.device)
    z0 = start.detach()
    held = Boundary(known, config.hop_length)
    obj = MelObjective(mel, config, z0.shape[-1], floor=floor, dtype=z0.dtype, device=z0.device)
    loss_fn = obj.wave_loss if loss == "log" else obj.log1p_loss

    def fun(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            zv = z.detach().requires_grad_(True)
            value = loss_fn(held.hold(zv))  # held samples get no gradient
            (grad,) = torch.autograd.grad(value.sum(), zv)
        return value.detach(), grad

    best = Reporter(None, 0)
    lbfgs(
        fun,
        z0,
        n_iter=n_iter,
        history=history,
        callback=lambda i, z, f: _report(best, callback, i, held.hold(z), f),
    )
    return best.best


# ---------------------------------------------------------------------- stft_gd


def stft_gd(
    mel: torch.Tensor,
    config: MelConfig,
    start: torch.Tensor,
    *,
    n_iter: int,
    callback: Callback | None = None,
    known: torch.Tensor | None = None,
    lr: float = 0.1,
    warmup: int = 20,
    weights: tuple[float, float] = (0.5, 0.5),
    mel_domain: str = "log",
    squared: bool = False,
    floor: float = 1e-3,
) -> torch.Tensor:
    """Adam on a free STFT against consistency and the mel (see the module docstring).

    The loss per item, with ``V = exp(a) exp(i phi)`` and ``V_0`` the start's STFT::

        w_c ||STFT(iSTFT(V)) - V||_F / ||V_0||_F  +  w_m ||E(mel(|V|)) - E(M)||_F / s

    ``E`` is ``ln(. + d)`` (``mel_domain="log"``, ``s = sqrt(n_mels * frames)``) or the
    identity (``"linear"``, ``s = ||M||_F``); ``squared`` squares both norms.

    Parameters
    ----------
    mel, config, start, n_iter, callback, known :
        The optimiser calling shape (module docstring). ``known`` samples are written into
        ``iSTFT(V)`` before the consistency term, so they stay fixed.
    lr : float
        Adam's learning rate (on log-magnitudes and phases, so in nepers and radians); 0.1
        measured better than 0.03 and as good as 0.3.
    warmup : int
        Iterations over which the rate rises linearly from ``lr / warmup`` to ``lr``; it damps
        Adam's first, sign-sized steps that otherwise make the start worse.
    weights : (float, float)
        ``(w_c, w_m)``.
    mel_domain : {"log", "linear"}
        ``log`` measured better.
    squared : bool
        Unsquared norms measured better.
    floor : float
        Relative floor of the log mel.

    Returns
    -------
    torch.Tensor [shape=(B, samples)]
        ``iSTFT(V)`` of the lowest-loss ``V`` seen.
    """
    _check_common(mel, config, start, n_iter, known)
    check_positive("lr", lr)
    check(isinstance(warmup, int) and warmup >= 1, f"warmup={warmup!r} must be an integer >= 1")
    check(
        len(weights) == 2
        and all(isinstance(w, (int, float)) and w >= 0 for w in weights)
        and sum(weights) > 0,
        f"weights={weights!r} must be two numbers >= 0, not both zero",
    )
    check(mel_domain in ("log", "linear"), f"mel_domain={mel_domain!r} must be 'log' or 'linear'")
    held = Boundary(known, config.hop_length)
    x0, best, tiny = held.hold(start.detach()), Reporter(None, 0), torch.finfo(start.dtype).tiny
    obj = MelObjective(mel, config, x0.shape[-1], floor=floor, dtype=x0.dtype, device=x0.device)
    with torch.enable_grad():
        v0 = obj.ops.analysis(x0)
        loss_of = _StftLoss(obj, held, v0, weights, mel_domain, squared)
        mag0 = v0.abs()
        a = torch.log(mag0 + 1e-6 * mag0.amax(dim=(1, 2), keepdim=True) + tiny).detach().requires_grad_(True)
        phi = torch.angle(v0).detach().requires_grad_(True)
        opt = torch.optim.Adam([a, phi], lr=lr)
        for i in range(n_iter + 1):
            x, loss = loss_of(a, phi)
            if _report(best, callback, i, x0 if i == 0 else x, loss) or i == n_iter:  # 0: the start itself
                break
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (i + 1) / warmup)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
    return best.best


class _StftLoss:
    """``stft_gd``'s loss of a free STFT ``exp(a) exp(i phi)``: ``(waveform, loss (B,))``."""

    def __init__(
        self,
        obj: MelObjective,
        held: Boundary,
        v0: torch.Tensor,
        weights: tuple[float, float],
        mel_domain: str,
        squared: bool,
    ):
        tiny = torch.finfo(v0.real.dtype).tiny
        self.obj, self.held, self.mel_domain, self.squared = obj, held, mel_domain, squared
        self.w_c, self.w_m = float(weights[0]), float(weights[1])
        self.v_norm = torch.linalg.vector_norm(v0, dim=(1, 2)).clamp_min(tiny)
        self.m_norm = torch.linalg.vector_norm(obj.target, dim=(1, 2)).clamp_min(tiny)
        self.n_mel = obj.target.shape[1] * obj.target.shape[2]

    def __call__(self, a: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obj, ops = self.obj, self.obj.ops
        mag = torch.exp(a)
        v = torch.polar(mag, phi)
        x = self.held.hold(ops.synthesis(v))
        resid = ops.analysis(x) - v
        cons = torch.linalg.vector_norm(resid, dim=(1, 2)) / self.v_norm
        est = obj.magnitude_mel(obj.op.mel_frames_of(mag, dim=1))
        if self.mel_domain == "log":
            fit = torch.linalg.vector_norm(obj.log_error(est), dim=(1, 2)) / math.sqrt(self.n_mel)
        else:
            fit = torch.linalg.vector_norm(est - obj.target, dim=(1, 2)) / self.m_norm
        if self.squared:
            cons, fit = cons.square(), fit.square()
        return x, self.w_c * cons + self.w_m * fit


# ---------------------------------------------------------------------- joint (ADMM)


def joint(
    mel: torch.Tensor,
    config: MelConfig,
    start: torch.Tensor,
    *,
    n_iter: int,
    callback: Callback | None = None,
    known: torch.Tensor | None = None,
    rho: float = 0.1,
    lam: float = 100.0,
    floor: float = DEFAULT_FLOOR,
) -> torch.Tensor:
    """Joint magnitude and phase estimation by ADMM (after Masuyama, Ueno & Ono, 2025).

    The problem, with ``F`` the filterbank, ``M`` the target mel and ``C`` the set of
    consistent spectrograms::

        min  1/2 || |X| - Y ||^2 + lam'/2 || F W - M ||^2   s.t.  Z = X, W = Y, Z in C, Y >= 0

    ``lam' = lam / ||F||_2^2`` makes ``lam`` independent of the filterbank's normalisation.
    Scaled ADMM with penalty ``rho`` and duals ``U`` (for ``X - Z``) and ``R`` (for ``Y - W``),
    one pass per iteration:

    1. ``(X, Y)``, separable per bin: with ``A = Z - U``, ``a = |A|``, ``b = W - R``, the
       minimiser of ``1/2 (r - y)^2 + rho/2 (r - a)^2 + rho/2 (y - b)^2`` is
       ``r, y = (a + b)/2 +- rho (a - b) / (2 (2 + rho))`` (and ``y = 0``,
       ``r = rho a / (1 + rho)`` where that ``y`` is negative); ``X = r A / |A|``.
    2. ``Z = STFT(iSTFT(X + U))`` (the projection onto ``C``) and
       ``W = (rho I + lam' F^T F)^-1 (lam' F^T M + rho (Y + R))`` per frame (Woodbury, an
       ``n_mels x n_mels`` inverse computed once).
    3. ``U += X - Z``, ``R += Y - W``.

    The estimate is ``iSTFT(Z)``; the loss reported (and used to keep the best estimate) is
    the waveform's log-mel loss (:func:`mel_loss`).

    Parameters
    ----------
    mel, config, start, n_iter, callback, known :
        The optimiser calling shape (module docstring); ``start``'s STFT initialises
        ``X = Z``, ``Y = W = |X|``.
    rho : float
        ADMM penalty (> 0); measured 0.03 to 1.
    lam : float
        Weight of the mel fit relative to the magnitude-phase coupling (> 0); measured 10 to
        1000.
    floor : float
        Relative floor of the reported log-mel loss.

    Returns
    -------
    torch.Tensor [shape=(B, samples)]
    """
    _check_common(mel, config, start, n_iter, known)
    check(
        config.power == 1,
        f"joint needs a magnitude mel (power=1), this config has power={config.power:g}; "
        "use wave_lbfgs or stft_gd",
    )
    check_positive("rho", rho)
    check_positive("lam", lam)
    held = Boundary(known, config.hop_length)
    x0 = held.hold(start.detach())
    best = Reporter(None, 0)
    obj = MelObjective(mel, config, x0.shape[-1], floor=floor, dtype=x0.dtype, device=x0.device)
    admm = _Admm(obj, held, rho, lam, obj.ops.analysis(x0))
    if _report(best, callback, 0, x0, _wave_loss_of(obj, admm.z)) or n_iter == 0:
        return best.best
    for i in range(1, n_iter + 1):
        x_est = admm.step()
        if _report(best, callback, i, x_est, _wave_loss_of(obj, admm.z)):
            break
    return best.best


class _Admm:
    """The state of :func:`joint`'s ADMM and one pass of its three updates."""

    def __init__(self, obj: MelObjective, held: Boundary, rho: float, lam: float, z: torch.Tensor):
        self.obj, self.held, self.rho = obj, held, rho
        dtype, device = z.real.dtype, z.device
        if obj.config.drop_last_frame:  # the STFT has one frame more than the mel: leave it free
            t = obj.target
            target = torch.cat([t, t.new_zeros(t.shape[0], 1, t.shape[2])], 1)
            mel_w = torch.ones(target.shape[1], 1, dtype=dtype, device=device)
            mel_w[-1] = 0.0
        else:
            target, mel_w = obj.target, None
        fb = obj.fb  # (M, F') on the covered bins
        self.lam_s = float(lam) / float(torch.linalg.matrix_norm(fb.double(), ord=2)) ** 2
        eye = torch.eye(fb.shape[0], dtype=fb.dtype, device=fb.device)
        self.kinv = torch.linalg.inv(rho * eye + self.lam_s * fb @ fb.T)  # (M, M)
        self.ft_m = self.lam_s * (target @ fb)  # (B, T, F'): lam' F^T M per frame
        if mel_w is not None:
            self.ft_m = self.ft_m * mel_w
        self.z = z
        self.u = torch.zeros_like(z)
        self.w = power(z).sqrt_()
        self.r_dual = torch.zeros_like(self.w)
        self.c = rho / (2.0 * (2.0 + rho))

    def step(self) -> torch.Tensor:
        """One ADMM pass; returns the waveform ``iSTFT(Z)`` (held to the boundary)."""
        obj, rho, tiny = self.obj, self.rho, torch.finfo(self.w.dtype).tiny
        lo, hi, fb = obj.lo, obj.hi, obj.fb
        # 1. (X, Y): per bin, closed form
        a_spec = self.z - self.u
        a = power(a_spec).sqrt_()
        bb = self.w - self.r_dual
        mean = 0.5 * (a + bb)
        diff = self.c * (a - bb)
        r = mean + diff
        y = mean - diff
        r = torch.where(y < 0, rho * a / (1.0 + rho), r)
        y = y.clamp_min(0.0)
        xs = a_spec * (r / a.clamp_min(tiny))
        # 2. Z: consistency projection; W: mel fit (Woodbury)
        x_est = self.held.hold(obj.ops.synthesis(xs + self.u))
        self.z = obj.ops.analysis(x_est)
        q = rho * (y + self.r_dual)
        qb = self.ft_m + q[..., lo:hi]
        corr = ((qb @ fb.T) @ self.kinv) @ fb  # F^T K F q, frames first
        w = q / rho
        w[..., lo:hi] = (qb - self.lam_s * corr) / rho
        self.w = w
        # 3. duals
        self.u = self.u + xs - self.z
        self.r_dual = self.r_dual + y - w
        return x_est


# ---------------------------------------------------------------------- stages


def _refine_stage(optimizer: Callable[..., torch.Tensor]) -> Callable[..., State]:
    """A stage-3 stage: ``State.audio`` -> a better ``State.audio`` against the block's mel,
    holding the block's boundary. The optimiser's iteration 0 (its start) is offered to the
    best estimate but not counted as an iteration."""

    def run(state: State, ctx: Context, *, iters: int, **params: object) -> State:
        def report(i: int, x: torch.Tensor, loss: torch.Tensor) -> bool:
            if i == 0:
                ctx.progress.observe(x, loss)
                return False
            return ctx.progress.step(i - 1, x, loss)

        held = ctx.boundary.held if ctx.boundary is not None else None
        audio = optimizer(
            state.mel, ctx.config, ctx.waveform(state), n_iter=iters, callback=report, known=held, **params
        )
        return state.replace(audio=audio)

    run.__name__ = run.__qualname__ = f"{optimizer.__name__}_stage"
    return run


registry.register(
    "wave_lbfgs",
    "refine",
    _refine_stage(wave_lbfgs),
    params={"iters": 100, "init": "start", "seed": 0, "loss": "log", "floor": DEFAULT_FLOOR, "history": 10},
    description="L-BFGS on the waveform against the log mel (Decorsiere et al. 2015)",
)
registry.register_alias(
    "wave_lbfgs_noise",
    "wave_lbfgs",
    {"init": "noise"},
    "wave_lbfgs from noise (std 1e-6), as in Decorsiere et al. 2015: slow",
)
registry.register(
    "stft_gd",
    "refine",
    _refine_stage(stft_gd),
    params={
        "iters": 100,
        "lr": 0.1,
        "warmup": 20,
        "weights": (0.5, 0.5),
        "mel_domain": "log",
        "squared": False,
        "floor": 1e-3,
    },
    description="Adam on a free STFT: consistency + log-mel fit",
)
registry.register(
    "joint",
    "refine",
    _refine_stage(joint),
    params={"iters": 100, "rho": 0.1, "lam": 100.0, "floor": DEFAULT_FLOOR},
    description="ADMM on magnitude and phase together (Masuyama et al. 2025); power-1 mels",
)

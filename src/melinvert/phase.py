"""Stage 2 of the cascade: STFT magnitude -> waveform (phase retrieval).

Initial phases: ``random`` (seeded), ``zero`` and ``pghi`` (phase-gradient heuristic
integration after Prusa, Balazs & Sondergaard 2017: frame by frame, each spectral peak
continues its bin's phase of the previous frame and the other bins follow their peak along
frequency, a recursion solved for all frames at once by pointer jumping). Each takes the
known phases of a long input's previous block (``anchor``) for its first frames.

Iterative algorithms: ``gla`` (Griffin & Lim 1984), ``fgla`` (Perraudin, Balazs &
Sondergaard 2013) and ``agla`` (Nenov, Nguyen & Balazs 2023), all on one precomputed
STFT/iSTFT pair (:class:`FrameOps`) in a ``(batch, frames, n_freqs)`` layout, without autograd.

Shapes: magnitudes ``(B, T, F)`` inside this module (the pipeline transposes once), complex
spectra ``(B, T, F)``, audio ``(B, samples)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import registry
from .config import MelConfig
from .dsp import FrameOps
from .operator import mel_operator
from .stage import Context, State

#: Callback shape: ``callback(iteration, estimate (..., samples), loss (...)) -> stop?``.
Callback = Callable[[int, torch.Tensor, torch.Tensor], bool | None]

#: Gaussian-equivalent time-frequency ratio of each window, times ``win_length ** 2``
#: (Prusa et al. 2017, Table I; LTFAT ``pghi``).
PGHI_GAMMA = {"hann": 0.25645, "hamming": 0.29794, "blackman": 0.17954, "rect": 0.25645}


def power(spec: torch.Tensor) -> torch.Tensor:
    """``|spec|^2`` of a complex tensor, real (faster on CPU than ``spec.abs()``)."""
    r = torch.view_as_real(spec)
    q = r * r
    return q[..., 0] + q[..., 1]


def project_magnitude(spec: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """``mag * spec / |spec|``: the phase of ``spec`` with magnitude ``mag`` (zero stays zero)."""
    gain = power(spec).clamp_min_(torch.finfo(mag.dtype).tiny).rsqrt_().mul_(mag)
    return spec * gain


def momentum(
    new: torch.Tensor,
    old: torch.Tensor,
    weight: float | torch.Tensor,
    *,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``old + weight * (new - old)`` for complex tensors (on their real views: much faster),
    into ``out`` when given (which may be ``new`` or ``old`` itself, not a part of either).
    ``weight`` is a number or a real tensor that broadcasts over the real views
    (``(B, 1, 1, 1)``: one per item)."""
    res = torch.lerp(
        torch.view_as_real(old),
        torch.view_as_real(new),
        weight,
        out=None if out is None else torch.view_as_real(out),
    )
    return torch.view_as_complex(res)


def spectral_convergence(spec: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """``|| |spec| - mag ||_F / ||mag||_F`` per batch item, shape ``(B,)``."""
    num = torch.linalg.vector_norm(power(spec).sqrt_() - mag, dim=(-2, -1))
    den = torch.linalg.vector_norm(mag, dim=(-2, -1)).clamp_min(torch.finfo(mag.dtype).tiny)
    return num / den


# ---------------------------------------------------------------------- initial phase


def _anchored(angles: torch.Tensor, anchor: torch.Tensor | None) -> torch.Tensor:
    """``angles`` with its first frames replaced by ``anchor`` ``(B, n, F)`` (if given)."""
    if anchor is not None:
        angles[:, : anchor.shape[1]] = anchor
    return angles


def init_random(
    mag: torch.Tensor,
    config: MelConfig,
    *,
    generator: torch.Generator | None = None,
    anchor: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uniform random phase in [0, 2 pi); returns angles ``(B, T, F)``.

    Drawn in float64 on the CPU and cast, the same stream for every batch item, so a seed
    gives the same phases in float32 and float64, alone or in a batch. Every initial phase
    takes ``anchor`` ``(B, n, F)``, the known phases of the first ``n`` frames (a long input's
    previous block: :meth:`melinvert.dsp.FrameOps.known_angles`), for those frames.
    """
    state = generator.get_state() if generator is not None else None
    g = torch.Generator()
    if state is not None:
        g.set_state(state)
    else:
        g.seed()
    u = torch.rand(mag.shape[-2:], generator=g, dtype=torch.float64)
    if generator is not None:  # advance the caller's generator as one draw would
        torch.rand(mag.shape[-2:], generator=generator, dtype=torch.float64)
    angles = (2 * math.pi * u).to(dtype=mag.dtype, device=mag.device).expand(mag.shape).contiguous()
    return _anchored(angles, anchor)


def init_zero(
    mag: torch.Tensor,
    config: MelConfig,
    *,
    generator: torch.Generator | None = None,
    anchor: torch.Tensor | None = None,
) -> torch.Tensor:
    """All-zero phase (``anchor``'s frames excepted); returns angles."""
    return _anchored(torch.zeros_like(mag), anchor)


def init_pghi(
    mag: torch.Tensor,
    config: MelConfig,
    *,
    generator: torch.Generator | None = None,
    anchor: torch.Tensor | None = None,
    floor_db: float = -100.0,
) -> torch.Tensor:
    """Phase from the magnitude's gradients (PGHI); returns angles ``(B, T, F)``.

    For a Gaussian-like window of time-frequency ratio ``lam`` (``PGHI_GAMMA * win_length^2``,
    samples^2), hop ``a`` and FFT size ``M``, the phase of the window-centred STFT obeys

    - along time, per frame:      ``2 pi a m / M + (a M / lam) d/dm log|X|``
    - along frequency, per bin:   ``-(lam / (a M)) d/dn log|X|``

    Frame by frame, as the heap integration of Prusa, Balazs & Sondergaard (2017) does in
    effect on speech: every spectral peak continues, by the trapezoidal rule along time, the
    phase its bin had in the previous frame, and every other bin takes the phase of the peak
    it belongs to (peaks split at the valleys between them) plus the frequency integral from
    that peak. So a ridge that moves across bins (a pitch glide's upper harmonics) is followed:
    its new peak bin got its phase from the ridge in the previous frame. The recursion over
    frames is solved by pointer jumping (``ceil(log2 T)`` vectorised steps, no loop over
    frames). The result is converted to the frame-start phase convention of
    :func:`melinvert.dsp.stft`. With ``anchor`` (the known phases of the first ``n`` frames)
    those frames keep them and the recursion continues from the last of them.
    """
    f = mag.shape[-1]
    a, m_fft = config.hop_length, config.n_fft
    lam = PGHI_GAMMA[config.window] * config.win_length**2
    peak = mag.amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(mag.dtype).tiny)
    logs = torch.log(torch.maximum(mag, peak * 10.0 ** (floor_db / 20.0)))

    bins = torch.arange(f, dtype=mag.dtype, device=mag.device)
    phi_t = 2 * math.pi * a * bins / m_fft + (a * m_fft / lam) * _deriv(logs, 2)  # per frame
    phi_f = -(lam / (a * m_fft)) * _deriv(logs, 1)  # per bin
    del logs  # (the arrays no longer needed are let go as soon as they are: fewer fresh pages)
    # frequency integral within each frame, and each bin's phase relative to its peak's
    psi_f = torch.cumsum(
        torch.cat([torch.zeros_like(phi_f[..., :1]), 0.5 * (phi_f[..., 1:] + phi_f[..., :-1])], 2), 2
    )
    del phi_f
    owner = _peak_owner(mag)  # (B, T, F)
    rel = psi_f.sub_(torch.gather(psi_f, 2, owner))
    # phase(n, k) = psi(n, owner(n, k)) + rel(n, k), where psi(n, p) = phase(n - 1, p) + the
    # time step = psi(n - 1, owner(n - 1, p)) + inc(n, p): a sum along a chain of bins through
    # the frames, which pointer jumping adds up: after the step of size s, (val, ptr)(n, p)
    # hold the sum over the last 2s links and the bin the chain has reached 2s frames back
    t = mag.shape[1]
    centre = 2 * math.pi * bins * (m_fft // 2) / m_fft  # frame-start -> window-centred phase
    val = torch.zeros_like(mag)
    val[:, 1:] = rel[:, :-1] + 0.5 * (phi_t[:, 1:] + phi_t[:, :-1])
    n0 = 0 if anchor is None else min(anchor.shape[1], t)
    if 0 < n0 < t:  # chains end at frame n0 - 1, whose phase is the anchor's
        val[:, n0] = anchor[:, n0 - 1] + centre + 0.5 * (phi_t[:, n0] + phi_t[:, n0 - 1])
        val[:, :n0] = 0.0
    del phi_t
    phase = _peak_chain_sums(val, owner).add_(rel)
    # window-centred -> frame-start convention: the window's centre sits at n_fft // 2 of
    # each frame (also when win_length < n_fft), so X = exp(-2 pi i m (n_fft // 2) / n_fft) Y
    return _anchored(phase - centre, anchor[:, :n0] if n0 else None)


def _deriv(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Central differences along ``dim`` (one-sided at the ends), zero for fewer than 2 points."""
    n = x.shape[dim]
    if n < 2:
        return torch.zeros_like(x)
    d = torch.empty_like(x)
    if n > 2:
        d.narrow(dim, 1, n - 2).copy_((x.narrow(dim, 2, n - 2) - x.narrow(dim, 0, n - 2)) * 0.5)
    d.narrow(dim, 0, 1).copy_(x.narrow(dim, 1, 1) - x.narrow(dim, 0, 1))
    d.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1) - x.narrow(dim, n - 2, 1))
    return d


def _peak_chain_sums(val: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Each bin's sum along the chain of its peak ``(B, T, F)``: :func:`_chain_sums` of ``val``
    with ``ptr(n, p) = owner(n - 1, p)``, read at ``owner``.

    A chain runs through peaks alone (every pointer is an owner, and owners are peaks), so the
    sums run on the peaks of each frame packed to its front (speech: ~130 of 513 bins, at most
    ~190): the same additions in the same order as on every bin, a third of the work.
    """
    b, t, f = owner.shape
    bins = torch.arange(f, device=owner.device)
    is_peak = owner == bins  # a peak owns itself, any other bin another
    rank = is_peak.cumsum(-1).sub_(1)  # a peak's place among its frame's peaks (-1 before the first)
    k = int(rank[..., -1].max()) + 1  # the most peaks of a frame (each frame has one at least)
    place = torch.gather(rank, 2, owner)  # (B, T, F): the place of each bin's peak
    peaks = torch.zeros(b, t, k, dtype=owner.dtype, device=owner.device)  # the bin of each place
    peaks.scatter_reduce_(2, rank.clamp_(min=0), is_peak * bins, reduce="amax")  # (0 past the last)
    del rank, is_peak
    packed = torch.gather(val, 2, peaks)
    ptr = torch.zeros_like(peaks)
    ptr[:, 1:] = torch.gather(place[:, :-1], 2, peaks[:, 1:])
    _chain_sums(packed, ptr)
    return torch.gather(packed, 2, place)


def _chain_sums(val: torch.Tensor, ptr: torch.Tensor) -> None:
    """Pointer jumping, in place: ``val[:, n, p]`` becomes the sum of the increments along the
    chain of bins that ends at ``(n, p)`` (``ptr[:, n, p]``: the bin it came from at ``n - 1``).

    After the step of size ``s``, ``(val, ptr)(n, p)`` hold the sum over the last ``2 s`` links
    and the bin the chain has reached ``2 s`` frames back; ``ceil(log2 T)`` steps (the last one
    leaves ``ptr`` as it was: nothing reads it after). Angles are
    kept modulo 2 pi, so float32 keeps ~1e-6 rad where raw sums over minutes of frames would
    keep ~0.1.
    """
    t = val.shape[1]
    _wrap_(val)
    s = 1
    while s < t:
        hop_val = torch.gather(val[:, :-s], 2, ptr[:, s:])
        if 2 * s < t:  # the last step's pointers would not be read
            ptr[:, s:] = torch.gather(ptr[:, :-s], 2, ptr[:, s:])
        tail = val[:, s:]
        _wrap_(tail.add_(hop_val))
        del hop_val
        s *= 2


def _wrap_(x: torch.Tensor) -> None:
    """``x - 2 pi round(x / 2 pi)``, in place, with one temporary."""
    two_pi = 2 * math.pi
    x.sub_(torch.div(x, two_pi).round_().mul_(two_pi))


def _peak_owner(mag: torch.Tensor) -> torch.Tensor:
    """Index of the spectral peak each bin belongs to, ``(B, T, F)`` int64, on mag's device.

    Peaks are local maxima along frequency; a bin belongs to the nearest peak on its side of
    the valley (local minimum) between two peaks. The valleys cut each frame into segments,
    each holding one peak (a plateau's last bin is its peak): the segment of a bin is the count
    of valleys up to it (one ``cumsum``), and a segment's peak is found by one
    ``scatter_reduce`` (max of the peak indices in it) and handed to its bins by one
    ``gather``. A frame with no valley (silence) is one segment owned by its last bin.
    """
    m = mag.detach()
    f = m.shape[-1]
    left = F.pad(m[..., :-1], (1, 0), value=-1.0)
    right = F.pad(m[..., 1:], (0, 1), value=-1.0)
    is_peak = (m >= left) & (m > right)
    seg = ((m < left) & (m <= right)).cumsum(-1)  # (B, T, F) int64: valleys open segments
    del left, right
    top = torch.zeros_like(seg)  # segment -> its peak: the largest of the segment's values of
    # (index if a peak else 0), the peak's index as every segment holds one (also at bin 0)
    top.scatter_reduce_(-1, seg, is_peak * torch.arange(f, device=m.device), reduce="amax")
    return top.gather(-1, seg)


# ---------------------------------------------------------------------- iterations


class MelRefit:
    """Re-fit the target magnitude to the mel after each consistency projection.

    The mel fixes only band energies; the fine structure inside each band (harmonics) is
    what the mel blurred. Given the current consistent spectrum ``c``, this returns the
    magnitude ``|c|`` rescaled band by band so that its mel matches the target mel again
    (one multiplicative NNLS step: ``P <- P * (fb^T_n (mel / (fb P)))`` with ``P = |c|^power``
    and ``fb^T_n`` the transpose normalised so each bin's weights sum to one). Griffin-Lim then
    keeps the harmonic structure that consistency builds, instead of forcing the blurred
    magnitude back at every step.

    Parameters
    ----------
    mel : torch.Tensor [shape=(B, T, n_mels)]
        Target LINEAR mel, frames first (``T`` STFT frames).
    config : MelConfig
    """

    def __init__(self, mel: torch.Tensor, config: MelConfig):
        op = mel_operator(config, dtype=mel.dtype, device=mel.device)
        self.op = op
        self.lo, self.hi = op.lo, op.hi
        self.power = config.power
        self.mel = mel
        self.tiny = 1e-8 * float(mel.amax()) + torch.finfo(mel.dtype).tiny
        self._log_target: torch.Tensor | None = None
        self._est: torch.Tensor | None = None

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` complex -> the new target magnitude ``(B, T, F)`` (zero outside the filters)."""
        p = power(spec[..., self.lo : self.hi])  # |c|^2 on the covered bins
        if self.power == 2:
            pw = p
        elif self.power == 1:
            pw = p.sqrt_()
        else:
            pw = p.pow_(self.power / 2)
        est = self.op.cover_mel_frames_first(pw)  # (B, T, M)
        self._est = est
        gain = self.op.spread_frames_first(self._ratio(self.mel / est.clamp_min(self.tiny)))  # (B, T, F')
        band = pw.mul_(gain)
        if self.power != 1:
            band = band.pow_(1.0 / self.power)
        out = spec.real.new_empty(spec.shape)
        out[..., : self.lo] = 0.0
        out[..., self.hi :] = 0.0
        out[..., self.lo : self.hi] = band
        return out

    def _ratio(self, ratio: torch.Tensor) -> torch.Tensor:
        """The band gains applied for ``mel / est`` ``(B, T, n_mels)``: the ratio itself here
        (a subclass may temper it)."""
        return ratio

    def loss(self) -> torch.Tensor:
        """Mean absolute log-mel difference ``(B,)`` of the last spectrum seen by :meth:`__call__`."""
        if self._log_target is None:
            self._log_target = torch.log(self.mel + self.tiny)
        assert self._est is not None
        return self.op.log_error(self._est, self._log_target, self.tiny).abs().mean(dim=(-2, -1))


def iteration_loss(refit: MelRefit | None, z: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """The loss the callback sees: log-mel L1 with a refit, else spectral convergence."""
    return refit.loss() if refit is not None else spectral_convergence(z, mag)


def _consistent(
    ops: FrameOps,
    spec: torch.Tensor,
    mag: torch.Tensor,
    refit: MelRefit | None,
    callback: Callback | None,
    i: int,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The step every Griffin-Lim variant shares: the consistent spectrum nearest ``spec``
    (``STFT(iSTFT(spec))``), the magnitude target re-fitted to the mel (with ``refit``), and the
    callback told iteration ``i``. Returns ``(consistent spectrum, magnitude, stop?)``."""
    x, z = ops.consistent(spec)
    if refit is not None:
        mag = refit(z)
    stop = callback is not None and bool(callback(i, x, iteration_loss(refit, z, mag)))
    return z, mag, stop


def gla(
    mag: torch.Tensor,
    ops: FrameOps,
    angles: torch.Tensor,
    *,
    n_iter: int,
    refit: MelRefit | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Griffin-Lim: alternate projections onto the magnitude set and consistent spectrograms.

    With ``refit``, the magnitude set follows the mel (:class:`MelRefit`). Returns the
    waveform ``(B, length)``.
    """
    spec = torch.polar(mag, angles)
    for i in range(n_iter):
        z, mag, stop = _consistent(ops, spec, mag, refit, callback, i)
        if stop:
            break
        spec = project_magnitude(z, mag)
    return ops.synthesis(spec)


def fgla(
    mag: torch.Tensor,
    ops: FrameOps,
    angles: torch.Tensor,
    *,
    n_iter: int,
    alpha: float = 0.99,
    refit: MelRefit | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Fast Griffin-Lim (Perraudin et al. 2013): ``c_n = P1(P2(t_{n-1}))``,
    ``t_n = c_n + alpha (c_n - c_{n-1})``; with ``refit``, ``P2`` follows the mel."""
    t = torch.polar(mag, angles)
    c_prev = t
    for i in range(n_iter):
        c, mag, stop = _consistent(ops, project_magnitude(t, mag), mag, refit, callback, i)
        if stop:
            break
        # c + alpha (c - c_prev), into t's memory once t no longer is c_prev's (fewer fresh pages)
        t = momentum(c, c_prev, 1.0 + alpha, out=None if t is c_prev else t)
        c_prev = c
    return ops.synthesis(project_magnitude(t, mag))


def agla(
    mag: torch.Tensor,
    ops: FrameOps,
    angles: torch.Tensor,
    *,
    n_iter: int,
    alpha: float | torch.Tensor = 0.99,
    beta: float | torch.Tensor = 1.1,
    gamma: float = 1.2,
    refit: MelRefit | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Accelerated Griffin-Lim (Nenov, Nguyen & Balazs 2023)::

    t_n = (1 - gamma) d_{n-1} + gamma P1(P2(c_{n-1}))
    c_n = t_n + alpha (t_n - t_{n-1})
    d_n = t_n + beta (t_n - t_{n-1})

    ``alpha`` and ``beta`` are numbers, or one per item ``(B,)``.
    """
    if isinstance(alpha, torch.Tensor):  # per item: weights over the spectra's real views
        alpha = alpha.to(mag.dtype).reshape(-1, 1, 1, 1)
    if isinstance(beta, torch.Tensor):
        beta = beta.to(mag.dtype).reshape(-1, 1, 1, 1)
    c = torch.polar(mag, angles)
    t_prev = c
    d = c
    for i in range(n_iter):
        z, mag, stop = _consistent(ops, project_magnitude(c, mag), mag, refit, callback, i)
        if stop:
            break
        # each new spectrum goes into the memory of one no longer needed (after the first
        # iteration, where c, d and t_prev are one tensor): a third of the pages, in cache
        t = momentum(z, d, gamma, out=z)
        first = c is t_prev
        c = momentum(t, t_prev, 1.0 + alpha, out=None if first else c)
        d = momentum(t, t_prev, 1.0 + beta, out=None if first else d)
        t_prev = t
    return ops.synthesis(project_magnitude(c, mag))


# ---------------------------------------------------------------------- stages


def _init_stage(fn: Callable[..., torch.Tensor]) -> Callable[..., State]:
    """An initial-phase stage: ``State.mag`` -> ``State.angles``, continuing a long input's
    previous block (the phases of the frames inside the held samples)."""

    def run(state: State, ctx: Context, **params: object) -> State:
        angles = fn(
            state.mag, ctx.config, generator=ctx.generator, anchor=ctx.frames.known_angles(), **params
        )
        return state.replace(angles=angles)

    run.__name__ = run.__qualname__ = f"{fn.__name__}_stage"
    return run


def _iterative_stage(algorithm: Callable[..., torch.Tensor]) -> Callable[..., State]:
    """A stage-2 stage: ``(State.mag, State.angles)`` -> ``State.audio`` by ``algorithm``, whose
    magnitude is re-fitted to the mel every iteration when ``refit`` (the ``m*`` names).

    Parameters named ``given_<p>`` (``agla``'s ``given_alpha``, ``given_beta``) replace ``<p>``
    for the items whose mel a ``mel`` stage left as given (``sharpen`` leaves a recording's mel
    alone): those items are fitted as mels of waveforms, the others as predicted mels. ``None``
    keeps ``<p>`` for every item.
    """

    def run(state: State, ctx: Context, *, iters: int, refit: bool = False, **params: object) -> State:
        if iters == 0:
            return state.replace(audio=ctx.frames.synthesis(torch.polar(state.mag, state.angles)))
        params = per_item_params(params, state.mel, ctx.target)
        fit = MelRefit(ctx.frames_first(state.mel), ctx.config) if refit else None
        audio = algorithm(
            state.mag, ctx.frames, state.angles, n_iter=iters, refit=fit, callback=ctx.progress, **params
        )
        return state.replace(audio=audio)

    run.__name__ = run.__qualname__ = f"{algorithm.__name__}_stage"
    return run


def per_item_params(params: dict[str, object], mel: torch.Tensor, given: torch.Tensor) -> dict[str, object]:
    """``params`` with each ``given_<p>`` resolved into ``<p>``: a number where every item's
    ``mel`` is ``given`` (or none is), else one value per item ``(B,)`` float64.

    ``mel`` ``(B, n_mels, frames)`` is the linear mel the plan fits (a ``mel`` stage's output),
    ``given`` the one it was given; an item counts as left as given where they are equal to the
    bit. A ``given_<p>`` of ``None`` is dropped.
    """
    out = {k: v for k, v in params.items() if not k.startswith("given_")}
    pairs = {k[len("given_") :]: v for k, v in params.items() if k.startswith("given_") and v is not None}
    if not pairs:
        return out
    if mel.shape != given.shape:  # a mel stage that reshaped the mel left nothing as given
        return out
    kept = (mel == given).flatten(1).all(dim=1)  # (B,): the mel stage left the item as given
    flags = kept.tolist()
    for name, value in pairs.items():
        if all(flags):
            out[name] = value
        elif any(flags):
            values = [value if k else out[name] for k in flags]
            out[name] = torch.tensor(values, dtype=torch.float64, device=mel.device)
    return out


_PGHI_DESC = "phase gradient heuristic integration (Prusa et al. 2017), following ridges frame by frame"
registry.register("random", "init", _init_stage(init_random), description="uniform random phase (seeded)")
registry.register("zero", "init", _init_stage(init_zero), description="zero phase")
registry.register("pghi", "init", _init_stage(init_pghi), params={"floor_db": -100.0}, description=_PGHI_DESC)

registry.register(
    "gla",
    "phase",
    _iterative_stage(gla),
    params={"iters": 32, "refit": False},
    description="Griffin-Lim (1984) on the stage-1 magnitude",
)
registry.register(
    "fgla",
    "phase",
    _iterative_stage(fgla),
    params={"iters": 32, "refit": False, "alpha": 0.99},
    description="fast Griffin-Lim, momentum 0.99 (Perraudin et al. 2013)",
)
registry.register(
    "agla",
    "phase",
    _iterative_stage(agla),
    params={
        "iters": 32,
        "refit": False,
        "alpha": 0.99,
        "beta": 1.1,
        "gamma": 1.2,
        "given_alpha": None,
        "given_beta": None,
    },
    description="accelerated Griffin-Lim (Nenov et al. 2023); given_alpha/given_beta: the momentum "
    "for items whose mel a mel stage left as given",
)
registry.register_alias(
    "mgla", "gla", {"refit": True}, "Griffin-Lim whose magnitude is re-fitted to the mel every iteration"
)
registry.register_alias(
    "mfgla",
    "fgla",
    {"refit": True},
    "fast Griffin-Lim with the magnitude re-fitted to the mel every iteration",
)
registry.register_alias(
    "magla", "agla", {"refit": True}, "accelerated Griffin-Lim with the magnitude re-fitted to the mel"
)

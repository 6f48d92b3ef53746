"""Stage 2, |STFT| -> waveform (melinvert.phase), on synthesised signals with fixed seeds.

References: the papers' definitions. Griffin & Lim (1984): the spectral convergence of GLA
never rises. Perraudin et al. (2013) and Nenov et al. (2023): FGLA and AGLA beat GLA at equal
iterations. Prusa et al. (2017): the phase-gradient heuristic recovers a sinusoid's and a
linear chirp's phase from the true magnitude (a heap-integration reference written here,
:func:`heap_pghi`, shows what the method achieves). Also MelRefit (the mel of its magnitude
matches the target, zero outside [fmin, fmax]), callbacks, batching and float32/float64.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from helpers import harmonic_noise, plain_methods

import melinvert
from melinvert import MelConfig, dsp, phase

_, INIT, PHASE, _ = plain_methods()

pytestmark = pytest.mark.usefixtures("one_thread")

ALGORITHMS = ("gla", "fgla", "agla")
#: the six iterative methods defined in phase.py (the registry may hold learned ones too)
ITERATIVE = ("gla", "fgla", "agla", "mgla", "mfgla", "magla")

C16 = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=64)
HIFIGAN = melinvert.get_preset("hifigan-22k-80")
#: framing conventions for the GLA monotonicity check (padding, windows, short windows)
GLA_CONFIGS = {
    "center-reflect": C16,
    "half-overlap": HIFIGAN,
    "none-hamming": MelConfig(sample_rate=16000, n_fft=512, hop_length=128, window="hamming", padding="none"),
    "short-blackman": MelConfig(
        sample_rate=16000, n_fft=512, hop_length=100, win_length=300, window="blackman", n_mels=40
    ),
    "whisper": melinvert.get_preset("whisper-16k-80"),
}


def chirp(sr: int, seconds: float, f0: float, f1: float) -> np.ndarray:
    t = np.arange(round(sr * seconds)) / sr
    return 0.5 * scipy.signal.chirp(t, f0, t[-1], f1, method="linear")


def true_stft(x: np.ndarray, c: MelConfig, dtype: torch.dtype = torch.float64):
    """``(ops, spec)``: the FrameOps for ``x`` and its STFT ``(B, T, F)``."""
    xt = torch.as_tensor(np.atleast_2d(x), dtype=dtype)
    ops = dsp.FrameOps(c, xt.shape[-1], dtype=dtype, device="cpu")
    return ops, ops.analysis(xt)


def sc_np(spec: np.ndarray, mag: np.ndarray) -> float:
    """Spectral convergence ``|| |spec| - mag ||_F / ||mag||_F`` in numpy."""
    return float(np.linalg.norm(np.abs(spec) - mag) / np.linalg.norm(mag))


def sc_of_phase(c: MelConfig, x: np.ndarray, angles: torch.Tensor | None = None, init: str = "pghi") -> float:
    """SC of the consistent spectrum made from the TRUE magnitude and some phase (no iterations)."""
    ops, spec = true_stft(x, c)
    mag = spec.abs()
    if angles is None:
        angles = INIT[init](mag, c, generator=torch.Generator().manual_seed(0))
    y = ops.synthesis(torch.polar(mag, angles))
    return sc_np(ops.analysis(y).numpy(), mag.numpy())


def heap_pghi(mag: np.ndarray, c: MelConfig, tol: float = 1e-5) -> np.ndarray:
    """Reference PGHI (Prusa, Balazs & Sondergaard 2017, Algorithm 1): heap integration.

    ``mag`` (T, F) -> angles (T, F) in melinvert's frame-start convention. The phase gradients
    are the paper's (window-centred, per hop and per bin); integration follows the largest
    coefficients first (a ridge is followed wherever it goes), coefficients below ``tol`` of
    the maximum get zero phase.
    """
    a, m_fft = c.hop_length, c.n_fft
    lam = phase.PGHI_GAMMA[c.window] * c.win_length**2
    logs = np.log(np.maximum(mag, mag.max() * 1e-10))
    bins = np.arange(mag.shape[1])
    phi_t = 2 * np.pi * a * bins / m_fft + (a * m_fft / lam) * np.gradient(logs, axis=1)
    phi_f = -(lam / (a * m_fft)) * np.gradient(logs, axis=0)
    out = np.zeros_like(mag)
    done = mag < tol * mag.max()
    n_t, n_f = mag.shape
    while not done.all():
        start = np.unravel_index(np.argmax(np.where(done, -1.0, mag)), mag.shape)
        done[start] = True
        heap = [(-mag[start], start)]
        while heap:
            _, (n, m) = heapq.heappop(heap)
            for dn, dm in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nn, mm = n + dn, m + dm
                if 0 <= nn < n_t and 0 <= mm < n_f and not done[nn, mm]:
                    grad = phi_t if dn else phi_f
                    out[nn, mm] = out[n, m] + (dn + dm) * 0.5 * (grad[n, m] + grad[nn, mm])
                    done[nn, mm] = True
                    heapq.heappush(heap, (-mag[nn, mm], (nn, mm)))
    return out - 2 * np.pi * bins * (m_fft // 2) / m_fft


# ---------------------------------------------------------------------- small pieces


def test_project_magnitude_and_spectral_convergence_formulas() -> None:
    rng = np.random.default_rng(0)
    spec = rng.standard_normal((2, 5, 9)) + 1j * rng.standard_normal((2, 5, 9))
    spec[0, 0, 0] = 0.0
    mag = rng.random((2, 5, 9))
    got = phase.project_magnitude(torch.from_numpy(spec), torch.from_numpy(mag)).numpy()
    nz = spec != 0
    np.testing.assert_allclose(got[nz], (mag * spec / np.where(nz, np.abs(spec), 1.0))[nz], rtol=1e-12)
    assert got[0, 0, 0] == 0  # zero stays zero
    sc = phase.spectral_convergence(torch.from_numpy(spec), torch.from_numpy(mag)).numpy()
    assert sc.shape == (2,)
    np.testing.assert_allclose(sc, [sc_np(spec[i], mag[i]) for i in range(2)], rtol=1e-12)


def test_init_random_is_seeded_and_in_range() -> None:
    mag = torch.ones(2, 40, 33, dtype=torch.float64)
    a = phase.init_random(mag, C16, generator=torch.Generator().manual_seed(5))
    b = phase.init_random(mag, C16, generator=torch.Generator().manual_seed(5))
    c = phase.init_random(mag, C16, generator=torch.Generator().manual_seed(6))
    assert a.shape == mag.shape and a.dtype == mag.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) < 2 * math.pi
    assert float(a.std()) == pytest.approx(2 * math.pi / math.sqrt(12), rel=0.05)  # uniform
    assert torch.equal(a[0], a[1])  # every batch item gets the stream it would get alone
    a32 = phase.init_random(mag.float(), C16, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a32, a.float())  # drawn in float64, then cast
    assert torch.equal(phase.init_zero(mag, C16), torch.zeros_like(mag))


# ---------------------------------------------------------------------- Griffin-Lim family


@pytest.mark.parametrize("name", list(GLA_CONFIGS))
def test_gla_spectral_convergence_never_rises(name: str) -> None:
    """Griffin & Lim (1984): alternating projections never increase the distance between the
    consistent estimate and the magnitude set; the callback's loss is that distance / ||mag||."""
    c = GLA_CONFIGS[name]
    ops, spec = true_stft(harmonic_noise(c.sample_rate, 0.3, seed=1), c)
    mag = spec.abs()
    angles = phase.init_random(mag, c, generator=torch.Generator().manual_seed(0))
    losses: list[float] = []
    phase.gla(mag, ops, angles, n_iter=40, callback=lambda i, x, loss: losses.append(float(loss[0])))
    assert len(losses) == 40
    steps = np.diff(losses)
    assert steps.max() <= 1e-12, f"SC rose by {steps.max():.3g} at iteration {int(steps.argmax()) + 1}"
    assert losses[-1] < 0.6 * losses[0]  # and it does fall


@pytest.mark.parametrize("c", [C16, HIFIGAN], ids=["16k-512", "hifigan"])
def test_fgla_and_agla_beat_gla(c: MelConfig) -> None:
    """Same magnitude, same random initial phase, 48 iterations each: the accelerated
    algorithms end with a clearly lower spectral convergence than plain GLA."""
    ops, spec = true_stft(harmonic_noise(c.sample_rate, 0.5), c)
    mag = spec.abs()
    angles = phase.init_random(mag, c, generator=torch.Generator().manual_seed(0))
    sc = {}
    for name in ALGORITHMS:
        y = PHASE[name][0](mag, ops, angles, n_iter=48)
        sc[name] = sc_np(ops.analysis(y).numpy(), mag.numpy())
    assert sc["fgla"] < 0.8 * sc["gla"], sc
    assert sc["agla"] < 0.8 * sc["gla"], sc


def _run(name: str, c: MelConfig, n_iter: int, callback, dtype: torch.dtype = torch.float64):
    x = np.stack([harmonic_noise(c.sample_rate, 0.25, seed=s, f0=f) for s, f in [(0, 140.0), (1, 210.0)]])
    ops, spec = true_stft(x, c, dtype)
    mag = spec.abs()
    fn, uses_refit = PHASE[name]
    refit = None
    if uses_refit:
        mel = (mag**c.power) @ dsp.mel_basis(c, dtype=dtype).T
        refit = phase.MelRefit(mel, c)
    # the same angles for both dtypes (init_random draws a different stream per dtype)
    angles = phase.init_random(mag.double(), c, generator=torch.Generator().manual_seed(0)).to(dtype)
    return fn(mag, ops, angles, n_iter=n_iter, refit=refit, callback=callback), x.shape


@pytest.mark.parametrize("name", ITERATIVE)
def test_callback_sees_every_iteration(name: str) -> None:
    seen: list[tuple[int, tuple, tuple, bool]] = []

    def cb(i: int, x: torch.Tensor, loss: torch.Tensor) -> None:
        seen.append((i, tuple(x.shape), tuple(loss.shape), bool(torch.isfinite(loss).all())))

    y, shape = _run(name, C16, 6, cb)
    assert [s[0] for s in seen] == list(range(6))
    assert all(s[1] == shape and s[2] == (2,) and s[3] for s in seen)
    assert y.shape == shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ITERATIVE)
def test_callback_can_stop(name: str) -> None:
    seen: list[int] = []

    def cb(i: int, x: torch.Tensor, loss: torch.Tensor) -> bool:
        seen.append(i)
        return i == 2

    y, shape = _run(name, C16, 10, cb)
    assert seen == [0, 1, 2]
    assert y.shape == shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ITERATIVE)
def test_batch_equals_stacked_singles(name: str) -> None:
    c = C16
    x = np.stack([harmonic_noise(c.sample_rate, 0.25, seed=s, f0=f) for s, f in [(0, 140.0), (1, 210.0)]])
    x[1] *= 20.0  # items far apart in level (MelRefit's floor must not couple them)
    ops, spec = true_stft(x, c)
    mag = spec.abs()
    mel = (mag**c.power) @ dsp.mel_basis(c, dtype=torch.float64).T
    angles = phase.init_random(mag, c, generator=torch.Generator().manual_seed(0))
    fn, uses_refit = PHASE[name]

    def run(sl: slice) -> torch.Tensor:
        refit = phase.MelRefit(mel[sl], c) if uses_refit else None
        return fn(mag[sl], ops, angles[sl], n_iter=10, refit=refit)

    batch = run(slice(None))
    singles = torch.cat([run(slice(i, i + 1)) for i in range(2)])
    torch.testing.assert_close(batch, singles, rtol=1e-9, atol=1e-12 * float(singles.abs().max()))


@pytest.mark.parametrize("name", ["fgla", "magla"])
def test_float32_agrees_with_float64(name: str) -> None:
    """The loss trajectory of 20 iterations agrees to 1e-4 absolute between dtypes (same
    angles): float32 FFT rounding (~1e-7 relative) is carried and slightly amplified by the
    phase updates (a division by |spec|, which is small in the valleys), so agreement is
    loose compared with float64 rounding, yet far below the losses themselves (~0.1 to 1)."""
    trajectories = {}
    for dtype in (torch.float32, torch.float64):
        losses: list[float] = []
        _run(name, C16, 20, lambda i, x, loss, out=losses: out.append(float(loss[0])), dtype)
        trajectories[dtype] = np.array(losses)
    np.testing.assert_allclose(trajectories[torch.float32], trajectories[torch.float64], rtol=0, atol=1e-4)


# ---------------------------------------------------------------------- PGHI


@pytest.mark.parametrize("init", ["pghi", "zero"])
def test_deterministic_inits_batch_equals_stacked_singles(init: str) -> None:
    x = np.stack([harmonic_noise(16000, 0.25, seed=s, f0=f) for s, f in [(0, 140.0), (1, 210.0)]])
    x[1] *= 20.0  # PGHI's floor is relative to each item's own peak
    _, spec = true_stft(x, C16)
    mag = spec.abs()
    fn = INIT[init]
    batch = fn(mag, C16)
    singles = torch.cat([fn(mag[i : i + 1], C16) for i in range(2)])
    torch.testing.assert_close(batch, singles, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "c", [C16, HIFIGAN, GLA_CONFIGS["short-blackman"]], ids=["16k-512", "hifigan", "short-blackman"]
)
def test_pghi_recovers_a_stationary_sinusoid(c: MelConfig) -> None:
    t = np.arange(c.sample_rate // 2) / c.sample_rate
    x = 0.5 * np.sin(2 * np.pi * 440.3 * t + 0.7)
    pghi, zero, rand = (sc_of_phase(c, x, init=i) for i in ("pghi", "zero", "random"))
    assert pghi < 0.25 * rand and pghi < 0.25 * zero, (pghi, zero, rand)


@pytest.mark.parametrize(
    "c", [C16, HIFIGAN, GLA_CONFIGS["short-blackman"]], ids=["16k-512", "hifigan", "short-blackman"]
)
def test_pghi_recovers_a_slow_linear_chirp(c: MelConfig) -> None:
    """440 -> 600 Hz in 0.5 s (320 Hz/s)."""
    x = chirp(c.sample_rate, 0.5, 440.0, 600.0)
    pghi, zero, rand = (sc_of_phase(c, x, init=i) for i in ("pghi", "zero", "random"))
    assert pghi < 0.5 * rand and pghi < 0.5 * zero, (pghi, zero, rand)


def test_pghi_phase_derivatives_match_the_true_stft() -> None:
    """On a sinusoid between bins, PGHI's phase advance per frame at the peak bin and its phase
    step between the bins around the peak equal the true STFT's (the frame-start convention)."""
    c = C16
    t = np.arange(c.sample_rate // 2) / c.sample_rate
    x = 0.5 * np.sin(2 * np.pi * 1010.0 * t + 0.3)  # bin 32.3
    _, spec = true_stft(x, c)
    ang = phase.init_pghi(spec.abs(), c)[0].numpy()
    true = spec.angle()[0].numpy()
    k = int(np.argmax(np.abs(spec[0, 10].numpy())))
    frames = slice(5, -5)  # away from the padded edges

    def wrap(d: np.ndarray) -> np.ndarray:
        return np.angle(np.exp(1j * d))

    along_time = wrap(np.diff(ang[frames, k]) - np.diff(true[frames, k]))
    assert np.abs(along_time).max() < 0.05
    across_bins = wrap(
        np.diff(ang[frames, k - 1 : k + 2], axis=1) - np.diff(true[frames, k - 1 : k + 2], axis=1)
    )
    assert np.abs(across_bins).max() < 0.05


def _owner_by_loops(m: np.ndarray) -> np.ndarray:
    """Reference for the peak owner of one frame: walk left and right from each bin."""
    f = len(m)
    lft = np.r_[-1.0, m[:-1]]
    rgt = np.r_[m[1:], -1.0]
    peak = (m >= lft) & (m > rgt)
    valley = (m < lft) & (m <= rgt)
    out = np.zeros(f, dtype=np.int64)
    for k in range(f):
        prev = next((j for j in range(k, -1, -1) if peak[j]), -1)
        nxt = next((j for j in range(k, f) if peak[j]), f)
        val = next((j for j in range(k, -1, -1) if valley[j]), -1)
        use_next = prev < 0 or (val > prev and nxt < f)
        out[k] = min(max(nxt if use_next else prev, 0), f - 1)
    return out


def test_peak_owner_agrees_with_a_loop_reference() -> None:
    """Every bin gets the peak a walk along the frame gives it, also with plateaus and ties
    (quantised values), a rising spectrum and one without any peak."""
    rng = np.random.default_rng(0)
    mags = [
        rng.random((2, 7, 40)),
        np.round(rng.random((2, 7, 40)) * 4) / 4,  # plateaus and ties
        np.tile(np.linspace(0.0, 1.0, 40), (1, 3, 1)),  # rising: the only peak is the last bin
        np.zeros((1, 2, 40)),
    ]
    for m in mags:
        t = torch.from_numpy(m)
        ref = np.stack([_owner_by_loops(row) for row in m.reshape(-1, m.shape[-1])]).reshape(m.shape)
        np.testing.assert_array_equal(phase._peak_owner(t).numpy(), ref)


def test_known_angles_are_the_phases_of_the_frames_inside_the_held_samples() -> None:
    """For every padding convention: the frames whose samples all lie among the held ones get
    the STFT phase of the whole signal, and no later frame is claimed."""
    rng = np.random.default_rng(8)
    for name in ("hifigan-22k-80", "tacotron2-22k-80", "librosa-default", "whisper-16k-80"):
        c = melinvert.get_preset(name)
        n = 12 * c.hop_length + c.n_fft
        x = torch.from_numpy(rng.standard_normal((1, n)))
        ops = dsp.FrameOps(c, n, dtype=torch.float64, device="cpu")
        full = ops.analysis(x)
        for k in (c.pad // 2, c.n_fft + 3 * c.hop_length + 5, n):
            got = ops.with_boundary(dsp.Boundary(x[:, :k], c.hop_length)).known_angles()
            last = (k + c.pad - c.n_fft) // c.hop_length  # the last frame ending at or before k
            if k <= c.pad or last < 0:
                assert got is None
                continue
            assert got.shape[1] == min(last + 1, ops.n_frames)
            strong = full[:, : got.shape[1]].abs() > 1e-6 * full.abs().max()
            diff = torch.angle(torch.exp(1j * (got - torch.angle(full[:, : got.shape[1]]))))
            assert float(diff[strong].abs().max()) < 1e-9


def test_pghi_keeps_float32_precision_over_a_minute() -> None:
    """The phase sums run modulo 2 pi: after a minute of frames float32 PGHI is within
    0.01 rad of float64 on every bin that matters (raw sums would reach ~1e6 rad, where float32
    resolves only ~0.06 rad)."""
    from melinvert.demo import speech_like

    c = melinvert.get_preset("hifigan-22k-80")
    x = torch.from_numpy(speech_like(c.sample_rate, 60.0, seed=1).astype(np.float64))[None]
    mag = dsp.FrameOps(c, x.shape[-1], dtype=torch.float64, device="cpu").analysis(x).abs()
    a64 = phase.init_pghi(mag, c)
    a32 = phase.init_pghi(mag.float(), c).double()
    strong = mag > 1e-3 * mag.max()
    assert float(torch.angle(torch.exp(1j * (a64 - a32)))[strong].abs().max()) < 1e-2


def test_heap_reference_recovers_a_fast_chirp() -> None:
    """The criterion of the next test is met by PGHI as published (heap integration)."""
    c = C16
    x = chirp(c.sample_rate, 0.5, 300.0, 2500.0)
    _, spec = true_stft(x, c)
    ref = torch.from_numpy(heap_pghi(spec.abs()[0].numpy(), c))[None]
    assert sc_of_phase(c, x, angles=ref) < 0.25 * sc_of_phase(c, x, init="random")


@pytest.mark.parametrize(("f0", "f1"), [(300.0, 2500.0), (200.0, 4000.0), (4000.0, 300.0)])
def test_pghi_follows_fast_chirps(f0: float, f1: float) -> None:
    """Up to 7600 Hz/s (a pitch glide's upper harmonics move that fast): the ridge moves across
    bins between frames, and PGHI still gets within 2x the heap reference's consistency error
    (0.035 on the first chirp), far below random phase (~0.65)."""
    c = C16
    x = chirp(c.sample_rate, 0.5, f0, f1)
    pghi, rand = sc_of_phase(c, x, init="pghi"), sc_of_phase(c, x, init="random")
    assert pghi < 0.15 * rand, (pghi, rand)
    if (f0, f1) == (300.0, 2500.0):
        _, spec = true_stft(x, c)
        heap = sc_of_phase(c, x, angles=torch.from_numpy(heap_pghi(spec.abs()[0].numpy(), c))[None])
        assert pghi < 2.0 * heap, (pghi, heap)


def test_pghi_pointer_jumping_equals_the_frame_by_frame_recursion() -> None:
    """The vectorised solution equals the recursion it solves, run frame by frame: each peak
    continues its bin's phase of the previous frame (trapezoidal time step), each bin takes its
    peak's phase plus the frequency integral from the peak."""
    c = C16
    rng = np.random.default_rng(4)
    for t, n0 in ((1, 0), (2, 0), (5, 0), (33, 0), (33, 1), (33, 7), (4, 4)):
        mag = rng.random((2, t, c.n_freqs)) + 0.01
        anchor = rng.uniform(-np.pi, np.pi, (2, n0, c.n_freqs)) if n0 else None
        got = phase.init_pghi(
            torch.from_numpy(mag), c, anchor=None if anchor is None else torch.from_numpy(anchor)
        ).numpy()
        a, m_fft = c.hop_length, c.n_fft
        lam = phase.PGHI_GAMMA[c.window] * c.win_length**2
        logs = np.log(mag)  # well above the -100 dB floor
        bins = np.arange(c.n_freqs)
        d_time = np.gradient(logs, axis=1) if t > 1 else np.zeros_like(logs)
        phi_t = 2 * np.pi * a * bins / m_fft + (a * m_fft / lam) * np.gradient(logs, axis=2)
        phi_f = -(lam / (a * m_fft)) * d_time
        cum_f = np.concatenate(
            [np.zeros((2, t, 1)), np.cumsum(0.5 * (phi_f[..., 1:] + phi_f[..., :-1]), -1)], -1
        )
        centre = 2 * np.pi * bins * (m_fft // 2) / m_fft  # frame-start <-> window-centred
        want = np.zeros_like(mag)
        for i in range(2):
            prev = np.zeros(c.n_freqs)
            for n in range(t):
                if n < n0:  # the anchor's frames are given (in the frame-start convention)
                    want[i, n] = anchor[i, n] + centre
                else:
                    own = _owner_by_loops(mag[i, n])
                    psi = prev + (0.5 * (phi_t[i, n - 1] + phi_t[i, n]) if n else 0.0)
                    want[i, n] = psi[own] + cum_f[i, n] - cum_f[i, n, own]
                prev = want[i, n]
        want -= centre
        diff = np.angle(np.exp(1j * (got - want)))  # angles: equal modulo 2 pi
        assert np.abs(diff).max() < 1e-8 * max(1.0, np.abs(want).max())


def test_pghi_helps_on_real_speech(speech_file) -> None:
    """LJ001-0002 (first 1.2 s, hifigan preset, float32): PGHI + 8 FGLA iterations ends below
    random phase + 8 FGLA iterations (skips when ../shared is absent)."""
    y, sr = sf.read(speech_file, dtype="float32")
    assert sr == HIFIGAN.sample_rate
    ops, spec = true_stft(y[: round(1.2 * sr)], HIFIGAN, torch.float32)
    mag = spec.abs()
    sc = {}
    for init in ("pghi", "random"):
        angles = INIT[init](mag, HIFIGAN, generator=torch.Generator().manual_seed(0))
        out = phase.fgla(mag, ops, angles, n_iter=8)
        sc[init] = sc_np(ops.analysis(out).numpy(), mag.numpy())
    assert sc["pghi"] < 0.9 * sc["random"], sc


# ---------------------------------------------------------------------- MelRefit


BAND = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=48, fmin=150.0, fmax=6000.0)


def _refit_case(c: MelConfig):
    """``(spec, mel, fb, energetic frames)`` for a harmonic+noise signal."""
    _, spec = true_stft(harmonic_noise(c.sample_rate, 0.3, f0=150.0), c)
    fb = dsp.mel_basis(c, dtype=torch.float64)
    mel = (spec.abs() ** c.power) @ fb.T  # (B, T, M)
    energy = mel.sum(-1) > 1e-3 * float(mel.sum(-1).max())
    return spec, mel, fb, energy


def _mel_error(mag: torch.Tensor, mel: torch.Tensor, fb: torch.Tensor, power: float, energy) -> float:
    """Largest per-frame relative error ``||fb |X|^p - mel|| / ||mel||`` over energetic frames."""
    est = (mag**power) @ fb.T
    return float(((est - mel).norm(dim=-1) / mel.norm(dim=-1))[energy].max())


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_refit_fixed_point_and_frame_gains(power: float) -> None:
    """The true spectrum comes back unchanged (loss ~0); a spectrum off by a per-frame gain comes
    back with exactly the target mel."""
    c = BAND.replace(power=power)
    spec, mel, fb, energy = _refit_case(c)
    refit = phase.MelRefit(mel, c)
    cov = fb.sum(0) > 0
    out = refit(spec)
    torch.testing.assert_close(out[..., cov], spec.abs()[..., cov], rtol=1e-10, atol=1e-12)
    assert float(refit.loss().max()) < 1e-9
    gains = torch.exp(
        torch.randn(1, spec.shape[1], 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    )
    out = refit(spec * gains)
    assert _mel_error(out, mel, fb, power, energy) < 1e-10


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_refit_matches_the_mel_after_a_smooth_tilt(power: float) -> None:
    """A spectrum off by a smooth spectral tilt (about +-6 dB) and frame gains: after one refit
    the mel of the returned magnitude is within 2% of the target on every energetic frame."""
    c = BAND.replace(power=power)
    spec, mel, fb, energy = _refit_case(c)
    f = torch.arange(c.n_freqs, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    tilt = torch.exp(0.7 * torch.sin(2 * math.pi * f / c.n_freqs)) * torch.exp(
        torch.randn(1, spec.shape[1], 1, generator=gen, dtype=torch.float64)
    )
    off = spec * tilt
    assert _mel_error(off.abs(), mel, fb, power, energy) > 1.0
    assert _mel_error(phase.MelRefit(mel, c)(off), mel, fb, power, energy) < 2e-2


def test_refit_zero_outside_the_band_and_its_loss() -> None:
    c = BAND
    spec, mel, fb, _ = _refit_case(c)
    refit = phase.MelRefit(mel, c)
    noise = torch.polar(
        torch.rand(spec.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64),
        torch.zeros(spec.shape, dtype=torch.float64),
    )
    out = refit(spec + noise)
    freqs = np.fft.rfftfreq(c.n_fft, 1 / c.sample_rate)
    outside = torch.from_numpy((freqs < c.fmin) | (freqs > c.fmax_hz))
    assert outside.sum() > 10
    assert out.shape == spec.shape and (out >= 0).all()
    assert (out[..., outside] == 0).all()
    # loss(): mean |ln(fb |c|^p + tiny) - ln(mel + tiny)| of the spectrum just seen
    tiny = 1e-8 * float(mel.max())
    want = (torch.log((spec + noise).abs() @ fb.T + tiny) - torch.log(mel + tiny)).abs().mean(dim=(-2, -1))
    torch.testing.assert_close(refit.loss(), want, rtol=1e-6, atol=0)


def test_repeated_refits_converge() -> None:
    """Each refit is one multiplicative NNLS step: repeated on a mismatched spectrum (keeping its
    phase), the mel error falls at every step."""
    c = BAND
    spec, mel, fb, energy = _refit_case(c)
    rng = torch.Generator().manual_seed(4)
    cur = torch.polar(
        torch.rand(spec.shape, generator=rng, dtype=torch.float64) * spec.abs().max(), spec.angle()
    )
    refit = phase.MelRefit(mel, c)
    errors = [_mel_error(cur.abs(), mel, fb, c.power, energy)]
    for _ in range(12):
        cur = torch.polar(refit(cur), cur.angle())
        errors.append(_mel_error(cur.abs(), mel, fb, c.power, energy))
    assert (np.diff(errors) < 0).all(), errors
    assert errors[-1] < 0.1 * errors[0]


def test_per_item_params_resolve_the_given_variants() -> None:
    given = torch.rand(3, 4, 5)
    mel = given.clone()
    mel[1] *= 2.0  # item 1 changed by a mel stage
    p = {"alpha": 0.99, "beta": 1.1, "gamma": 1.2, "given_alpha": 0.9, "given_beta": None}
    out = phase.per_item_params(p, mel, given)
    assert set(out) == {"alpha", "beta", "gamma"} and out["beta"] == 1.1 and out["gamma"] == 1.2
    torch.testing.assert_close(out["alpha"], torch.tensor([0.9, 0.99, 0.9], dtype=torch.float64))
    assert phase.per_item_params(p, given.clone(), given)["alpha"] == 0.9  # all left as given
    assert phase.per_item_params(p, given * 2, given)["alpha"] == 0.99  # none
    assert phase.per_item_params(p, given[..., :4], given)["alpha"] == 0.99  # reshaped: none

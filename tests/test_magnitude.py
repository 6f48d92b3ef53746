"""Stage 1, mel -> |STFT| (melinvert.magnitude), against independent references.

References: ``scipy.optimize.nnls`` (the NNLS objective, frame by frame), ``np.linalg.pinv`` of
librosa's float64 filterbank, and closed forms (the pseudo-inverse is exact on the filterbank's
row space; the normalised transpose maps a flat spectrum back flat). Also: batch equals
stacked singles, shapes and dtypes for every method and power, and gd's own objective.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch
from helpers import harmonic_noise, plain_methods, ref_filterbank

import melinvert
from melinvert import MelConfig, dsp, magnitude, registry

MAGNITUDE = plain_methods()[0]

# the tiny configs below have empty mel bands on purpose; librosa says so
pytestmark = [
    pytest.mark.filterwarnings("ignore:Empty filters detected:UserWarning"),
    pytest.mark.usefixtures("one_thread"),
]

#: The methods defined in magnitude.py (the registry may hold learned stages too, tested elsewhere).
CLASSIC = ("transpose", "pinv", "nnls", "gd")

SMALL = MelConfig(sample_rate=8000, n_fft=64, hop_length=16, n_mels=16)
SMALL_CONFIGS = {
    "slaney": SMALL,
    "htk-nonorm": SMALL.replace(mel_scale="htk", mel_norm=None, n_mels=12),
    "band": SMALL.replace(fmin=300.0, fmax=3000.0, n_mels=10),
    "power2": SMALL.replace(power=2.0),
}


def covered(c: MelConfig) -> np.ndarray:
    """Bins some filter covers (a boolean mask over ``n_freqs``)."""
    return ref_filterbank(c).sum(axis=0) > 0


def objective(fb: np.ndarray, p: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """``||fb @ p - mel||^2`` per frame (column)."""
    return ((fb @ p - mel) ** 2).sum(axis=0)


# ---------------------------------------------------------------------- pinv


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_pinv_matrix_matches_numpy(name: str) -> None:
    c = SMALL_CONFIGS[name]
    got = magnitude.pinv_matrix(c, dtype=torch.float64, device=torch.device("cpu")).numpy()
    assert got.shape == (c.n_freqs, c.n_mels)
    ref = scipy.linalg.pinv(ref_filterbank(c), atol=0.0, rtol=magnitude.PINV_RCOND)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("preset", ["whisper-16k-128", "torchaudio-default", "whisper-16k-80"])
def test_pinv_of_rank_deficient_filterbanks_stays_bounded(preset: str) -> None:
    """More mels than the FFT resolves: the numerically-zero singular values are dropped, so the
    pseudo-inverse's gain stays within 1 / PINV_RCOND of the filterbank's scale."""
    c = melinvert.get_preset(preset)
    fb = ref_filterbank(c)
    got = magnitude.pinv_matrix(c, dtype=torch.float64, device=torch.device("cpu")).numpy()
    assert np.linalg.norm(got, 2) <= 1.0 / (magnitude.PINV_RCOND * np.linalg.norm(fb, 2))
    np.testing.assert_allclose(got, scipy.linalg.pinv(fb, atol=0.0, rtol=magnitude.PINV_RCOND), atol=1e-9)
    # fb @ pinv @ fb == fb but for the dropped directions (each below PINV_RCOND of the largest)
    np.testing.assert_allclose(fb @ got @ fb, fb, atol=magnitude.PINV_RCOND * np.linalg.norm(fb, 2))


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_pinv_exact_on_the_row_space(name: str) -> None:
    """For ``P = fb.T @ z`` with ``z >= 0`` (so ``P >= 0`` and in the row space), pinv recovers P."""
    c = SMALL_CONFIGS[name]
    fb = ref_filterbank(c)
    z = np.random.default_rng(1).random((c.n_mels, 7))
    p = fb.T @ z
    assert (p >= 0).all()
    mel = torch.from_numpy(fb @ p)
    got = magnitude.pinv(mel, c).numpy()
    # pinv returns the magnitude |X| = P ** (1 / power): compare at the P level, where the
    # rounding is ~1e-16 (a square root would turn a 1e-18 zero into 1e-9)
    np.testing.assert_allclose(got**c.power, p, rtol=1e-8, atol=1e-12 * p.max())


def test_pinv_clips_at_zero() -> None:
    c = SMALL
    fb = ref_filterbank(c)
    mel = np.random.default_rng(2).random((c.n_mels, 9))  # arbitrary: pinv @ mel has negative entries
    raw = np.linalg.pinv(fb) @ mel
    assert (raw < 0).any()
    got = magnitude.pinv(torch.from_numpy(mel), c).numpy()
    np.testing.assert_allclose(got, np.maximum(raw, 0.0), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- transpose


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_transpose_maps_flat_back_to_flat(name: str) -> None:
    c = SMALL_CONFIGS[name]
    fb = ref_filterbank(c)
    level = np.array([0.5, 1.0, 3.0, 10.0])  # a different flat level in each frame
    p = np.ones((c.n_freqs, 1)) * level  # |X| ** power, flat over frequency
    got = magnitude.transpose(torch.from_numpy(fb @ p), c).numpy()
    cov = covered(c)
    if name == "band":
        assert not cov.all()  # bins below fmin / above fmax exist and must come back zero
    want = np.broadcast_to(level ** (1.0 / c.power), (int(cov.sum()), level.size))
    np.testing.assert_allclose(got[cov], want, rtol=1e-12)
    assert (got[~cov] == 0).all()  # no filter covers these bins: they come back zero


def test_transpose_formula() -> None:
    """``fb.T @ mel / (fb.T @ fb @ 1)`` on covered bins, zero elsewhere (numpy formula)."""
    c = SMALL_CONFIGS["band"]
    fb = ref_filterbank(c)
    mel = np.random.default_rng(3).random((c.n_mels, 5))
    norm = fb.T @ fb.sum(axis=1, keepdims=True)
    want = np.where(norm > 0, (fb.T @ mel) / np.where(norm > 0, norm, 1.0), 0.0)
    got = magnitude.transpose(torch.from_numpy(mel), c).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------- nnls


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_nnls_matches_scipy(name: str) -> None:
    """Objective ``||fb P - mel||^2`` per frame equals scipy.optimize.nnls's to 1e-6 (relative)."""
    c = SMALL_CONFIGS[name]
    fb = ref_filterbank(c)
    rng = np.random.default_rng(4)
    inside = fb @ rng.random((c.n_freqs, 3))  # in the cone: the optimum is 0
    outside = rng.random((c.n_mels, 3))  # arbitrary non-negative
    spiky = np.zeros((c.n_mels, 2))  # no non-negative spectrum explains these: optimum > 0
    spiky[::2, 0] = 1.0
    spiky[[1, -1], 1] = [5.0, 1.0]
    mel = np.concatenate([inside, outside, spiky], axis=1)
    p = magnitude.nnls_solve(torch.from_numpy(mel), c, n_iter=1000).numpy()
    assert p.shape == (c.n_freqs, mel.shape[1])
    assert (p >= 0).all()
    assert (p[~covered(c)] == 0).all()
    ours = objective(fb, p, mel)
    ref = np.array([scipy.optimize.nnls(fb, mel[:, j])[1] ** 2 for j in range(mel.shape[1])])
    scale = (mel**2).sum(axis=0)
    assert (ref[-2:] > 1e-4 * scale[-2:]).all(), "the test needs frames whose optimum is not zero"
    # never better than the optimum (beyond rounding), never worse than it by 1e-6 relative
    np.testing.assert_array_less(ref - 1e-12 * scale, ours + 1e-300)
    np.testing.assert_array_less(ours, ref * (1 + 1e-6) + 1e-12 * scale)


@pytest.mark.parametrize("preset", ["hifigan-22k-80", "whisper-16k-80"])
def test_nnls_default_iterations_near_optimum(preset: str) -> None:
    """With its default 40 iterations, the registered ``nnls`` is within 1e-4 ||mel||^2 of scipy
    on real-looking frames, and much better than the clipped pseudo-inverse it starts from."""
    c = melinvert.get_preset(preset)
    lin = dsp.linear_mel(torch.from_numpy(harmonic_noise(c.sample_rate, 0.1)), c)[..., 2:6]
    fb = ref_filterbank(c)
    m = lin.numpy()
    p = magnitude.nnls(lin, c).numpy() ** c.power
    start = magnitude.pinv(lin, c).numpy() ** c.power
    ref = np.array([scipy.optimize.nnls(fb, m[:, j])[1] ** 2 for j in range(m.shape[1])])
    scale = (m**2).sum(axis=0)
    assert ((objective(fb, p, m) - ref) / scale).max() <= 1e-4
    assert (objective(fb, p, m) <= objective(fb, start, m)).all()


def test_nnls_exact_in_the_cone() -> None:
    """A mel that some non-negative spectrum explains is reproduced (fb @ nnls == mel)."""
    c = SMALL_CONFIGS["band"]
    fb = ref_filterbank(c)
    mel = fb @ np.random.default_rng(5).random((c.n_freqs, 6))
    p = magnitude.nnls_solve(torch.from_numpy(mel), c, n_iter=1000).numpy()
    np.testing.assert_allclose(fb @ p, mel, rtol=1e-6, atol=1e-9 * mel.max())


def test_nnls_power_is_undone() -> None:
    """``nnls`` returns the magnitude: ``nnls_solve(...) ** (1 / power)``."""
    c = SMALL_CONFIGS["power2"]
    mel = torch.from_numpy(ref_filterbank(c) @ np.random.default_rng(6).random((c.n_freqs, 4)))
    np.testing.assert_allclose(
        magnitude.nnls(mel, c, n_iter=30).numpy(),
        magnitude.nnls_solve(mel, c, n_iter=30).numpy() ** 0.5,
        rtol=1e-12,
    )


# ---------------------------------------------------------------------- gd


def test_gd_lowers_its_log_mel_objective() -> None:
    """gd minimises ``mean((log(fb |X|^p + e) - log(mel + e))^2)``; it ends below its NNLS start."""
    c = melinvert.get_preset("tacotron2-22k-80")
    lin = dsp.linear_mel(torch.from_numpy(harmonic_noise(c.sample_rate, 0.15)), c)
    fb = torch.from_numpy(ref_filterbank(c))
    floor = 1e-5 * lin.max()

    def loss(mag: torch.Tensor) -> float:
        return float(((torch.log(fb @ mag**c.power + floor) - torch.log(lin + floor)) ** 2).mean())

    start = magnitude.nnls(lin, c, n_iter=20)
    out = magnitude.gd(lin, c, n_iter=60)
    assert out.shape == (*lin.shape[:-2], c.n_freqs, lin.shape[-1])
    assert torch.isfinite(out).all() and (out >= 0).all()
    assert loss(out) < 0.5 * loss(start)


# ---------------------------------------------------------------------- every method


@pytest.mark.parametrize("name", CLASSIC)
@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_non_negative(name: str, power: float, dtype: torch.dtype) -> None:
    c = SMALL_CONFIGS["band"].replace(power=power)
    fn = MAGNITUDE[name]
    mel = torch.from_numpy(np.random.default_rng(7).random((2, 3, c.n_mels, 5))).to(dtype)
    kw = {"n_iter": 10} if name in ("nnls", "gd") else {}
    out = fn(mel, c, **kw)
    assert out.shape == (2, 3, c.n_freqs, 5)
    assert out.dtype == dtype
    assert torch.isfinite(out).all() and (out >= 0).all()


@pytest.mark.parametrize("name", ["transpose", "pinv"])
def test_batch_equals_stacked_singles_closed_forms(name: str) -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    x = np.stack([harmonic_noise(c.sample_rate, 0.1, seed=s, f0=f) for s, f in [(0, 150.0), (1, 230.0)]])
    lin = dsp.linear_mel(torch.from_numpy(0.1 * x), c)
    lin[1] *= 30.0  # items far apart in level
    fn = MAGNITUDE[name]
    batch = fn(lin, c)
    singles = torch.stack([fn(lin[i], c) for i in range(2)])
    torch.testing.assert_close(batch, singles, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["nnls", "gd"])
def test_batch_equals_stacked_singles_iterative(name: str) -> None:
    """Iterative stage-1 methods: an item's result must not depend on its batch-mates."""
    c = melinvert.get_preset("hifigan-22k-80")
    x = np.stack([harmonic_noise(c.sample_rate, 0.3, seed=s, f0=f) for s, f in [(0, 150.0), (1, 230.0)]])
    lin = dsp.linear_mel(torch.from_numpy(x), c)
    fn = MAGNITUDE[name]
    kw = {"n_iter": 40}
    batch = fn(lin, c, **kw)
    singles = torch.stack([fn(lin[i], c, **kw) for i in range(2)])
    torch.testing.assert_close(batch, singles, rtol=1e-9, atol=1e-9 * float(singles.max()))


def test_nnls_batch_equals_singles_without_early_stop() -> None:
    """With the early stop off (``tol=0``) the FISTA iterations themselves are per item."""
    c = melinvert.get_preset("hifigan-22k-80")
    x = np.stack([harmonic_noise(c.sample_rate, 0.3, seed=s, f0=f) for s, f in [(0, 150.0), (1, 230.0)]])
    lin = dsp.linear_mel(torch.from_numpy(x), c)
    batch = magnitude.nnls_solve(lin, c, n_iter=40)
    singles = torch.stack([magnitude.nnls_solve(lin[i], c, n_iter=40) for i in range(2)])
    torch.testing.assert_close(batch, singles, rtol=1e-12, atol=1e-12 * float(singles.max()))


def test_decode_mel_inverts_the_compression() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    lin = dsp.linear_mel(torch.from_numpy(harmonic_noise(c.sample_rate, 0.1)), c)
    back = magnitude.decode_mel(c.compression.encode(lin), c)
    keep = lin > c.compression.floor  # below the floor the encoding clamps
    torch.testing.assert_close(back[keep], lin[keep], rtol=1e-12, atol=0)
    assert (back >= 0).all()


def test_registry_names_the_classic_methods() -> None:
    for name in CLASSIC:
        st = registry.stage(name)
        fn, desc = st.fn, st.description
        assert st.kind == "magnitude" and callable(fn) and isinstance(desc, str) and desc.strip()

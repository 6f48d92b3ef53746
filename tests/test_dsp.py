"""melinvert.dsp against librosa and scipy in float64, with explicit tolerances.

Covers the mel scale and filterbank, windows, STFT/iSTFT for every padding convention, the
caches (keyed on every parameter, dtype and device), batching, numpy/torch in and out,
gradients, and the error paths of ``mel_spectrogram``.
"""

from __future__ import annotations

import dataclasses
import warnings

import librosa
import numpy as np
import pytest
import scipy.signal
import torch
from helpers import ref_filterbank
from hypothesis import given, settings
from hypothesis import strategies as st

import melinvert
from melinvert import Compression, MelConfig, MelinvertError, dsp

# librosa's warnings about empty mel filters and short inputs are expected here
pytestmark = pytest.mark.filterwarnings(
    "ignore:Empty filters detected:UserWarning", "ignore:n_fft=.* is too large:UserWarning"
)

PRESET_NAMES = melinvert.list_presets()
PRESETS = [melinvert.get_preset(n) for n in PRESET_NAMES]
SCIPY_NAME = {"hann": "hann", "hamming": "hamming", "blackman": "blackman", "rect": "boxcar"}

# configs beyond the presets: other windows, short windows, odd sizes, constant padding, no padding
EXTRA_CONFIGS = [
    MelConfig(sample_rate=16000, n_fft=512, hop_length=128, window="hamming", n_mels=40),
    MelConfig(sample_rate=16000, n_fft=512, hop_length=100, win_length=300, window="blackman", n_mels=40),
    MelConfig(sample_rate=8000, n_fft=63, hop_length=10, window="hann", pad_mode="constant", n_mels=12),
    MelConfig(sample_rate=8000, n_fft=64, hop_length=16, window="rect", padding="none", n_mels=12),
    MelConfig(sample_rate=8000, n_fft=128, hop_length=30, win_length=101, padding="half_overlap", n_mels=20),
    MelConfig(
        sample_rate=8000, n_fft=130, hop_length=32, padding="half_overlap", pad_mode="constant", n_mels=20
    ),
]
ALL_CONFIGS = PRESETS + EXTRA_CONFIGS
ALL_IDS = PRESET_NAMES + [f"extra{i}" for i in range(len(EXTRA_CONFIGS))]


def audio(n: int, seed: int = 0, dtype: type = np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 0.4 * np.sin(0.05 * t) + 0.2 * np.sin(0.31 * t + 1.0) + 0.1 * rng.standard_normal(n)
    return x.astype(dtype)


def ref_window(c: MelConfig) -> np.ndarray:
    w = scipy.signal.get_window(SCIPY_NAME[c.window], c.win_length, fftbins=True)
    return librosa.util.pad_center(w, size=c.n_fft)


def ref_stft(x: np.ndarray, c: MelConfig) -> np.ndarray:
    """The config's STFT by librosa (half-overlap: librosa on the manually padded signal)."""
    w = scipy.signal.get_window(SCIPY_NAME[c.window], c.win_length, fftbins=True)
    kw = {"n_fft": c.n_fft, "hop_length": c.hop_length, "win_length": c.win_length, "window": w}
    if c.padding == "center":
        return librosa.stft(x, center=True, pad_mode=c.pad_mode, **kw)
    if c.padding == "half_overlap":
        p = (c.n_fft - c.hop_length) // 2
        width = [(0, 0)] * (x.ndim - 1) + [(p, p)]
        return librosa.stft(np.pad(x, width, mode=c.pad_mode), center=False, **kw)
    return librosa.stft(x, center=False, **kw)


def ref_linear_mel(x: np.ndarray, c: MelConfig) -> np.ndarray:
    spec = ref_stft(x, c)
    if c.drop_last_frame:
        spec = spec[..., :-1]
    p = spec.real**2 + spec.imag**2
    if c.mag_eps > 0:
        p = p + c.mag_eps if c.mag_eps_mode == "add" else np.maximum(p, c.mag_eps)
    return ref_filterbank(c) @ p ** (c.power / 2)


# ---------------------------------------------------------------------- mel scale and filterbank


@pytest.mark.parametrize("scale", ["slaney", "htk"])
def test_mel_scale_matches_librosa(scale: str) -> None:
    f = np.concatenate([[0.0, 1.0, 999.999, 1000.0, 1000.001], np.linspace(0, 48000, 301)])
    htk = scale == "htk"
    np.testing.assert_allclose(dsp.hz_to_mel(f, scale), librosa.hz_to_mel(f, htk=htk), rtol=1e-13, atol=1e-12)
    m = np.linspace(0, dsp.hz_to_mel(48000.0, scale), 301)
    np.testing.assert_allclose(dsp.mel_to_hz(m, scale), librosa.mel_to_hz(m, htk=htk), rtol=1e-13, atol=1e-9)
    np.testing.assert_allclose(dsp.mel_to_hz(dsp.hz_to_mel(f, scale), scale), f, rtol=1e-12, atol=1e-9)
    assert float(dsp.hz_to_mel(440.0, scale)) == pytest.approx(librosa.hz_to_mel(440.0, htk=htk), rel=1e-14)


@pytest.mark.parametrize("c", PRESETS, ids=PRESET_NAMES)
def test_filterbank_matches_librosa_presets(c: MelConfig) -> None:
    fb = dsp.mel_basis(c, dtype=torch.float64)
    assert fb.shape == (c.n_mels, c.n_freqs) and fb.dtype == torch.float64
    np.testing.assert_allclose(fb.numpy(), ref_filterbank(c), rtol=0, atol=1e-12)
    np.testing.assert_allclose(dsp.mel_basis_np(c), ref_filterbank(c), rtol=0, atol=1e-12)
    f32 = dsp.mel_basis(c)
    assert f32.dtype == torch.float32
    np.testing.assert_allclose(f32.numpy(), ref_filterbank(c), rtol=1e-6, atol=1e-9)


@st.composite
def filterbank_configs(draw: st.DrawFn) -> MelConfig:
    sr = draw(st.sampled_from([4000, 8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 96000]))
    n_fft = draw(st.integers(16, 4096))
    nyq = sr / 2
    fmin = draw(st.floats(0.0, 0.6)) * nyq
    fmax = draw(st.one_of(st.none(), st.floats(0.05, 1.0).map(lambda u: fmin + u * (nyq - fmin))))
    return MelConfig(
        sample_rate=sr,
        n_fft=n_fft,
        hop_length=max(1, n_fft // 4),
        n_mels=draw(st.integers(1, 160)),
        fmin=fmin,
        fmax=fmax,
        mel_scale=draw(st.sampled_from(["slaney", "htk"])),
        mel_norm=draw(st.sampled_from(["slaney", None])),
    )


@settings(max_examples=30, deadline=None)
@given(filterbank_configs())
def test_filterbank_matches_librosa_random(c: MelConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns about empty filters
        want = ref_filterbank(c)
    got = dsp.mel_basis(c, dtype=torch.float64).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------- windows


@pytest.mark.parametrize("name", ["hann", "hamming", "blackman", "rect"])
@pytest.mark.parametrize(("n_fft", "win_length"), [(512, 512), (512, 400), (512, 301), (63, 63), (63, 40)])
def test_window_matches_scipy(name: str, n_fft: int, win_length: int) -> None:
    c = MelConfig(n_fft=n_fft, win_length=win_length, hop_length=10, window=name, n_mels=8)
    w = dsp.window(c, dtype=torch.float64)
    assert w.shape == (n_fft,) and w.dtype == torch.float64
    want = ref_window(c)
    np.testing.assert_allclose(w.numpy(), want, rtol=0, atol=1e-15)
    left = (n_fft - win_length) // 2
    assert not w[:left].any() and not w[left + win_length :].any()
    if name == "hann" and win_length == n_fft:
        np.testing.assert_allclose(
            w.numpy(), torch.hann_window(n_fft, dtype=torch.float64).numpy(), atol=1e-15
        )


# ---------------------------------------------------------------------- STFT / iSTFT


@pytest.mark.parametrize("c", ALL_CONFIGS, ids=ALL_IDS)
def test_stft_matches_librosa(c: MelConfig) -> None:
    for n in (c.min_samples + 3 * c.hop_length + 5, 2 * c.n_fft + 1):
        x = audio(n)
        got = dsp.stft(torch.from_numpy(x), c)
        assert got.dtype == torch.complex128
        want = ref_stft(x, c)
        assert got.shape == want.shape == (c.n_freqs, c.n_frames(n) + int(c.drop_last_frame))
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-10)


def test_stft_float32_close() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    x = audio(5000)
    got = dsp.stft(torch.from_numpy(x).float(), c)
    assert got.dtype == torch.complex64
    np.testing.assert_allclose(got.numpy(), ref_stft(x, c), rtol=0, atol=2e-4)


def ola_envelope(c: MelConfig, n: int) -> np.ndarray:
    """Sum of squared analysis windows over the frames covering each of ``n`` samples."""
    w2 = ref_window(c) ** 2
    t = c.n_frames(n) + int(c.drop_last_frame)
    env = np.zeros(c.n_fft + c.hop_length * (t - 1))
    for i in range(t):
        env[i * c.hop_length : i * c.hop_length + c.n_fft] += w2
    env = np.pad(env, (0, max(0, c.pad + n - env.size)))
    return env[c.pad : c.pad + n]


@pytest.mark.parametrize("c", ALL_CONFIGS, ids=ALL_IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_istft_inverts_stft(c: MelConfig, dtype: torch.dtype) -> None:
    """``istft(stft(x), length=len(x)) == x`` for odd lengths.

    float64 everywhere to 1e-10; float32 to 1e-6 wherever the frames cover a sample with at
    least 1% of the peak window energy. Where only a window's far tail covers the last samples
    (e.g. torchaudio-default, n_fft = 2 hop) the least-squares inverse divides by that tiny
    energy and float32 rounding grows accordingly (to ~1e-4); that part is checked to 1e-6
    times the amplification.
    """
    for n in (c.min_samples, 2 * c.n_fft + c.hop_length + 1, 3 * c.n_fft + 2 * c.hop_length - 1):
        if n % 2 == 0:
            n += 1  # odd lengths
        x = torch.from_numpy(audio(n)).to(dtype)
        y = dsp.istft(dsp.stft(x, c), c, length=n)
        assert y.shape == x.shape and y.dtype == dtype
        env = ola_envelope(c, n)
        covered = env > 0
        assert covered.all() or c.padding == "none"
        err = (y - x).abs().double().numpy()[covered]
        rel = env[covered] / env.max()
        exact = rel >= 1e-3  # below that FrameOps floors the envelope instead of dividing by it
        if dtype == torch.float64:
            assert err[exact].max() <= 1e-10
        else:
            assert err[rel >= 0.01].max() <= 1e-6
            assert (err[exact] <= 1e-6 / np.sqrt(rel[exact])).all()
        # where the envelope is floored the output is attenuated, never amplified
        assert (
            np.abs(y.double().numpy()[covered][~exact]) <= np.abs(x.double().numpy()[covered][~exact]) + 1e-6
        ).all()


@pytest.mark.parametrize("c", ALL_CONFIGS, ids=ALL_IDS)
def test_consistent_equals_synthesis_then_analysis(c: MelConfig) -> None:
    """The fused Griffin-Lim step (edges padded in the overlap-add buffer) is bit-identical
    to ``analysis(synthesis(spec))``, for odd and even lengths, reflect and constant padding,
    signals barely longer than the padding, and with a held boundary (the fallback)."""
    rng = np.random.default_rng(3)
    lengths = {c.min_samples, c.min_samples + 1, c.pad + 2, 2 * c.n_fft + c.hop_length + 1, 3 * c.n_fft - 1}
    fused = 0  # cases that take the fused path (the others fall back to the two calls)
    for mode in ("reflect", "constant"):
        cc = dataclasses.replace(c, pad_mode=mode)
        for n in sorted(k for k in lengths if k >= cc.min_samples):
            ops = dsp.FrameOps(cc, n, dtype=torch.float64, device="cpu")
            shape = (2, ops.n_frames, cc.n_freqs)
            spec = torch.complex(
                torch.from_numpy(rng.standard_normal(shape)), torch.from_numpy(rng.standard_normal(shape))
            )
            x, z = ops.consistent(spec)
            fused += ops.pad > 0 and ops.padded_len >= ops.pad + n > 2 * ops.pad
            x_ref = ops.synthesis(spec)
            assert torch.equal(x, x_ref), (mode, n)
            assert torch.equal(z, ops.analysis(x_ref)), (mode, n)
    assert fused or c.pad == 0
    held = dsp.Boundary(torch.from_numpy(rng.standard_normal((2, 3 * c.hop_length))), c.hop_length)
    ops = dsp.FrameOps(c, 4 * c.n_fft, dtype=torch.float64, device="cpu", boundary=held)
    spec = torch.randn(2, ops.n_frames, c.n_freqs, dtype=torch.complex128)
    x, z = ops.consistent(spec)
    assert torch.equal(x, ops.synthesis(spec)) and torch.equal(z, ops.analysis(x))


def test_istft_batch_and_default_length() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    x = torch.from_numpy(np.stack([audio(256 * 20, s) for s in range(6)])).reshape(2, 3, -1)
    spec = dsp.stft(x, c)
    assert spec.shape == (2, 3, c.n_freqs, 20)
    y = dsp.istft(spec, c)
    assert y.shape == (2, 3, 256 * 20)  # n_samples(T) covers the whole input
    torch.testing.assert_close(y, x, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------- the forward mel, end to end


@pytest.mark.parametrize("c", ALL_CONFIGS, ids=ALL_IDS)
def test_mel_spectrogram_matches_librosa_reference(c: MelConfig) -> None:
    x = audio(c.min_samples + 7 * c.hop_length + 3)
    want_linear = ref_linear_mel(x, c)
    got_linear = dsp.linear_mel(torch.from_numpy(x), c).numpy()
    scale = max(1.0, float(np.abs(want_linear).max()))
    np.testing.assert_allclose(got_linear, want_linear, rtol=1e-9, atol=1e-10 * scale)
    want = c.compression.encode(torch.from_numpy(want_linear)).numpy()
    got = melinvert.mel_spectrogram(x, c)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7)


def test_librosa_default_preset_equals_librosa_melspectrogram() -> None:
    x = audio(9000)
    want = librosa.feature.melspectrogram(y=x, sr=22050)
    # librosa builds its filterbank in float32 by default: agreement to float32 precision
    np.testing.assert_allclose(melinvert.mel_spectrogram(x, "librosa-default"), want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_batch_equals_stacked_singles(name: str) -> None:
    c = melinvert.get_preset(name)
    n = c.min_samples + 4 * c.hop_length + 11
    items = [audio(n, seed=s) * (0.1 + s) / 6 for s in range(6)]
    batch = melinvert.mel_spectrogram(np.stack(items).reshape(2, 3, n), c)
    singles = np.stack([melinvert.mel_spectrogram(a, c) for a in items]).reshape(2, 3, c.n_mels, -1)
    assert batch.shape == (2, 3, c.n_mels, c.n_frames(n))
    np.testing.assert_allclose(batch, singles, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kind_and_dtype_preserved(dtype: type) -> None:
    c = melinvert.get_preset("vocos-24k-100")
    x = audio(3000, dtype=dtype)
    out = melinvert.mel_spectrogram(x, c)
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    t = melinvert.mel_spectrogram(torch.from_numpy(x), c)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.from_numpy(x).dtype
    np.testing.assert_allclose(t.numpy(), out, rtol=0, atol=0)
    # a preset name works as the config
    np.testing.assert_array_equal(melinvert.mel_spectrogram(x, "vocos-24k-100"), out)
    # float64 and float32 agree to float32 precision
    if dtype == np.float32:
        o64 = melinvert.mel_spectrogram(x.astype(np.float64), c)
        np.testing.assert_allclose(out, o64, rtol=0, atol=2e-4)


# ---------------------------------------------------------------------- caches


def test_mel_basis_cache_keyed_on_every_field() -> None:
    base = MelConfig(sample_rate=16000, n_fft=512, hop_length=128, n_mels=40, fmin=30.0, fmax=7000.0)
    fb = dsp.mel_basis(base)
    assert dsp.mel_basis(base) is fb
    # same filterbank key, other STFT/compression fields: the same cached tensor
    assert dsp.mel_basis(base.replace(hop_length=100, compression=Compression(kind="log10"))) is fb
    assert dsp.mel_basis(base.replace(fmax=7000)) is fb
    changes = [
        {"sample_rate": 22050},
        {"n_fft": 1024},
        {"n_mels": 41},
        {"fmin": 31.0},
        {"fmax": 7001.0},
        {"fmax": None},
        {"mel_scale": "htk"},
        {"mel_norm": None},
    ]
    for ch in changes:
        c = base.replace(**ch)
        other = dsp.mel_basis(c)
        assert other is not fb, ch
        assert other.shape != fb.shape or not torch.equal(other, fb), ch
        np.testing.assert_allclose(other.numpy(), ref_filterbank(c), rtol=1e-6, atol=1e-9)
    f64 = dsp.mel_basis(base, dtype=torch.float64)
    assert f64 is not fb and f64.dtype == torch.float64
    assert dsp.mel_basis(base, dtype=torch.float64) is f64
    meta = dsp.mel_basis(base, device="meta")
    assert meta.device.type == "meta" and meta is not fb
    assert dsp.mel_basis(base, device="cpu") is fb
    assert dsp.mel_basis(base, device=torch.device("cpu")) is fb


def test_window_cache_keyed_on_every_field() -> None:
    base = MelConfig(n_fft=512, hop_length=128, win_length=400, window="hann", n_mels=8)
    w = dsp.window(base)
    assert dsp.window(base) is w
    assert dsp.window(base.replace(n_mels=9, hop_length=100, padding="half_overlap")) is w
    for ch in (
        {"window": "hamming"},
        {"window": "rect"},
        {"win_length": 401},
        {"n_fft": 513},
        {"n_fft": 1024},
    ):
        c = base.replace(**ch)
        other = dsp.window(c)
        assert other is not w, ch
        assert other.shape != w.shape or not torch.equal(other, w), ch
        np.testing.assert_allclose(other.numpy(), ref_window(c), atol=1e-7)
    w64 = dsp.window(base, dtype=torch.float64)
    assert w64 is not w and w64.dtype == torch.float64
    meta = dsp.window(base, device="meta")
    assert meta.device.type == "meta" and meta is not w


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_caches_and_mel() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    fb_cpu, fb_gpu = dsp.mel_basis(c), dsp.mel_basis(c, device="cuda")
    assert fb_gpu.device.type == "cuda" and fb_gpu is not fb_cpu
    assert dsp.mel_basis(c, device="cuda") is fb_gpu
    assert dsp.window(c, device="cuda").device.type == "cuda"
    x = audio(8000)
    t = melinvert.mel_spectrogram(torch.from_numpy(x), c, device="cuda")
    assert t.device.type == "cuda"
    out = melinvert.mel_spectrogram(x, c, device="cuda")
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, melinvert.mel_spectrogram(x, c), rtol=0, atol=1e-8)


# ---------------------------------------------------------------------- gradients

TINY = MelConfig(sample_rate=16000, n_fft=16, hop_length=4, n_mels=8, fmax=None)


@pytest.fixture
def one_thread() -> object:
    """Tiny tensors: one intra-op thread is several times faster than contending for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "c",
    [
        TINY,
        TINY.replace(power=2.0),
        TINY.replace(padding="half_overlap", mag_eps=1e-9),
        TINY.replace(mel_scale="htk", mel_norm=None, window="hamming", win_length=12),
    ],
    ids=["magnitude", "power", "half_overlap", "htk"],
)
def test_gradcheck_linear_mel(c: MelConfig, one_thread: None) -> None:
    g = torch.Generator().manual_seed(0)
    x = (0.5 * torch.randn(64, generator=g, dtype=torch.float64)).requires_grad_()
    # the full Jacobian once; a random projection of it (fast_mode) for the variants
    fast = c is not TINY
    assert torch.autograd.gradcheck(lambda a: dsp.linear_mel(a, c), (x,), eps=1e-6, atol=1e-5, fast_mode=fast)


def test_gradcheck_ln_mel(one_thread: None) -> None:
    g = torch.Generator().manual_seed(1)
    x = (0.5 * torch.randn(2, 64, generator=g, dtype=torch.float64)).requires_grad_()
    comp = Compression(kind="ln", floor=1e-8)
    mel = dsp.linear_mel(x.detach(), TINY)
    assert bool(((mel == 0) | (mel > 1e-6)).all())  # away from the clamp's kink (empty filters give 0)
    assert torch.autograd.gradcheck(
        lambda a: comp.encode(dsp.linear_mel(a, TINY)), (x,), eps=1e-6, atol=1e-5, fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda a: comp.encode(dsp.linear_mel(a, TINY)), (x[0].detach().requires_grad_(),), eps=1e-6, atol=1e-5
    )
    # and through the public function, with torch in and out
    y = melinvert.mel_spectrogram(x, TINY.replace(compression=comp))
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("y", "config", "match"),
    [
        (
            np.zeros(4000, dtype=np.int16),
            "hifigan-22k-80",
            r"audio must be a floating-point array, got dtype int16",
        ),
        (torch.zeros(4000, dtype=torch.int32), "hifigan-22k-80", r"audio must be a floating-point tensor"),
        (np.full(4000, np.nan), "hifigan-22k-80", r"audio contains NaN or Inf"),
        (np.concatenate([np.zeros(3999), [np.inf]]), "hifigan-22k-80", r"audio contains NaN or Inf"),
        (torch.full((2, 4000), -torch.inf), "hifigan-22k-80", r"audio contains NaN or Inf"),
        (np.zeros(0), "hifigan-22k-80", r"audio is empty"),
        (np.zeros((3, 0)), "hifigan-22k-80", r"audio is empty \(shape \(3, 0\)\)"),
        (np.zeros(384), "hifigan-22k-80", r"audio has 384 samples, fewer than the 385 one frame needs"),
        (np.zeros(512), "tacotron2-22k-80", r"audio has 512 samples, fewer than the 513"),
        (np.zeros(200), "whisper-16k-80", r"fewer than the 201 one frame needs"),
        (np.zeros(4000), "hifigan-22k", r"unknown preset 'hifigan-22k'; did you mean"),
        (np.zeros(4000), 42, r"config must be a MelConfig or a preset name, got int"),
        (np.array(["a", "b"]), "hifigan-22k-80", r"audio must be a floating-point array"),
    ],
)
def test_mel_spectrogram_errors(y: object, config: object, match: str) -> None:
    with pytest.raises(MelinvertError, match=match):
        melinvert.mel_spectrogram(y, config)


def test_device_errors() -> None:
    x = audio(4000)
    with pytest.raises(MelinvertError, match=r"device='gpu0' is not a device name"):
        melinvert.mel_spectrogram(x, "hifigan-22k-80", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(MelinvertError, match=r"device='cuda' asked for, but no CUDA device is available"):
            melinvert.mel_spectrogram(x, "hifigan-22k-80", device="cuda")
    auto = melinvert.mel_spectrogram(torch.from_numpy(x), "hifigan-22k-80", device="auto")
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")

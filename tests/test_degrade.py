"""melinvert.degrade: predicted-mel degradations against scipy and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import harmonic_noise
from scipy.ndimage import gaussian_filter1d

import melinvert as mi
from melinvert import MelinvertError
from melinvert import degrade as D

SR = 22050
CODECS = ["hifigan-22k-80", "espnet-22k-80", "whisper-16k-80", "coqui-22k-80", "librosa-default"]


def mel_of(preset: str, seconds: float = 0.6, seed: int = 0, batch: int | None = None) -> np.ndarray:
    cfg = mi.get_preset(preset)
    if batch is None:
        y = harmonic_noise(cfg.sample_rate, seconds, seed=seed)
    else:
        y = np.stack([harmonic_noise(cfg.sample_rate, seconds, seed=seed + i) for i in range(batch)])
    return mi.mel_spectrogram(y, cfg)


ALL = [
    ("time", lambda m, c, s: D.smooth_time(m, c, s)),
    ("freq", lambda m, c, s: D.smooth_frequency(m, c, s)),
    ("noise", lambda m, c, s: D.add_log_noise(m, c, s, seed=3)),
    ("level", lambda m, c, s: D.shift_level(m, c, 6.0 * s)),
]


@pytest.mark.parametrize("preset", CODECS)
@pytest.mark.parametrize("name,fn", ALL, ids=[a[0] for a in ALL])
def test_shapes_kind_dtype_and_zero_strength_identity(preset, name, fn):
    mel = mel_of(preset)
    out = fn(mel, preset, 0.7)
    assert isinstance(out, np.ndarray) and out.shape == mel.shape and out.dtype == mel.dtype
    assert np.all(np.isfinite(out))
    assert not np.allclose(out, mel, atol=1e-6), f"{name} at strength 0.7 left the mel unchanged"
    same = fn(mel, preset, 0.0)
    np.testing.assert_array_equal(same, mel)
    assert same is not mel
    t = torch.from_numpy(mel.astype(np.float32))
    out_t = fn(t, preset, 0.7)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32 and out_t.shape == t.shape


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 40.0])
@pytest.mark.parametrize("dim", [-1, -2, 0])
def test_gaussian_blur_equals_scipy_float64(sigma, dim):
    x = torch.randn(3, 80, 37, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = D.gaussian_blur(x, sigma, dim=dim).numpy()
    ref = gaussian_filter1d(x.numpy(), sigma, axis=dim)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("preset", ["hifigan-22k-80", "espnet-22k-80"])
def test_smoothing_is_a_blur_of_the_log_mel(preset):
    # ln and log10 mels above their floor: the blur of ln(mel) is the blur of the codec's values
    cfg = mi.get_preset(preset)
    mel = mel_of(preset).astype(np.float64)
    np.testing.assert_allclose(D.smooth_time(mel, cfg, 1.3), gaussian_filter1d(mel, 1.3, axis=-1), atol=1e-10)
    np.testing.assert_allclose(
        D.smooth_frequency(mel, cfg, 0.7), gaussian_filter1d(mel, 0.7, axis=-2), atol=1e-10
    )


def test_level_offset_closed_form():
    mel = mel_of("hifigan-22k-80").astype(np.float64)  # ln of a magnitude mel
    out = D.shift_level(mel, "hifigan-22k-80", -6.0)
    np.testing.assert_allclose(out, np.maximum(mel - 6.0 / 20.0 * math.log(10.0), math.log(1e-5)), atol=1e-10)
    # a power mel with dB compression (no top_db): +6 dB of audio is +6 on the mel's values
    cfg = mi.MelConfig(power=2.0, compression=mi.Compression(kind="db", multiplier=10.0, floor=1e-10))
    y = harmonic_noise(SR, 0.5)
    m = mi.mel_spectrogram(y, cfg)
    np.testing.assert_allclose(D.shift_level(m, cfg, 6.0), m + 6.0, atol=1e-9)


def test_log_noise_std_and_determinism():
    cfg = mi.get_preset("hifigan-22k-80")
    mel = mel_of("hifigan-22k-80", seconds=2.0).astype(np.float64) + 3.0  # away from the floor
    a = D.add_log_noise(mel, cfg, 0.3, seed=7)
    np.testing.assert_array_equal(a, D.add_log_noise(mel, cfg, 0.3, seed=7))
    assert not np.allclose(a, D.add_log_noise(mel, cfg, 0.3, seed=8))
    d = (a - mel).ravel()
    assert abs(d.mean()) < 0.01 and abs(d.std() - 0.3) < 0.01
    # the same std in nepers on a log10 codec: the codec's values move by std / ln(10)
    m10 = mel_of("espnet-22k-80", seconds=2.0).astype(np.float64) + 3.0
    d10 = D.add_log_noise(m10, "espnet-22k-80", 0.3, seed=7) - m10
    assert abs(d10.std() * math.log(10.0) - 0.3) < 0.01
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(
        D.add_log_noise(mel, cfg, 0.1, generator=g1), D.add_log_noise(mel, cfg, 0.1, generator=g2)
    )


@pytest.mark.parametrize("preset", ["hifigan-22k-80", "whisper-16k-80"])
def test_batch_equals_stacked_items(preset):
    cfg = mi.get_preset(preset)
    mels = mel_of(preset, batch=3)
    spec = D.Degradation(level_db=-3.0, time_sigma=1.0, freq_sigma=0.7, noise_std=0.1)
    batch = D.apply(mels, cfg, spec, seed=11)
    g = torch.Generator().manual_seed(11)
    items = np.stack([D.apply(m, cfg, spec, generator=g) for m in mels])
    np.testing.assert_allclose(batch, items, rtol=0, atol=1e-5)
    nested = D.apply(mels.reshape(3, 1, *mels.shape[1:]), cfg, spec, seed=11)
    np.testing.assert_allclose(nested[:, 0], batch, rtol=0, atol=1e-5)


def test_combination_equals_the_steps_in_order():
    cfg = mi.get_preset("hifigan-22k-80")
    mel = mel_of("hifigan-22k-80").astype(np.float64)
    spec = D.Degradation(level_db=4.0, time_sigma=1.0, freq_sigma=0.7, noise_std=0.2)
    got = D.apply(mel, cfg, spec, seed=2)
    step = D.shift_level(mel, cfg, 4.0)
    step = D.smooth_time(step, cfg, 1.0)
    step = D.smooth_frequency(step, cfg, 0.7)
    step = D.add_log_noise(step, cfg, 0.2, seed=2)
    # the steps clamp at the floor in between (the combination only once), so compare above it
    keep = got > math.log(1e-5) + 1.0
    np.testing.assert_allclose(got[keep], step[keep], atol=1e-9)


def test_mix_at_snr_hits_the_snr():
    s = harmonic_noise(SR, 1.0, seed=0)
    n = np.random.default_rng(1).standard_normal(s.size) * 0.01
    mix, scaled = D.mix_at_snr(s, n, 3.0)
    np.testing.assert_allclose(mix, s + scaled, atol=1e-12)
    assert 10 * np.log10(np.sum(s**2) / np.sum(scaled**2)) == pytest.approx(3.0, abs=1e-9)
    sb, nb = np.stack([s, 2 * s]), np.stack([n, n])
    mb, _ = D.mix_at_snr(sb, nb, -5.0)
    np.testing.assert_allclose(mb[1], D.mix_at_snr(2 * s, n, -5.0)[0], atol=1e-12)


@pytest.mark.parametrize("preset", ["hifigan-22k-80", "librosa-default"])
def test_masked_mixture_is_the_wiener_mask_of_the_mixture(preset):
    cfg = mi.get_preset(preset)
    s = harmonic_noise(cfg.sample_rate, 0.8, seed=0)
    n = harmonic_noise(cfg.sample_rate, 0.8, seed=5, f0=220.0)
    mix, scaled = D.mix_at_snr(s, n, 0.0)
    lin = [
        cfg.compression.decode(torch.from_numpy(mi.mel_spectrogram(x, cfg))).numpy() for x in (mix, s, scaled)
    ]
    p = cfg.power
    s2, n2 = lin[1] ** (2 / p), lin[2] ** (2 / p)
    want = lin[0] * np.maximum(s2 / (s2 + n2), 0.1) ** (p / 2)
    got = D.oracle_masked_mel(s, n, cfg, 0.0, mask_floor=0.1)
    np.testing.assert_allclose(
        cfg.compression.decode(torch.from_numpy(got)).numpy(),
        np.maximum(want, cfg.compression.floor) if cfg.compression.kind == "ln" else want,
        rtol=1e-9,
        atol=1e-12,
    )
    # mask floor 1 keeps the mixture's mel
    whole = D.oracle_masked_mel(s, n, cfg, 0.0, mask_floor=1.0)
    np.testing.assert_allclose(whole, mi.mel_spectrogram(mix, cfg), rtol=1e-9, atol=1e-9)
    # batch = stacked items
    both = D.oracle_masked_mel(np.stack([s, n]), np.stack([n, s]), cfg, 0.0)
    np.testing.assert_allclose(both[1], D.oracle_masked_mel(n, s, cfg, 0.0), rtol=1e-9, atol=1e-9)


def test_errors():
    cfg = mi.get_preset("hifigan-22k-80")
    mel = mel_of("hifigan-22k-80")
    with pytest.raises(MelinvertError, match="time_sigma="):
        D.smooth_time(mel, cfg, -1.0)
    with pytest.raises(MelinvertError, match="freq_sigma"):
        D.smooth_frequency(mel, cfg, float("nan"))
    with pytest.raises(MelinvertError, match="noise_std"):
        D.add_log_noise(mel, cfg, -0.1)
    with pytest.raises(MelinvertError, match="level_db"):
        D.shift_level(mel, cfg, float("inf"))
    with pytest.raises(MelinvertError, match="mel has 40 bins"):
        D.smooth_time(mel[:40], cfg, 1.0)
    with pytest.raises(MelinvertError, match=r"\(\.\.\., n_mels, frames\)"):
        D.smooth_time(mel[0], cfg, 1.0)
    with pytest.raises(MelinvertError, match="NaN or Inf"):
        D.smooth_time(np.full_like(mel, np.nan), cfg, 1.0)
    with pytest.raises(MelinvertError, match="seed or a generator, not both"):
        D.add_log_noise(mel, cfg, 0.1, seed=1, generator=torch.Generator())
    with pytest.raises(MelinvertError, match="seed="):
        D.add_log_noise(mel, cfg, 0.1, seed=1.5)
    with pytest.raises(MelinvertError, match=r"must be a melinvert\.degrade\.Degradation"):
        D.apply(mel, cfg, {"time_sigma": 1.0})
    with pytest.raises(MelinvertError, match="sigma=-2"):
        D.gaussian_blur(torch.zeros(4), -2)
    s = harmonic_noise(SR, 0.5)
    with pytest.raises(MelinvertError, match="interferer is silent"):
        D.mix_at_snr(s, np.zeros_like(s), 0.0)
    with pytest.raises(MelinvertError, match="differ"):
        D.mix_at_snr(s, s[:-1], 0.0)
    with pytest.raises(MelinvertError, match="snr_db"):
        D.mix_at_snr(s, s, float("nan"))
    with pytest.raises(MelinvertError, match="mask_floor"):
        D.masked_mixture(mel, mel, mel, cfg, mask_floor=1.5)
    with pytest.raises(MelinvertError, match="interferer_mel shape"):
        D.masked_mixture(mel, mel, mel[:, :-1], cfg)

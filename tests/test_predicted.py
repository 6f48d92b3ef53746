"""melinvert.predicted: sharpening of over-smoothed mels, the tolerant re-fit, mel consistency."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import SHARED_SPEECH
from scipy.ndimage import gaussian_filter1d

import melinvert as mi
from melinvert import MelinvertError, predicted
from melinvert.demo import speech_like
from melinvert.magnitude import decode_mel, nnls
from melinvert.phase import MelRefit

CFG = mi.get_preset("hifigan-22k-80")


def _blur(logmel: np.ndarray, st: float = 1.0, sf_: float = 0.7) -> np.ndarray:
    out = gaussian_filter1d(logmel, st, axis=-1, mode="nearest")
    return gaussian_filter1d(out, sf_, axis=-2, mode="nearest")


def _lin(logmel: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(logmel), dtype=dtype)
    return decode_mel(t if t.dim() == 3 else t[None], CFG)


@pytest.fixture(scope="module")
def synth() -> np.ndarray:
    return mi.mel_spectrogram(speech_like(22050, 2.0, seed=1), CFG).astype(np.float64)


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, np.ndarray]:
    path = SHARED_SPEECH / "LJ001-0004.wav"
    if not path.exists():
        pytest.skip(f"real speech not present ({path})")
    y, sr = sf.read(path, dtype="float64")
    assert sr == CFG.sample_rate
    return y, mi.mel_spectrogram(y, CFG)


def _ref_roughness(logmel: np.ndarray, axis: int) -> float:
    """Independent numpy version of the roughness of one ln-mel (floor 1e-7 of the peak)."""
    lin = np.exp(logmel)
    log = np.log(np.maximum(lin, lin.max() * 1e-7))
    active = log > np.log(lin.max()) - predicted.ACTIVE_RANGE
    d1, d2 = np.diff(log, 1, axis=axis), np.diff(log, 2, axis=axis)
    n = log.shape[axis]
    a1 = np.take(active, range(1, n), axis=axis)
    a2 = np.take(active, range(1, n - 1), axis=axis)
    return float(np.mean(d2[a2] ** 2) / np.mean(d1[a1] ** 2))


def test_roughness_matches_numpy_reference(synth):
    got = predicted.mel_roughness(_lin(synth), CFG)
    assert got.shape == (1, 2)
    for k, axis in enumerate((1, 0)):
        assert float(got[0, k]) == pytest.approx(_ref_roughness(synth, axis), rel=1e-9)


def test_roughness_of_white_noise_is_three_and_blur_lowers_it(synth):
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (80, 4000))
    r = predicted.mel_roughness(_lin(noise), CFG)
    np.testing.assert_allclose(r.numpy(), 3.0, rtol=0.03)
    sharp, blurred = (predicted.mel_roughness(_lin(m), CFG)[0] for m in (synth, _blur(synth)))
    assert bool((blurred < 0.8 * sharp).all())


def test_sharpen_reaches_targets_and_moves_towards_the_original(synth):
    blurred = _lin(_blur(synth))
    out = predicted.sharpen_mel(blurred, CFG)
    assert out.shape == blurred.shape and out.dtype == blurred.dtype
    # the roughness targets are met by the unsharp masks; the ripple step then changes bins < 1 kHz
    r = predicted.mel_roughness(predicted.sharpen_mel(blurred, CFG, ripple=False), CFG)[0]
    # time is sharpened first, then frequency (which changes the time roughness a little)
    assert float(r[1]) == pytest.approx(predicted.SHARPEN_TARGETS[1], abs=0.025)
    # along time the amount is capped (SHARPEN_MAX_AMOUNT): raised a lot, not necessarily to 0.9
    assert float(r[0]) > 1.8 * float(predicted.mel_roughness(blurred, CFG)[0, 0])
    orig = torch.as_tensor(synth)

    active = orig > orig.max() - 8.0  # the cells that carry the signal (the floor: silence)

    def shape_error(lin: torch.Tensor) -> torch.Tensor:  # log-mel error there, without its level offset
        d = (torch.log(lin[0].clamp_min(1e-12)) - orig)[active]
        return (d - d.mean()).abs().mean()

    assert float(shape_error(out)) < float(shape_error(blurred))
    # the level stays the one given: the same energy
    torch.testing.assert_close(out.sum(), blurred.sum(), rtol=1e-9, atol=0)


def _ref_unsharp_time(logmel: np.ndarray, amount: float) -> np.ndarray:
    """Independent numpy reference: ``L + a (L - [1/4, 1/2, 1/4] * L)`` along time (edges
    replicated) on the cells above the floor (1e-7 of the peak), scaled back to the given energy."""
    lin = np.exp(logmel)
    floor = lin.max() * 1e-7
    log = np.log(np.maximum(lin, floor))
    pad = np.concatenate([log[:, :1], log, log[:, -1:]], axis=1)
    low = 0.25 * pad[:, :-2] + 0.5 * pad[:, 1:-1] + 0.25 * pad[:, 2:]
    sharp = np.exp(log + amount * (log - low))
    keep = lin > floor
    sharp = np.where(keep, sharp * lin[keep].sum() / sharp[keep].sum(), lin)
    return sharp


def test_sharpen_amount_is_capped(synth):
    """A roughness target out of reach gets the largest amount, SHARPEN_MAX_AMOUNT by default."""
    blurred = _blur(synth, 1.5, 0.0001)
    steps = 12
    for cap in (predicted.SHARPEN_MAX_AMOUNT, 2.0):
        # time target out of reach, the mel-bin target already met: only time is sharpened
        got = predicted.sharpen_mel(
            _lin(blurred), CFG, targets=(2.9, 0.01), max_amount=cap, steps=steps, ripple=False
        )
        want = _ref_unsharp_time(blurred, cap * (1 - 2.0**-steps))  # bisection from below
        np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-9, atol=0)
    assert predicted.SHARPEN_MAX_AMOUNT == 4.0
    # a target within reach is met below the cap (up to the active cells, re-measured on the output)
    light = _blur(synth, 0.5, 0.0001)
    mild = predicted.sharpen_mel(_lin(light), CFG, targets=(0.9, 0.01), ripple=False)
    assert float(predicted.mel_roughness(mild, CFG)[0, 0]) == pytest.approx(0.9, abs=0.05)
    capped = _ref_unsharp_time(light, predicted.SHARPEN_MAX_AMOUNT * (1 - 2.0**-steps))
    assert float(np.abs(mild[0].numpy() - capped).max()) > 1e-3 * float(capped.max())


def _ref_ripple_depth(log: np.ndarray, n_low: int, sigma: float, power: float) -> tuple[np.ndarray, float]:
    """Independent numpy/scipy version of :func:`predicted.ripple_depth` on one ln-mel."""
    low = log[:n_low]
    ripple = low - gaussian_filter1d(low, sigma, axis=0, mode="nearest", truncate=4.0)
    energy = np.log(np.exp(low / power).sum(axis=0))
    loud = energy > energy.max() - predicted.RIPPLE_ACTIVE_RANGE
    depth = np.sqrt(np.mean((ripple[1:-1, loud] / power) ** 2))
    c, b = predicted.RIPPLE_PRIOR
    gain = float(np.clip(c * depth ** (b - 1), *predicted.RIPPLE_GAIN_RANGE))
    taper = np.ones(n_low)
    taper[-4:] = [0.8, 0.6, 0.4, 0.2]
    out = log.copy()
    out[:n_low] = low + (gain - 1) * ripple * taper[:, None]
    return out, gain


def test_ripple_band_follows_the_measured_envelope():
    n_low, sigma = predicted.ripple_band(CFG)
    centres = librosa.mel_frequencies(CFG.n_mels + 2, fmin=0.0, fmax=8000.0)[1:-1]
    assert n_low == int((centres < 1000).sum()) + 1 == 27  # the band and the bin above 1 kHz
    assert sigma == pytest.approx(75.0 / np.median(np.diff(centres[:26])), rel=1e-9)
    for name in ("vocos-24k-100", "bigvgan-44k-128", "coqui-22k-80"):  # 21.5-23.4 Hz STFTs
        assert predicted.ripple_band(mi.get_preset(name)) is not None
    for name in ("whisper-16k-80", "librosa-default", "torchaudio-default"):  # 40, 10.8, 40 Hz
        assert predicted.ripple_band(mi.get_preset(name)) is None


@pytest.mark.parametrize("depth", [0.3, 0.9, 1.6])
def test_ripple_depth_matches_numpy_reference(synth, depth):
    rng = np.random.default_rng(3)
    T = synth.shape[1]
    bins = np.arange(80)[:, None]
    period = rng.uniform(3.0, 6.0, T)[None, :]  # a harmonic ripple, its period changing per frame
    envelope = gaussian_filter1d(synth, 4.0, axis=0, mode="nearest")  # little ripple of its own
    log = envelope + depth * np.sqrt(2) * np.cos(2 * np.pi * bins / period)
    n_low, sigma = predicted.ripple_band(CFG)
    got, gain = predicted.ripple_depth(torch.as_tensor(log)[None], CFG)
    want, want_gain = _ref_ripple_depth(log, n_low, sigma, CFG.power)
    assert float(gain[0]) == pytest.approx(want_gain, rel=1e-10)
    np.testing.assert_allclose(got[0].numpy(), want, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(got[0, n_low:].numpy(), log[n_low:])  # above 1 kHz: as given
    # deep ripples are made shallower, shallow ones deeper (towards a voice's ~0.9 neper)
    if depth != 0.9:
        assert (want_gain < 1) if depth > 1.0 else (want_gain > 1)


def test_ripple_depth_batch_and_power_and_envelope(synth):
    rng = np.random.default_rng(4)
    a = torch.as_tensor(synth)[None]
    b = a + torch.as_tensor(rng.normal(0, 0.5, synth.shape))[None]
    both, gains = predicted.ripple_depth(torch.cat([a, b]), CFG)
    for i, one in enumerate((a, b)):
        single, g = predicted.ripple_depth(one, CFG)
        torch.testing.assert_close(both[i : i + 1], single, rtol=0, atol=1e-12)
        assert float(gains[i]) == float(g[0])
    # the depth is measured in nepers of the magnitude mel: a power mel's log is twice as deep
    _, g2 = predicted.ripple_depth(2 * a, CFG.replace(power=2.0))
    assert float(g2[0]) == pytest.approx(float(predicted.ripple_depth(a, CFG)[1][0]), rel=1e-9)
    # outside the envelope (a 400-point STFT at 16 kHz) nothing changes
    whisper = mi.get_preset("whisper-16k-80")
    out, g = predicted.ripple_depth(a, whisper)
    assert out is a and float(g[0]) == 1.0


def test_sharpen_rescales_the_ripple_of_sharpened_items(synth):
    blurred = _lin(_blur(synth))
    plain = predicted.sharpen_mel(blurred, CFG, ripple=False)
    with_ripple = predicted.sharpen_mel(blurred, CFG)
    n_low, _ = predicted.ripple_band(CFG)
    assert float((with_ripple[:, :n_low] - plain[:, :n_low]).abs().max()) > 1e-3 * float(plain.max())
    torch.testing.assert_close(with_ripple.sum(), blurred.sum(), rtol=1e-9, atol=0)  # the level given
    # sharpened along time only (rough enough across bins): a deep ripple (this synthetic one's)
    # is left as it is, a shallow one deepened
    time_only = _lin(synth)
    assert float(predicted.mel_roughness(time_only, CFG)[0, 1]) > predicted.SHARPEN_TARGETS[1]
    assert float(predicted.ripple_depth(torch.log(time_only), CFG)[1][0]) < 1.0
    plain, once = (predicted.sharpen_mel(time_only, CFG, ripple=r) for r in (False, True))
    assert not torch.equal(plain, time_only) and torch.equal(once, plain)
    n_low, sigma = predicted.ripple_band(CFG)
    log = torch.log(time_only)
    low = log[:, :n_low]
    shallow = log.clone()
    shallow[:, :n_low] = low - 0.8 * (low - predicted._gaussian_smooth_bins(low, sigma))  # 1/5 deep
    plain, once = (predicted.sharpen_mel(torch.exp(shallow), CFG, ripple=r) for r in (False, True))
    assert float(predicted.ripple_depth(torch.log(plain), CFG)[1][0]) > 1.0
    assert not torch.equal(once, plain)


def test_sharpen_leaves_a_recording_in_a_batch_with_a_blurred_mel_as_given(synth, recording):
    blurred = _lin(_blur(synth))
    with_ripple = predicted.sharpen_mel(blurred, CFG)
    _, logmel = recording
    rec = _lin(logmel)[..., : blurred.shape[-1]]
    pair = predicted.sharpen_mel(torch.cat([rec, blurred]), CFG)
    assert torch.equal(pair[:1], rec)  # a recording's mel in the same batch passes bit for bit
    torch.testing.assert_close(pair[1:], with_ripple, rtol=1e-12, atol=0)


def test_ripple_depth_deepen_only(synth):
    a = torch.as_tensor(gaussian_filter1d(synth, 4.0, axis=0, mode="nearest"))[None]
    bins = torch.arange(80, dtype=a.dtype)[None, :, None]
    deep = a + 2.0 * torch.cos(2 * torch.pi * bins / 4.0)
    shallow = a + 0.2 * torch.cos(2 * torch.pi * bins / 4.0)
    both = torch.cat([deep, shallow])
    free, g = predicted.ripple_depth(both, CFG)
    held, h = predicted.ripple_depth(both, CFG, deepen_only=torch.tensor([True, True]))
    assert float(g[0]) < 1.0 < float(g[1])
    assert float(h[0]) == 1.0 and float(h[1]) == float(g[1])
    assert torch.equal(held[0], deep[0]) and torch.equal(held[1], free[1])


def test_sharpen_leaves_rough_mels_unchanged(recording):
    _, logmel = recording
    lin = _lin(logmel)
    assert torch.equal(predicted.sharpen_mel(lin, CFG), lin)
    noisy = _lin(logmel + np.random.default_rng(0).normal(0, 0.2, logmel.shape))
    assert torch.equal(predicted.sharpen_mel(noisy, CFG), noisy)


def test_sharpen_batch_equals_stacked_singles(synth):
    a, b = _lin(_blur(synth)), _lin(_blur(synth[:, ::-1].copy(), 0.5, 0.3))
    both = predicted.sharpen_mel(torch.cat([a, b]), CFG)
    torch.testing.assert_close(both[:1], predicted.sharpen_mel(a, CFG), rtol=1e-12, atol=0)
    torch.testing.assert_close(both[1:], predicted.sharpen_mel(b, CFG), rtol=1e-12, atol=0)


def test_sharpened_nnls_shape_and_identity_on_recordings(recording, synth):
    _, logmel = recording
    lin = _lin(logmel, torch.float32)
    mag = predicted.sharpened_nnls(lin, CFG, n_iter=20)
    assert mag.shape == (1, CFG.n_freqs, lin.shape[-1])
    assert torch.equal(mag, nnls(lin, CFG, n_iter=20))
    blurred = _lin(_blur(synth), torch.float32)
    pair = predicted.sharpened_nnls(torch.cat([blurred, blurred.flip(-1)]), CFG)
    torch.testing.assert_close(pair[:1], predicted.sharpened_nnls(blurred, CFG), rtol=1e-5, atol=1e-6)


def test_tolerant_refit_reduces_to_melrefit_and_shrinks(synth):
    lin = _lin(synth).transpose(1, 2).contiguous()
    spec = torch.polar(
        torch.rand(1, lin.shape[1], CFG.n_freqs, dtype=torch.float64) + 0.1,
        torch.zeros(1, dtype=torch.float64),
    )
    ref = MelRefit(lin, CFG)(spec)
    torch.testing.assert_close(predicted.TolerantRefit(lin, CFG)(spec), ref, rtol=1e-9, atol=1e-12)
    loose = predicted.TolerantRefit(lin, CFG, tolerance=100.0)(spec)
    torch.testing.assert_close(loose, spec.abs() * (ref > 0), rtol=1e-9, atol=1e-12)  # no re-fit at all
    half = predicted.TolerantRefit(lin, CFG, exponent=0.5)(spec)
    assert float((half - spec.abs()).abs().sum()) < float((ref - spec.abs()).abs().sum())


def test_invert_linear_without_sharpening_is_default(recording):
    _, logmel = recording
    lm = logmel[:, :200].astype(np.float32)
    n = CFG.n_samples(200)
    want = mi.invert(lm, CFG, length=n)
    with torch.no_grad():
        got = predicted.invert_linear(_lin(lm, torch.float32), CFG, length=n, sharpen=False)
    np.testing.assert_allclose(got[0].numpy(), want, atol=1e-4)
    with torch.no_grad():  # on a recording's mel the recommended recipe is today's default
        rec = predicted.invert_linear(_lin(lm, torch.float32), CFG, length=n)
    np.testing.assert_allclose(rec[0].numpy(), want, atol=1e-4)


def test_mel_consistency_recording_vs_blurred(recording):
    _, logmel = recording
    good = predicted.mel_consistency(logmel, CFG)
    assert good.problems() == []
    assert 0.03 < float(good.residual[0]) < predicted.RESIDUAL_LIMIT
    bad = predicted.mel_consistency(
        np.stack([_blur(logmel), logmel + 0.3 * np.random.default_rng(1).normal(size=logmel.shape)]), CFG
    )
    assert bad.residual.shape == (2,)
    assert any("over-smoothed in time" in p for p in bad.problems(0))
    assert any("no waveform fits it" in p for p in bad.problems(1))


def test_errors(synth):
    lin = _lin(synth)
    with pytest.raises(MelinvertError, match="shaped \\(batch, n_mels, frames\\)"):
        predicted.sharpen_mel(lin[0], CFG)
    with pytest.raises(MelinvertError, match="mel bins but the config has n_mels=80"):
        predicted.mel_roughness(lin[:, :40], CFG)
    with pytest.raises(MelinvertError, match="finite and non-negative"):
        predicted.sharpen_mel(-lin, CFG)
    with pytest.raises(MelinvertError, match="targets="):
        predicted.sharpen_mel(lin, CFG, targets=(0.9, 5.0))
    with pytest.raises(MelinvertError, match="max_amount"):
        predicted.sharpen_mel(lin, CFG, max_amount=-1.0)
    with pytest.raises(MelinvertError, match="steps="):
        predicted.sharpen_mel(lin, CFG, steps=0)
    with pytest.raises(MelinvertError, match="ripple='yes' must be true or false"):
        predicted.sharpen_mel(lin, CFG, ripple="yes")
    with pytest.raises(MelinvertError, match="shaped \\(batch, n_mels=80, frames\\), got \\(1, 40"):
        predicted.ripple_depth(torch.log(lin[:, :40]), CFG)
    with pytest.raises(MelinvertError, match="deepen_only must be one bool per item"):
        predicted.ripple_depth(torch.log(lin), CFG, deepen_only=torch.tensor([True, False]))
    t = lin.transpose(1, 2).contiguous()
    with pytest.raises(MelinvertError, match="tolerance="):
        predicted.TolerantRefit(t, CFG, tolerance=-0.1)
    with pytest.raises(MelinvertError, match="exponent="):
        predicted.TolerantRefit(t, CFG, exponent=1.5)
    with pytest.raises(MelinvertError, match="length=100 gives"):
        predicted.invert_linear(lin, CFG, length=100)
    with pytest.raises(MelinvertError, match="n_iter="):
        predicted.mel_consistency(synth, CFG, n_iter=0)
    with pytest.raises(MelinvertError, match="must be shaped"):
        predicted.mel_consistency(synth[0], CFG)


def test_inspect_reports_the_consistency(tmp_path, capsys):
    """`melinvert inspect` says whether a mel looks like a recording's or a predicted one."""
    from melinvert import degrade
    from melinvert.commands import main

    cfg = mi.get_preset("hifigan-22k-80")
    from helpers import harmonic_noise

    mel = mi.mel_spectrogram(harmonic_noise(22050, 3.0, seed=1).astype(np.float32), cfg)
    blurred = degrade.smooth_frequency(degrade.smooth_time(torch.from_numpy(mel), cfg, 1.0), cfg, 0.7).numpy()
    np.save(tmp_path / "rec.npy", mel)
    np.save(tmp_path / "blur.npy", blurred)
    assert main(["inspect", str(tmp_path / "rec.npy"), "--preset", "hifigan-22k-80"]) == 0
    rec = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("consistency:")]
    assert main(["inspect", str(tmp_path / "blur.npy"), "--preset", "hifigan-22k-80"]) == 0
    blur = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("consistency:")]
    assert len(rec) == 1 and rec[0].startswith("consistency: looks like the mel of a recording")
    assert len(blur) == 1 and blur[0].startswith("consistency: not the mel of a waveform: over-smoothed")


def test_default_fits_kept_mels_with_their_own_momentum_per_item(synth):
    """``default``'s ``magla`` uses ``given_alpha``/``given_beta`` (0.9) for the items ``sharpen``
    left as given and its own momentum for the sharpened ones, item by item in a batch."""
    rough = mi.mel_spectrogram(np.random.default_rng(3).standard_normal(22050).astype(np.float64) * 0.1, CFG)
    blurred = _blur(synth[:, : rough.shape[-1]])
    assert torch.equal(predicted.sharpen_mel(_lin(rough), CFG), _lin(rough))  # left as given
    assert not torch.equal(predicted.sharpen_mel(_lin(blurred), CFG), _lin(blurred))  # sharpened
    kept = mi.invert(rough, CFG, method="default", seed=0)
    np.testing.assert_array_equal(
        kept,
        mi.invert(
            rough, CFG, method="sharpen+nnls(iters=20)+pghi+magla(iters=16, alpha=0.9, beta=0.9)", seed=0
        ),
    )
    sharp = mi.invert(blurred, CFG, method="default", seed=0)
    np.testing.assert_array_equal(
        sharp, mi.invert(blurred, CFG, method="sharpen+nnls(iters=20)+pghi+magla(iters=16)", seed=0)
    )
    both = mi.invert(np.stack([rough, blurred]), CFG, method="default", seed=0)
    np.testing.assert_allclose(both, np.stack([kept, sharp]), rtol=0, atol=1e-12)

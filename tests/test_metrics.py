"""melinvert.metrics against independent references (pesq, pystoi, librosa, numpy formulas)."""

from __future__ import annotations

import math
import sys

import librosa
import numpy as np
import pytest
import scipy.signal
import soxr
import torch

import melinvert
from melinvert import MelConfig, MelinvertError
from melinvert import metrics as M

pesq_mod = pytest.importorskip("pesq")
pystoi_mod = pytest.importorskip("pystoi")

SR = 16000


def speech_like(sr: int = SR, dur: float = 1.5, seed: int = 0) -> np.ndarray:
    """A voiced, formant-filtered, syllable-modulated signal that PESQ accepts as speech."""
    rng = np.random.default_rng(seed)
    n = int(sr * dur)
    t = np.arange(n) / sr
    f0 = 120.0 + 20.0 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    src = sum(np.sin(k * phase) / k for k in range(1, 40) if k * 140.0 < sr / 2)
    y = src + 0.02 * rng.standard_normal(n)
    for fc, bw in ((500.0, 80.0), (1500.0, 120.0), (2500.0, 160.0)):
        r = math.exp(-math.pi * bw / sr)
        th = 2 * math.pi * fc / sr
        y = scipy.signal.lfilter([1 - r], [1, -2 * r * math.cos(th), r * r], y)
    env = 0.02 + np.clip(np.sin(2 * np.pi * 2.0 * t), 0.0, None) ** 0.5
    y = y * env
    return 0.5 * y / np.abs(y).max()


@pytest.fixture(scope="module")
def x16() -> np.ndarray:
    return speech_like()


@pytest.fixture(scope="module")
def noisy16(x16: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    return x16 + 0.02 * rng.standard_normal(x16.shape)


# a small centred config so that librosa can compute the same STFT/mel
CFG = MelConfig(sample_rate=SR, n_fft=512, hop_length=128, n_mels=40, fmax=None, power=1.0)


def librosa_mag(x: np.ndarray, cfg: MelConfig = CFG) -> np.ndarray:
    return np.abs(
        librosa.stft(
            x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, window="hann", center=True, pad_mode="reflect"
        )
    )


def librosa_mel(x: np.ndarray, cfg: MelConfig = CFG) -> np.ndarray:
    fb = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax_hz,
        dtype=np.float64,
    )
    return fb @ librosa_mag(x, cfg) ** cfg.power


# ---------------------------------------------------------------------- PESQ / STOI


def test_pesq_equals_direct_call_at_16k(x16: np.ndarray, noisy16: np.ndarray) -> None:
    direct = pesq_mod.pesq(16000, x16, noisy16, "wb")
    assert M.pesq_wb(x16, noisy16, 16000) == pytest.approx(direct, abs=1e-6)
    assert 1.0 < direct < 4.0  # the noise is audible: not a saturated score


def test_pesq_resamples_with_soxr_vhq(noisy16: np.ndarray) -> None:
    x22 = speech_like(22050)
    rng = np.random.default_rng(3)
    y22 = x22 + 0.02 * rng.standard_normal(x22.shape)
    direct = pesq_mod.pesq(
        16000,
        soxr.resample(x22, 22050, 16000, quality="VHQ"),
        soxr.resample(y22, 22050, 16000, quality="VHQ"),
        "wb",
    )
    assert M.pesq_wb(x22, y22, 22050) == pytest.approx(direct, abs=1e-6)


def test_stoi_equals_direct_call(x16: np.ndarray, noisy16: np.ndarray) -> None:
    assert M.stoi(x16, noisy16, 16000) == pytest.approx(pystoi_mod.stoi(x16, noisy16, 16000), abs=1e-12)
    assert M.stoi(x16, noisy16, 16000, extended=True) == pytest.approx(
        pystoi_mod.stoi(x16, noisy16, 16000, extended=True), abs=1e-12
    )
    x22 = speech_like(22050)
    y22 = 0.7 * x22 + 0.01 * np.random.default_rng(1).standard_normal(x22.shape)
    direct = pystoi_mod.stoi(
        soxr.resample(x22, 22050, 16000, quality="VHQ"),
        soxr.resample(y22, 22050, 16000, quality="VHQ"),
        16000,
    )
    assert M.stoi(x22, y22, 22050) == pytest.approx(direct, abs=1e-12)


def test_pesq_stoi_accept_torch_and_float32(x16: np.ndarray, noisy16: np.ndarray) -> None:
    a = M.pesq_wb(torch.from_numpy(x16), torch.from_numpy(noisy16), SR)
    assert a == pytest.approx(M.pesq_wb(x16, noisy16, SR), abs=1e-6)
    b = M.stoi(x16.astype(np.float32), noisy16.astype(np.float32), SR)
    assert b == pytest.approx(M.stoi(x16, noisy16, SR), abs=1e-5)


def test_pesq_stoi_batch_equals_stacked_singles(x16: np.ndarray, noisy16: np.ndarray) -> None:
    ref = np.stack([x16, x16])
    est = np.stack([noisy16, 0.5 * x16])
    p = M.pesq_wb(ref, est, SR)
    s = M.stoi(ref, est, SR)
    assert isinstance(p, np.ndarray) and p.shape == (2,)
    np.testing.assert_allclose(p, [M.pesq_wb(x16, noisy16, SR), M.pesq_wb(x16, 0.5 * x16, SR)], atol=1e-9)
    np.testing.assert_allclose(s, [M.stoi(x16, noisy16, SR), M.stoi(x16, 0.5 * x16, SR)], atol=1e-12)


def test_pesq_unscorable_inputs(x16: np.ndarray) -> None:
    with pytest.raises(M.UnscorableError, match=r"at least 0\.25 s"):
        M.pesq_wb(x16[:3000], x16[:3000], SR)
    with pytest.raises(MelinvertError, match=r"silent .*estimate"):
        M.pesq_wb(x16, np.zeros_like(x16), SR)
    with pytest.raises(MelinvertError, match=r"silent .*reference"):
        M.pesq_wb(np.zeros_like(x16), x16, SR)


def test_pesq_no_utterances_becomes_unscorable(monkeypatch: pytest.MonkeyPatch, x16: np.ndarray) -> None:
    def fake(*args: object, **kwargs: object) -> float:
        raise pesq_mod.NoUtterancesError(b"No utterances detected")

    monkeypatch.setattr(pesq_mod, "pesq", fake)
    with pytest.raises(M.UnscorableError, match="no speech"):
        M.pesq_wb(x16, x16, SR)
    assert M.score(x16, x16, SR)["pesq_wb"] is None


def test_stoi_unscorable_short(x16: np.ndarray) -> None:
    with pytest.raises(M.UnscorableError, match="STOI needs"):
        M.stoi(x16[:3000], x16[:3000], SR)
    assert M.stoi(x16, np.zeros_like(x16), SR) == pytest.approx(0.0, abs=1e-6)


def test_extras_missing_give_none(monkeypatch: pytest.MonkeyPatch, x16: np.ndarray) -> None:
    assert M.extras_available() == {"pesq": True, "pystoi": True}
    monkeypatch.setitem(sys.modules, "pesq", None)
    monkeypatch.setitem(sys.modules, "pystoi", None)
    assert M.extras_available() == {"pesq": False, "pystoi": False}
    assert M.pesq_wb(x16, x16, SR) is None
    assert M.stoi(x16, x16, SR) is None
    s = M.score(x16, x16, SR)
    assert s["pesq_wb"] is None and s["stoi"] is None and s["log_mel_l1"] == 0.0


# ---------------------------------------------------------------------- spectral measures


def test_spectral_convergence_against_numpy(x16: np.ndarray, noisy16: np.ndarray) -> None:
    r, e = librosa_mag(x16), librosa_mag(noisy16)
    want = np.linalg.norm(r - e) / np.linalg.norm(r)
    assert M.spectral_convergence(r, e) == pytest.approx(want, rel=1e-12)
    assert M.waveform_spectral_convergence(x16, noisy16, CFG) == pytest.approx(want, rel=1e-9)
    assert M.spectral_convergence(torch.from_numpy(r), torch.from_numpy(e)) == pytest.approx(want, rel=1e-12)
    assert M.spectral_convergence(r, np.zeros_like(r)) == 1.0


def _numpy_lsd(ref: np.ndarray, est: np.ndarray, cfg: MelConfig, range_db: float | None) -> float:
    """LSD by the formula, on librosa's STFT: bins fmin..fmax, clamp max(1e-10, top - range_db)."""
    pr, pe = librosa_mag(ref, cfg) ** 2, librosa_mag(est, cfg) ** 2
    f = librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)
    keep = (f >= cfg.fmin) & (f <= (cfg.fmax or cfg.sample_rate / 2))
    pr, pe = pr[keep], pe[keep]
    c = max(1e-10, pr.max() * 10 ** (-range_db / 10)) if range_db is not None else 1e-10
    d = 10 * np.log10(np.maximum(pr, c) / np.maximum(pe, c))
    return float(np.mean(np.sqrt(np.mean(d**2, axis=0))))


def test_lsd_against_numpy(x16: np.ndarray, noisy16: np.ndarray) -> None:
    band = CFG.replace(fmin=300.0, fmax=4000.0)
    for cfg in (CFG, band):
        for range_db in (80.0, 40.0, None):
            want = _numpy_lsd(x16, noisy16, cfg, range_db)
            assert M.lsd(x16, noisy16, cfg, range_db=range_db) == pytest.approx(want, rel=1e-9)
    assert M.lsd(x16, noisy16, band) != pytest.approx(M.lsd(x16, noisy16, band, band=False), rel=1e-3)
    # a 0.5x copy: 20 log10(2) dB in every bin above the floor
    half = M.lsd(x16, 0.5 * x16, CFG, floor=1e-30, range_db=None)
    assert half == pytest.approx(20 * math.log10(2), rel=1e-9)
    assert M.lsd(x16, 0.5 * x16, CFG) < 20 * math.log10(2)  # the clamp evens out the faintest bins
    with pytest.raises(MelinvertError, match="range_db"):
        M.lsd(x16, noisy16, CFG, range_db=0.0)


def test_lsd_ignores_16_bit_rounding_and_empty_bins() -> None:
    """Issue 15: 16-bit quantisation alone moved the full-band, absolute-floor LSD by up to 10 dB. In
    the band the mel covers, with the clamp 80 dB under the loudest bin, it moves by < 0.5 dB."""
    cfg = melinvert.get_preset("hifigan-22k-80")
    sos = scipy.signal.butter(12, 7000, fs=22050, output="sos")
    x = scipy.signal.sosfiltfilt(sos, speech_like(22050, dur=1.0))  # little above 8 kHz, as from a mel
    rng = np.random.default_rng(0)
    est = scipy.signal.sosfiltfilt(sos, x + 0.003 * rng.standard_normal(x.shape))  # an in-band error
    q = np.round(est * 32767) / 32767
    assert abs(M.lsd(x, q, cfg) - M.lsd(x, est, cfg)) < 0.5
    old = M.lsd(x, q, cfg, band=False, range_db=None) - M.lsd(x, est, cfg, band=False, range_db=None)
    assert abs(old) > 1.0  # what the old definition did (1.9 dB here)


def test_log_mel_l1_against_librosa(x16: np.ndarray, noisy16: np.ndarray) -> None:
    for floor in (1e-5, 1e-2):
        want = np.mean(
            np.abs(
                np.log(np.maximum(librosa_mel(x16), floor)) - np.log(np.maximum(librosa_mel(noisy16), floor))
            )
        )
        assert M.log_mel_l1(x16, noisy16, CFG, floor=floor) == pytest.approx(want, rel=1e-9)
    assert M.log_mel_l1(x16, 0.5 * x16, CFG, floor=1e-30) == pytest.approx(math.log(2), rel=1e-9)


def test_log_mel_l1_ignores_compression(x16: np.ndarray, noisy16: np.ndarray) -> None:
    base = M.log_mel_l1(x16, noisy16, CFG)
    for kind in ("none", "log10", "db", "whisper"):
        cfg = CFG.replace(compression=melinvert.Compression(kind=kind))
        assert M.log_mel_l1(x16, noisy16, cfg) == pytest.approx(base, rel=1e-12)


def test_hifigan_preset_equals_its_mel_loss() -> None:
    cfg = melinvert.get_preset("hifigan-22k-80")
    x = speech_like(22050, dur=0.5)
    y = 0.8 * x + 0.01 * np.random.default_rng(2).standard_normal(x.shape)
    want = np.mean(np.abs(melinvert.mel_spectrogram(x, cfg) - melinvert.mel_spectrogram(y, cfg)))
    assert M.log_mel_l1(x, y, cfg) == pytest.approx(want, rel=1e-9)


def test_identical_signals_score_zero(x16: np.ndarray) -> None:
    assert M.waveform_spectral_convergence(x16, x16, CFG) == 0.0
    assert M.lsd(x16, x16, CFG) == 0.0
    assert M.log_mel_l1(x16, x16, CFG) == 0.0
    assert M.estimate_lag(x16, x16, SR) == 0
    assert M.snr_db(x16, x16) == math.inf


def test_snr_against_formula(x16: np.ndarray, noisy16: np.ndarray) -> None:
    want = 10 * np.log10(np.sum(x16**2) / np.sum((x16 - noisy16) ** 2))
    assert M.snr_db(x16, noisy16) == pytest.approx(want, rel=1e-12)
    assert M.snr_db(x16, 0.5 * x16) == pytest.approx(20 * math.log10(2), rel=1e-12)


# ---------------------------------------------------------------------- lag and level


@pytest.mark.parametrize("k", [1, 7, 384, -1, -7, -384])
def test_lag_of_shifted_copy(x16: np.ndarray, k: int) -> None:
    if k > 0:
        est = np.concatenate([np.zeros(k), x16[:-k]])
    else:
        est = np.concatenate([x16[-k:], np.zeros(-k)])
    assert M.estimate_lag(x16, est, SR) == k
    assert M.estimate_lag(x16, -est, SR) == k  # polarity does not matter
    assert M.estimate_lag(x16, est[k:] if k > 0 else est, SR) == (0 if k > 0 else k)  # lengths may differ


def test_lag_bounded_and_silence(x16: np.ndarray) -> None:
    est = np.concatenate([np.zeros(2000), x16[:-2000]])  # 125 ms late: outside 50 ms
    assert abs(M.estimate_lag(x16, est, SR)) <= 800
    assert M.estimate_lag(x16, est, SR, max_lag_s=0.2) == 2000
    assert M.estimate_lag(x16, np.zeros_like(x16), SR) == 0
    assert M.estimate_lag(x16, est, SR, max_lag_s=0) == 0


def test_level_of_half_copy(x16: np.ndarray) -> None:
    lv = M.level(x16, 0.5 * x16)
    assert lv.rms_ratio_db == pytest.approx(-6.0206, abs=1e-4)
    assert lv.rms_ratio_db == pytest.approx(20 * math.log10(0.5), rel=1e-12)
    assert lv.peak == pytest.approx(0.5 * np.abs(x16).max(), rel=1e-12)
    assert M.level(x16, np.zeros_like(x16)).rms_ratio_db == -math.inf


# ---------------------------------------------------------------------- batches


def test_batch_equals_stacked_singles(x16: np.ndarray, noisy16: np.ndarray) -> None:
    n = 6000
    refs = [x16[:n], x16[1000 : 1000 + n], noisy16[:n]]
    ests = [noisy16[:n], 0.3 * x16[1000 : 1000 + n], np.roll(x16[:n], 5)]
    rb = np.stack(refs * 2).reshape(2, 3, n)
    eb = np.stack(ests * 2).reshape(2, 3, n)
    for fn in (
        lambda r, e: M.waveform_spectral_convergence(r, e, CFG),
        lambda r, e: M.lsd(r, e, CFG),
        lambda r, e: M.log_mel_l1(r, e, CFG),
        M.snr_db,
        lambda r, e: M.level(r, e).rms_ratio_db,
        lambda r, e: M.level(r, e).peak,
        lambda r, e: M.estimate_lag(r, e, SR),
    ):
        batch = fn(rb, eb)
        assert isinstance(batch, np.ndarray) and batch.shape == (2, 3)
        singles = np.array([fn(r, e) for r, e in zip(refs, ests)])
        np.testing.assert_allclose(batch, np.stack([singles, singles]), rtol=1e-10, atol=1e-12)
    mags_r, mags_e = librosa_mag(rb), librosa_mag(eb)
    sc = M.spectral_convergence(mags_r, mags_e)
    assert sc.shape == (2, 3)
    assert sc[1, 2] == pytest.approx(M.spectral_convergence(mags_r[1, 2], mags_e[1, 2]), rel=1e-12)


def test_singles_return_python_numbers(x16: np.ndarray, noisy16: np.ndarray) -> None:
    assert type(M.snr_db(x16, noisy16)) is float
    assert type(M.lsd(x16, noisy16, CFG)) is float
    assert type(M.estimate_lag(x16, noisy16, SR)) is int
    assert type(M.level(x16, noisy16).peak) is float


# ---------------------------------------------------------------------- score


def test_score_keys_and_values(x16: np.ndarray, noisy16: np.ndarray) -> None:
    s = M.score(x16, noisy16, SR)
    assert list(s) == list(M.SCORE_KEYS)
    cfg = M.analysis_config(SR)
    assert (cfg.n_fft, cfg.hop_length, cfg.n_mels, cfg.fmax_hz) == (1024, 256, 80, 8000.0)
    assert s["pesq_wb"] == pytest.approx(pesq_mod.pesq(16000, x16, noisy16, "wb"), abs=1e-6)
    assert s["stoi"] == pytest.approx(pystoi_mod.stoi(x16, noisy16, 16000), abs=1e-12)
    assert s["log_mel_l1"] == pytest.approx(M.log_mel_l1(x16, noisy16, cfg), rel=1e-12)
    assert s["lsd"] == pytest.approx(M.lsd(x16, noisy16, cfg), rel=1e-12)
    assert s["snr_db"] == pytest.approx(M.snr_db(x16, noisy16), rel=1e-12)
    assert s["lag_samples"] == 0
    assert s["duration_s"] == pytest.approx(1.5)
    assert all(isinstance(v, (int, float)) for v in s.values())


def test_score_trims_but_does_not_shift(x16: np.ndarray) -> None:
    """The PESQ trap: a late output with spikes at its edges must show its lag and a poor SNR."""
    k = 384
    est = np.concatenate([np.zeros(k), x16[:-k], np.zeros(500)])
    est[k] = est[len(x16) - 1] = 0.9
    s = M.score(x16, est, SR)
    assert s["lag_samples"] == k
    assert s["duration_s"] == pytest.approx(len(x16) / SR)
    assert s["snr_db"] < 0.0
    assert s["peak"] == pytest.approx(0.9)
    assert s["pesq_wb"] > 3.5  # PESQ alone barely notices the shift ...
    assert s["log_mel_l1"] > 0.1 and s["spectral_convergence"] > 0.2  # ... the others are not


def test_score_accepts_torch_and_float32(x16: np.ndarray, noisy16: np.ndarray) -> None:
    want = M.score(x16, noisy16, SR, extras=False)
    got = M.score(torch.from_numpy(x16).float(), torch.from_numpy(noisy16).float(), SR, extras=False)
    for key in ("log_mel_l1", "spectral_convergence", "snr_db", "rms_ratio_db"):
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-4), key


def test_score_config_and_extras(x16: np.ndarray, noisy16: np.ndarray) -> None:
    s = M.score(x16, noisy16, SR, config=CFG, extras=False)
    assert s["pesq_wb"] is None and s["stoi"] is None
    assert s["lsd"] == pytest.approx(M.lsd(x16, noisy16, CFG), rel=1e-12)
    ws = M.score(x16[:8000], np.zeros(8000), SR)
    assert ws["pesq_wb"] is None  # unscorable: silent estimate
    assert ws["rms_ratio_db"] == -math.inf and ws["peak"] == 0.0
    short = M.score(x16[3000:6000], x16[3000:6000], SR)
    assert short["pesq_wb"] is None and short["stoi"] is None and short["lsd"] == 0.0


def test_analysis_config_sizes() -> None:
    sizes = {sr: M.analysis_config(sr).n_fft for sr in (8000, 16000, 22050, 24000, 44100, 48000)}
    assert sizes == {8000: 512, 16000: 1024, 22050: 1024, 24000: 2048, 44100: 2048, 48000: 4096}
    for sr in sizes:
        c = M.analysis_config(sr)
        assert c.hop_length == c.n_fft // 4 and c.fmax is None and c.n_mels == 80


# ---------------------------------------------------------------------- errors


def test_error_paths(x16: np.ndarray) -> None:
    a = x16[:4000]
    with pytest.raises(MelinvertError, match="reference is empty"):
        M.snr_db(np.zeros(0), np.zeros(0))
    with pytest.raises(MelinvertError, match="estimate contains NaN"):
        M.lsd(a, np.full_like(a, np.nan), CFG)
    with pytest.raises(MelinvertError, match="reference contains NaN or Inf"):
        M.score(np.full_like(a, np.inf), a, SR)
    with pytest.raises(MelinvertError, match="floating-point"):
        M.level((a * 32767).astype(np.int16), a)
    with pytest.raises(MelinvertError, match=r"shape \(4000,\) and estimate shape \(3999,\) differ"):
        M.log_mel_l1(a, a[:-1], CFG)
    with pytest.raises(MelinvertError, match=r"config sample_rate=22050 differs from .*sample_rate=16000"):
        M.score(a, a, SR, config=melinvert.get_preset("hifigan-22k-80"))
    with pytest.raises(MelinvertError, match=r"sample_rate=16000\.5 must be an integer"):
        M.pesq_wb(a, a, 16000.5)
    with pytest.raises(MelinvertError, match="sample_rate=0 must be >= 1"):
        M.stoi(a, a, 0)
    with pytest.raises(MelinvertError, match="reference is silent"):
        M.score(np.zeros(4000), a, SR)
    with pytest.raises(MelinvertError, match="reference is silent"):
        M.level(np.zeros(4000), a)
    with pytest.raises(MelinvertError, match=r"reference is silent \(all zeros\) \(item \[1\]\); SNR needs"):
        M.snr_db(np.stack([a, 0 * a]), np.stack([a, a]))
    with pytest.raises(MelinvertError, match="ref_mag is all zeros"):
        M.spectral_convergence(np.zeros((3, 4)), np.ones((3, 4)))
    with pytest.raises(MelinvertError, match=r"\(\.\.\., n_freqs, frames\)"):
        M.spectral_convergence(np.ones(4), np.ones(4))
    with pytest.raises(MelinvertError, match="reference must be 1-D"):
        M.score(np.stack([a, a]), np.stack([a, a]), SR)
    with pytest.raises(MelinvertError, match="fewer than the 513 one analysis frame needs"):
        M.score(a[:300], a[:300], SR)
    with pytest.raises(MelinvertError, match="floor=0 must be a number > 0"):
        M.log_mel_l1(a, a, CFG, floor=0)
    with pytest.raises(MelinvertError, match="max_lag_s=-1 must be"):
        M.estimate_lag(a, a, SR, max_lag_s=-1)
    with pytest.raises(MelinvertError, match="unknown preset"):
        M.lsd(a, a, "no-such-preset")

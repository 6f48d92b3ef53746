"""Every preset reproduces its original project's mel spectrogram.

Each preset has a reference written here from the original project's own formula (see
``docs/presets.md`` for the source file of every step), built on librosa's STFT and a float64
librosa filterbank, never on melinvert's functions. The references carry their own
parameters, copied from the projects' configs, so a wrong preset value fails here.

Tolerances, on the compressed values: float64 input <= 1e-9, float32 input <= 2e-3 (against
the float64 reference of the same samples). Presets without compression (librosa-default,
torchaudio-default) are compared as ``ln(max(x, peak * 1e-8))``, the 80 dB below the clip's peak
that ``librosa.power_to_db(S, ref=np.max, top_db=80)`` keeps: further down, a float32 STFT holds
no information.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from helpers import SHARED_SPEECH

import melinvert
from melinvert import get_preset, list_presets

librosa = pytest.importorskip("librosa")

# torchaudio-default really has empty bands (128 htk mels on 201 bins); librosa says so.
pytestmark = pytest.mark.filterwarnings("ignore:Empty filters detected:UserWarning")

SPEECH_CLIPS = ("LJ001-0002.wav", "cmu_arctic_us_aew_a0001.wav")
SPEECH_SECONDS = 1.0

TOL64 = 1e-9
TOL32 = 2e-3
LINEAR_RANGE = 1e-8  # presets without compression: compared as ln(max(x, peak * LINEAR_RANGE))


# ---------------------------------------------------------------------- reference building blocks
def _stft(y: np.ndarray, n_fft: int, hop: int, win: int, *, pad: int, pad_mode: str) -> np.ndarray:
    """Pad ``pad`` samples each side by hand, then frame without centring (periodic hann)."""
    if pad:
        y = np.pad(y, pad, mode=pad_mode)
    return librosa.stft(
        y,
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window="hann",
        center=False,
        dtype=np.complex128,
    )


def _fbank(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, *, htk: bool = False, norm="slaney"
) -> np.ndarray:
    return librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm, dtype=np.float64
    )


# ---------------------------------------------------------------------- one reference per project
def ref_hifigan(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """jik876/hifi-gan meldataset.mel_spectrogram (also NVIDIA/BigVGAN meldataset.py).

    Reflect pad (n_fft - hop) / 2 each side, torch.stft(center=False), sqrt(re^2 + im^2 + 1e-9),
    librosa slaney filterbank, ln(clamp(x, 1e-5)).
    """
    spec = _stft(y, n_fft, hop, win, pad=(n_fft - hop) // 2, pad_mode="reflect")
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    mel = _fbank(sr, n_fft, n_mels, fmin, fmax) @ mag
    return np.log(np.maximum(mel, 1e-5))


def ref_tacotron2(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """NVIDIA/tacotron2 TacotronSTFT.mel_spectrogram.

    stft.STFT.transform: reflect pad n_fft / 2 each side, conv1d with the windowed DFT basis at
    stride hop, sqrt(re^2 + im^2); librosa slaney filterbank; ln(clamp(x, 1e-5)).
    """
    spec = _stft(y, n_fft, hop, win, pad=n_fft // 2, pad_mode="reflect")
    mag = np.sqrt(spec.real**2 + spec.imag**2)
    mel = _fbank(sr, n_fft, n_mels, fmin, fmax) @ mag
    return np.log(np.maximum(mel, 1e-5))


def ref_vocos(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """gemelo-ai/vocos MelSpectrogramFeatures(padding="center") + modules.safe_log.

    torchaudio MelSpectrogram(power=1): centred reflect-padded STFT, |X|, htk filterbank without
    normalisation, f_max sr // 2; ln(clip(x, 1e-7)).
    """
    spec = _stft(y, n_fft, hop, win, pad=n_fft // 2, pad_mode="reflect")
    mel = _fbank(sr, n_fft, n_mels, fmin, fmax, htk=True, norm=None) @ np.abs(spec)
    return np.log(np.maximum(mel, 1e-7))


def ref_whisper(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """openai/whisper audio.log_mel_spectrogram.

    torch.stft(center=True, reflect), last frame dropped, |X|^2, librosa slaney filterbank
    (mel_filters.npz), log10(clamp(x, 1e-10)), floor at max - 8 over the clip, (x + 4) / 4.
    """
    spec = _stft(y, n_fft, hop, win, pad=n_fft // 2, pad_mode="reflect")[:, :-1]
    mel = _fbank(sr, n_fft, n_mels, fmin, fmax) @ np.abs(spec) ** 2
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def ref_espnet(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """espnet2 LogMelFbank: Stft (centred, reflect) -> sqrt(clamp(power, 1e-10)) -> LogMel log10."""
    spec = _stft(y, n_fft, hop, win, pad=n_fft // 2, pad_mode="reflect")
    amp = np.sqrt(np.maximum(spec.real**2 + spec.imag**2, 1e-10))
    mel = _fbank(sr, n_fft, n_mels, fmin, fmax) @ amp
    return np.log10(np.maximum(mel, 1e-10))


def ref_pwg(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """ParallelWaveGAN bin/preprocess.logmelfilterbank (returned here mel-first, not time-first)."""
    spec = librosa.stft(
        y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", pad_mode="reflect", dtype=np.complex128
    )
    mel = np.abs(spec).T @ _fbank(sr, n_fft, n_mels, fmin, fmax).T
    return np.log10(np.maximum(1e-10, mel)).T


def ref_coqui(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """coqui-ai/TTS AudioProcessor.melspectrogram with BaseAudioConfig defaults.

    librosa.stft(reflect), |X|, slaney filterbank, amp_to_db 20*log10(max(1e-8, x)), normalize:
    minus ref_level_db 20, (S + 100) / 100 mapped to [-4, 4], clipped.
    """
    spec = librosa.stft(
        y, n_fft=n_fft, hop_length=hop, win_length=win, window="hann", pad_mode="reflect", dtype=np.complex128
    )
    mel = _fbank(sr, n_fft, n_mels, fmin, fmax) @ np.abs(spec)
    db = 20.0 * np.log10(np.maximum(1e-8, mel)) - 20.0
    s_norm = (db - -100.0) / 100.0
    return np.clip(8.0 * s_norm - 4.0, -4.0, 4.0)


def ref_librosa(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """librosa.feature.melspectrogram with its own defaults, filterbank asked for in float64."""
    assert (n_fft, hop, win, n_mels, fmin, fmax) == (2048, 512, 2048, 128, 0.0, None)  # its defaults
    return librosa.feature.melspectrogram(y=y, sr=sr, dtype=np.float64)


def ref_torchaudio(y, *, sr, n_fft, hop, win, n_mels, fmin, fmax):
    """torchaudio.transforms.MelSpectrogram defaults: centred reflect STFT, |X|^2, htk, no norm."""
    spec = _stft(y, n_fft, hop, win, pad=n_fft // 2, pad_mode="reflect")
    return _fbank(sr, n_fft, n_mels, fmin, fmax, htk=True, norm=None) @ np.abs(spec) ** 2


# ---------------------------------------------------------------------- the original frame counts
def frames_half_overlap(n, *, n_fft, hop):
    """torch.stft(center=False) after a (n_fft - hop) // 2 pad each side."""
    return 1 + (n + 2 * ((n_fft - hop) // 2) - n_fft) // hop


def frames_centred(n, *, n_fft, hop):
    """torch.stft(center=True) / librosa.stft(center=True) / Tacotron 2's n_fft / 2 pad."""
    return 1 + n // hop


def frames_whisper(n, *, n_fft, hop):
    """Centred frames with the last one dropped (``stft[..., :-1]``)."""
    return n // hop


# ---------------------------------------------------------------------- parameters from each source
# name -> (reference, frame-count formula, parameters copied from the project's config)
SOURCES: dict[str, tuple[Callable, Callable, dict]] = {
    # jik876/hifi-gan config_v1.json
    "hifigan-22k-80": (
        ref_hifigan,
        frames_half_overlap,
        dict(sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=0.0, fmax=8000.0),
    ),
    # NVIDIA/tacotron2 hparams.py
    "tacotron2-22k-80": (
        ref_tacotron2,
        frames_centred,
        dict(sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=0.0, fmax=8000.0),
    ),
    # NVIDIA/BigVGAN configs/bigvgan_v2_24khz_100band_256x.json (fmax null)
    "bigvgan-24k-100": (
        ref_hifigan,
        frames_half_overlap,
        dict(sr=24000, n_fft=1024, hop=256, win=1024, n_mels=100, fmin=0.0, fmax=None),
    ),
    # NVIDIA/BigVGAN configs/bigvgan_v2_44khz_128band_512x.json (fmax null)
    "bigvgan-44k-128": (
        ref_hifigan,
        frames_half_overlap,
        dict(sr=44100, n_fft=2048, hop=512, win=2048, n_mels=128, fmin=0.0, fmax=None),
    ),
    # gemelo-ai/vocos configs/vocos.yaml; torchaudio f_max default float(sr // 2)
    "vocos-24k-100": (
        ref_vocos,
        frames_centred,
        dict(sr=24000, n_fft=1024, hop=256, win=1024, n_mels=100, fmin=0.0, fmax=float(24000 // 2)),
    ),
    # openai/whisper audio.py constants
    "whisper-16k-80": (
        ref_whisper,
        frames_whisper,
        dict(sr=16000, n_fft=400, hop=160, win=400, n_mels=80, fmin=0.0, fmax=None),
    ),
    "whisper-16k-128": (
        ref_whisper,
        frames_whisper,
        dict(sr=16000, n_fft=400, hop=160, win=400, n_mels=128, fmin=0.0, fmax=None),
    ),
    # espnet egs2/ljspeech/tts1/run.sh + TEMPLATE tts.sh defaults (fmin 80, fmax 7600, 80 mels)
    "espnet-22k-80": (
        ref_espnet,
        frames_centred,
        dict(sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=80.0, fmax=7600.0),
    ),
    # kan-bayashi/ParallelWaveGAN egs/ljspeech/voc1/conf/parallel_wavegan.v1.yaml
    "pwg-22k-80": (
        ref_pwg,
        frames_centred,
        dict(sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=80.0, fmax=7600.0),
    ),
    # coqui-ai/TTS BaseAudioConfig defaults (mel_fmin 0, mel_fmax None)
    "coqui-22k-80": (
        ref_coqui,
        frames_centred,
        dict(sr=22050, n_fft=1024, hop=256, win=1024, n_mels=80, fmin=0.0, fmax=None),
    ),
    "librosa-default": (
        ref_librosa,
        frames_centred,
        dict(sr=22050, n_fft=2048, hop=512, win=2048, n_mels=128, fmin=0.0, fmax=None),
    ),
    # torchaudio MelSpectrogram(): hop = win // 2
    "torchaudio-default": (
        ref_torchaudio,
        frames_centred,
        dict(sr=16000, n_fft=400, hop=200, win=400, n_mels=128, fmin=0.0, fmax=float(16000 // 2)),
    ),
}

NAMES = sorted(SOURCES)


def reference(name: str, y: np.ndarray) -> np.ndarray:
    """The original project's mel of one clip, in float64."""
    ref, _, params = SOURCES[name]
    return ref(np.asarray(y, dtype=np.float64), **params)


def expected_frames(name: str, n: int) -> int:
    _, frames, params = SOURCES[name]
    return frames(n, n_fft=params["n_fft"], hop=params["hop"])


def max_error(name: str, got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference of the compressed values (linear presets: log, 80 dB range)."""
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != reference {want.shape}"
    assert np.all(np.isfinite(got)), f"{name}: non-finite values"
    if get_preset(name).compression.kind == "none":
        floor = want.max() * LINEAR_RANGE
        got, want = np.log(np.maximum(got, floor)), np.log(np.maximum(want, floor))
    return float(np.max(np.abs(got - want)))


# ---------------------------------------------------------------------- signals
def synth(sr: int, n: int, *, seed: int = 0) -> np.ndarray:
    """Harmonic tones with vibrato, a chirp and noise, fixed seed, peak 0.9."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 140.0 + 25.0 * np.sin(2 * np.pi * 3.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    y = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 40) if k * 165 < sr / 2)
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t))
    y = y + 0.3 * np.sin(2 * np.pi * (300.0 * t + 0.5 * (0.45 * sr - 300.0) * t**2 / t[-1]))
    y = y + 0.02 * rng.standard_normal(n)
    return 0.9 * y / np.max(np.abs(y))


@functools.cache
def speech(clip: str, sr: int) -> np.ndarray:
    """A real clip from ../shared/data/speech, first second, resampled (soxr VHQ) to ``sr``."""
    path = SHARED_SPEECH / clip
    if not path.exists():
        pytest.skip("../shared/data/speech not present")
    x, rate = sf.read(path, dtype="float64", always_2d=True)
    x = x[: int(SPEECH_SECONDS * rate), 0]
    if rate != sr:
        x = soxr.resample(x, rate, sr, quality="VHQ")
    # One 16-bit LSB of Gaussian noise, as requantising the resampled clip would add. Without it
    # the band above the clip's own Nyquist holds only resampler residue, below what a float32
    # STFT resolves; vocos's floor (1e-7) reaches down there and the log of two FFTs' rounding
    # noise differs.
    x = x + np.random.default_rng(7).standard_normal(x.shape[-1]) / 32768.0
    return np.ascontiguousarray(x)


# ---------------------------------------------------------------------- tests
def test_every_preset_has_a_reference():
    assert sorted(list_presets()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_preset_parameters_match_source(name):
    cfg = get_preset(name)
    p = SOURCES[name][2]
    got = (cfg.sample_rate, cfg.n_fft, cfg.hop_length, cfg.win_length, cfg.n_mels, cfg.fmin, cfg.fmax_hz)
    want = (p["sr"], p["n_fft"], p["hop"], p["win"], p["n_mels"], p["fmin"], p["fmax"] or p["sr"] / 2)
    assert got == want


@pytest.mark.parametrize("name", NAMES)
def test_synthetic_float64_exact(name):
    sr = SOURCES[name][2]["sr"]
    y = synth(sr, sr // 2 + 123)
    got = melinvert.mel_spectrogram(y, name)
    assert got.dtype == np.float64
    assert max_error(name, got, reference(name, y)) <= TOL64


@pytest.mark.parametrize("name", NAMES)
def test_synthetic_float32_close(name):
    sr = SOURCES[name][2]["sr"]
    y = synth(sr, sr // 2 + 123, seed=1).astype(np.float32)
    got = melinvert.mel_spectrogram(y, name)
    assert got.dtype == np.float32
    assert max_error(name, got, reference(name, y)) <= TOL32


@pytest.mark.parametrize("name", NAMES)
def test_digital_silence_hits_the_same_floors(name):
    """Exact zeros make every epsilon, clamp and floor of the convention show."""
    sr = SOURCES[name][2]["sr"]
    y = synth(sr, sr // 2 + 7, seed=3)
    y[int(0.15 * sr) : int(0.35 * sr)] = 0.0
    want = reference(name, y)
    assert max_error(name, melinvert.mel_spectrogram(y, name), want) <= TOL64
    assert max_error(name, melinvert.mel_spectrogram(y.astype(np.float32), name), want) <= TOL32


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("clip", SPEECH_CLIPS)
def test_speech_matches_reference(name, clip):
    y = speech(clip, SOURCES[name][2]["sr"])
    want = reference(name, y)
    assert max_error(name, melinvert.mel_spectrogram(y, name), want) <= TOL64
    got32 = melinvert.mel_spectrogram(torch.from_numpy(y.astype(np.float32)), name)
    assert isinstance(got32, torch.Tensor) and got32.dtype == torch.float32
    assert max_error(name, got32.numpy(), reference(name, y.astype(np.float32))) <= TOL32


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [22050 + 1, 22050 + 255, 4097])
def test_frame_count_follows_the_original(name, n):
    y = synth(SOURCES[name][2]["sr"], n, seed=2)
    want = reference(name, y)
    got = melinvert.mel_spectrogram(y, name)
    frames = expected_frames(name, n)
    assert want.shape[-1] == frames  # the reference itself follows the project's formula
    assert got.shape == (get_preset(name).n_mels, frames)
    assert get_preset(name).n_frames(n) == frames
    assert max_error(name, got, want) <= TOL64


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_stacked_singles(name):
    sr = SOURCES[name][2]["sr"]
    n = sr // 4 + 77
    y = np.stack(
        [np.stack([synth(sr, n, seed=10 * i + j) * (0.2 + 0.3 * j) for j in range(3)]) for i in range(2)]
    )
    batch = melinvert.mel_spectrogram(y, name)
    singles = np.stack(
        [np.stack([melinvert.mel_spectrogram(y[i, j], name) for j in range(3)]) for i in range(2)]
    )
    assert batch.shape == (2, 3, get_preset(name).n_mels, expected_frames(name, n))
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-12)
    # and each item is still the original project's mel
    assert max_error(name, batch[1, 2], reference(name, y[1, 2])) <= TOL64

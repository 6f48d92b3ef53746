"""melinvert.invert and friends (melinvert.pipeline): every method on every preset, kinds and
dtypes in and out, seeds, batches, callbacks, long audio in blocks, and every error path.

Quality is measured with the log-mel L1 of :func:`melinvert.metrics.log_mel_l1`
(``mean |ln max(M_ref, 1e-5) - ln max(M_est, 1e-5)|`` on the config's linear mel), computed
here per frame where the test needs to look at one place in the clip.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import harmonic_noise

import melinvert
from melinvert import MelinvertError, dsp, metrics, pipeline, registry

pytestmark = pytest.mark.usefixtures("one_thread")

PRESET_NAMES = melinvert.list_presets()
#: a representative set of compositions: both pipelines and every classic stage at least once
METHODS = (
    "default",
    "fast",
    "nnls+fgla",
    "pinv+pghi+agla",
    "transpose+zero+gla",
    "gd+random+mfgla",
    "nnls+pghi+magla",
)
KINDS = ("numpy-float32", "torch-float32", "numpy-float64", "torch-float64")
HIFIGAN = melinvert.get_preset("hifigan-22k-80")


def speech_like(sr: int, seconds: float, *, seed: int = 0) -> np.ndarray:
    """Voiced segments (up to 40 harmonics under a formant, f0 gliding 100-140 -> 150-220 Hz)
    and noise bursts (high-tilted), with short pauses of faint noise between them; float32."""
    rng = np.random.default_rng(seed)
    n = round(sr * seconds)
    y = 1e-3 * rng.standard_normal(n)
    pos = round(0.1 * sr)
    while pos < n - round(0.2 * sr):
        if rng.integers(0, 3) < 2:  # voiced, with a pitch glide
            size = min(round(rng.uniform(0.25, 0.5) * sr), n - pos)
            t = np.arange(size) / sr
            f0a, f0b = rng.uniform(100, 140), rng.uniform(150, 220)
            ph = 2 * np.pi * np.cumsum(f0a + (f0b - f0a) * t / t[-1]) / sr
            seg = sum(
                np.sin(k * ph) * np.exp(-(((k * f0a - 700) / 900) ** 2)) / k**0.5
                for k in range(1, 40)
                if k * f0b < sr / 2
            )
            env = np.sin(np.pi * np.arange(size) / size) ** 0.5
            y[pos : pos + size] += 0.3 * env * seg / np.abs(seg).max()
        else:  # a noise burst
            size = min(round(rng.uniform(0.08, 0.2) * sr), n - pos)
            burst = np.diff(rng.standard_normal(size), prepend=0.0)
            y[pos : pos + size] += 0.1 * np.hanning(size) * burst / np.abs(burst).max()
        pos += size + round(rng.uniform(0.03, 0.12) * sr)
    return y.astype(np.float32)


def log_mel_frames(ref: np.ndarray, est: np.ndarray, c: melinvert.MelConfig) -> np.ndarray:
    """Per-frame log-mel L1, ``mean over bands |ln max(M_ref, 1e-5) - ln max(M_est, 1e-5)|``."""
    a = dsp.linear_mel(torch.from_numpy(np.asarray(ref, np.float64)), c).clamp_min(1e-5).log()
    b = dsp.linear_mel(torch.from_numpy(np.asarray(est, np.float64)), c).clamp_min(1e-5).log()
    return (a - b).abs().mean(dim=-2).numpy()


def as_kind(mel: np.ndarray, kind: str):
    lib, dtype = kind.split("-")
    arr = mel.astype(dtype)
    return torch.from_numpy(arr) if lib == "torch" else arr


@functools.cache
def preset_mel(preset: str) -> np.ndarray:
    """The float64 mel of 0.3 s of harmonic + noise at the preset's rate (cached, read-only)."""
    c = melinvert.get_preset(preset)
    mel = melinvert.mel_spectrogram(harmonic_noise(c.sample_rate, 0.3, seed=1), c)
    mel.flags.writeable = False
    return mel


def hifigan_mel(seconds: float = 0.3, seeds=(0,), f0s=(150.0,)) -> np.ndarray:
    x = np.stack([harmonic_noise(HIFIGAN.sample_rate, seconds, seed=s, f0=f) for s, f in zip(seeds, f0s)])
    return melinvert.mel_spectrogram(x.squeeze(0) if len(seeds) == 1 else x, HIFIGAN)


# ---------------------------------------------------------------------- every method, every preset


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_method_runs_on_every_preset(preset: str, method: str) -> None:
    c = melinvert.get_preset(preset)
    mel = preset_mel(preset)
    kind = KINDS[(PRESET_NAMES.index(preset) + METHODS.index(method)) % len(KINDS)]
    y = melinvert.invert(as_kind(mel, kind), c, method=method, n_iter=2, seed=0)
    lib, dtype = kind.split("-")
    if lib == "torch":
        assert isinstance(y, torch.Tensor) and y.dtype == getattr(torch, dtype)
        y = y.numpy()
    else:
        assert isinstance(y, np.ndarray) and y.dtype == np.dtype(dtype)
    assert y.shape == (c.n_samples(mel.shape[-1]),)
    assert np.isfinite(y).all()
    assert 1e-3 < np.abs(y).max() < 10.0  # neither silence nor garbage


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_shortest_mel_of_every_preset(preset: str) -> None:
    """A mel of ``config.min_frames`` frames (what the shortest audio gives) inverts."""
    c = melinvert.get_preset(preset)
    mel = preset_mel(preset)[..., : c.min_frames]
    y = melinvert.invert(mel, c, method="fast", n_iter=2)
    assert y.shape == (c.n_samples(c.min_frames),) and np.isfinite(y).all()


def test_inversion_quality_improves_with_iterations() -> None:
    """A sanity anchor for the tests below: the default pipeline beats no iterations clearly."""
    x = harmonic_noise(HIFIGAN.sample_rate, 0.3)
    mel = melinvert.mel_spectrogram(x, HIFIGAN)
    n = HIFIGAN.n_samples(mel.shape[-1])
    l1 = {k: metrics.log_mel_l1(x[:n], melinvert.invert(mel, HIFIGAN, n_iter=k), HIFIGAN) for k in (0, 32)}
    assert l1[32] < 0.5 * l1[0], l1


# ---------------------------------------------------------------------- seeds, batches, dtypes


@pytest.mark.parametrize("method", ["gd+random+mfgla", "pinv+random+agla", "default"])
def test_a_seed_gives_the_same_audio_twice(method: str) -> None:
    mel = hifigan_mel()
    a = melinvert.invert(mel, HIFIGAN, method=method, n_iter=4, seed=7)
    b = melinvert.invert(mel, HIFIGAN, method=method, n_iter=4, seed=7)
    np.testing.assert_array_equal(a, b)
    if "random" in method:
        c = melinvert.invert(mel, HIFIGAN, method=method, n_iter=4, seed=8)
        assert np.abs(a - c).max() > 1e-3  # and another seed gives other audio


#: Once bugs (early NNLS stop over the batch, batch-averaged gd loss, random phases drawn per batch).
_BATCH_FIXED = ("default", "gd+pghi+gla", "pinv+random+fgla")


@pytest.mark.parametrize(
    "method",
    [
        "pinv+zero+agla",
        "transpose+pghi+mfgla",
        *_BATCH_FIXED,
    ],
)
def test_batch_equals_stacked_singles(method: str) -> None:
    mel = hifigan_mel(seeds=(0, 1), f0s=(150.0, 230.0))  # (2, 80, T), float64
    mel[1] += np.log(20.0)  # items far apart in level
    mel = mel.reshape(2, 1, *mel.shape[-2:])  # and a leading dim more
    batch = melinvert.invert(mel, HIFIGAN, method=method, n_iter=8, seed=3)
    singles = np.stack(
        [melinvert.invert(mel[i, 0], HIFIGAN, method=method, n_iter=8, seed=3) for i in range(2)]
    )
    assert batch.shape == (2, 1, HIFIGAN.n_samples(mel.shape[-1]))
    np.testing.assert_allclose(batch[:, 0], singles, rtol=0, atol=1e-9 * np.abs(singles).max())


@pytest.mark.parametrize(
    "method",
    [
        "default",
        "pinv+zero+agla",
        "pinv+random+fgla",
    ],
)
def test_float32_and_float64_agree(method: str) -> None:
    """Waveforms within 1e-3 of each other (peak ~0.5) and their mels within 1e-3 log-mel L1:
    float32 rounding (~1e-7) is carried through NNLS, the FFTs and 8 phase iterations, whose
    division by |spec| amplifies it where the spectrum is small, so agreement is loose (we
    measure ~2e-4) but three orders below the inversion's own error (~0.1)."""
    mel = hifigan_mel()
    y64 = melinvert.invert(mel, HIFIGAN, method=method, n_iter=8, seed=0)
    y32 = melinvert.invert(mel.astype(np.float32), HIFIGAN, method=method, n_iter=8, seed=0)
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    assert np.abs(y64 - y32).max() < 1e-3
    assert metrics.log_mel_l1(y64, y32.astype(np.float64), HIFIGAN) < 1e-3


def test_torch_input_keeps_kind_dtype_and_leading_dims() -> None:
    mel = torch.from_numpy(hifigan_mel(seeds=(0, 1, 2), f0s=(120.0, 150.0, 230.0))).reshape(3, 1, 80, -1)
    y = melinvert.invert(mel, HIFIGAN, method="fast", n_iter=2, device="cpu")
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64 and y.device.type == "cpu"
    assert y.shape == (3, 1, HIFIGAN.n_samples(mel.shape[-1]))


def test_length_argument() -> None:
    mel = hifigan_mel()
    n = HIFIGAN.n_samples(mel.shape[-1])
    for length in (n, n + HIFIGAN.hop_length - 1):  # every length whose mel has these frames
        y = melinvert.invert(mel, HIFIGAN, method="fast", n_iter=2, length=length)
        assert y.shape == (length,) and np.isfinite(y).all()


# ---------------------------------------------------------------------- callbacks


@pytest.mark.parametrize("method", ["nnls+pghi+fgla", "default"])
def test_callback_sees_every_iteration(method: str) -> None:
    mel = hifigan_mel()
    seen: list[tuple[int, tuple, tuple]] = []
    n = HIFIGAN.n_samples(mel.shape[-1])

    def cb(i: int, x: torch.Tensor, loss: torch.Tensor) -> None:
        seen.append((i, tuple(x.shape), tuple(loss.shape)))

    melinvert.invert(mel, HIFIGAN, method=method, n_iter=5, callback=cb)
    assert [s[0] for s in seen] == list(range(5))
    assert all(s[1] == (1, n) and s[2] == (1,) for s in seen)


def test_callback_can_stop_the_run() -> None:
    mel = hifigan_mel()
    seen: list[int] = []

    def cb(i: int, x: torch.Tensor, loss: torch.Tensor) -> bool:
        seen.append(i)
        return i == 1

    y = melinvert.invert(mel, HIFIGAN, method="nnls+pghi+mfgla", n_iter=20, callback=cb)
    assert seen == [0, 1]
    assert y.shape == (HIFIGAN.n_samples(mel.shape[-1]),) and np.isfinite(y).all()


def test_callback_per_block() -> None:
    """With blocks, every block's iterations are seen: 0..n-1 once per block."""
    x = speech_like(HIFIGAN.sample_rate, 1.5, seed=3)
    mel = melinvert.mel_spectrogram(x, HIFIGAN)
    seen: list[int] = []
    chunks = list(
        melinvert.invert_blocks(
            mel,
            HIFIGAN,
            method="nnls+pghi+fgla",
            n_iter=3,
            block_frames=64,
            callback=lambda i, est, loss: seen.append(i),
        )
    )
    assert len(chunks) >= 3
    assert seen == [0, 1, 2] * len(chunks)


# ---------------------------------------------------------------------- long audio in blocks


@pytest.fixture(scope="module")
def long_case():
    """6 s of speech-like audio, hifigan preset, default pipeline with 16 iterations: inverted in
    blocks of 64 frames (default overlap) through invert_blocks, and in one piece."""
    c = HIFIGAN
    x = speech_like(c.sample_rate, 6.0)
    mel = melinvert.mel_spectrogram(x, c)
    chunks = [ch.numpy()[0] for ch in melinvert.invert_blocks(mel, c, n_iter=16, seed=0, block_frames=64)]
    whole = melinvert.invert(mel, c, n_iter=16, seed=0)
    n = c.n_samples(mel.shape[-1])
    joins = np.cumsum([len(ch) for ch in chunks[:-1]])  # sample where each block hands over
    return {
        "config": c,
        "x": x[:n],
        "mel": mel,
        "chunks": chunks,
        "blocked": np.concatenate(chunks),
        "whole": whole,
        "join_frames": np.round(joins / c.hop_length).astype(int),
    }


def test_long_output_length_and_finite(long_case) -> None:
    c, mel, y = long_case["config"], long_case["mel"], long_case["blocked"]
    assert mel.shape[-1] > 500 and len(long_case["chunks"]) >= 10
    assert y.shape == (c.n_samples(mel.shape[-1]),) and y.dtype == np.float32
    assert np.isfinite(y).all()
    # join positions: BlockStream yields each block up to (end - edge) frames less the
    # cross-fade (KNOWN_RAMP_HOPS = 4 hops); blocks start every block_frames - overlap_frames
    # = 40 frames (edge = ceil(n_fft / hop) + 1 = 5)
    np.testing.assert_array_equal(long_case["join_frames"][:3], [55, 95, 135])


def test_long_blocks_and_no_blocks_give_similar_quality(long_case) -> None:
    c, x = long_case["config"], long_case["x"]
    blocked = metrics.log_mel_l1(x, long_case["blocked"], c)
    whole = metrics.log_mel_l1(x, long_case["whole"], c)
    assert whole < 0.15
    assert blocked <= 1.25 * whole, (blocked, whole)


def _join_windows(case, y: np.ndarray) -> np.ndarray:
    """Per join, the mean per-frame log-mel L1 of ``y`` over the frames within 0.5 s of it."""
    c = case["config"]
    per_frame = log_mel_frames(case["x"], y, c)
    half = round(0.5 * c.frame_rate)
    return np.array([per_frame[max(0, j - half) : j + half + 1].mean() for j in case["join_frames"]])


@pytest.fixture(scope="module")
def join_case():
    """6 s of speech-like audio in blocks of 256 frames (3 s): joins as long inputs get them."""
    c = HIFIGAN
    x = speech_like(c.sample_rate, 6.0, seed=2)
    mel = melinvert.mel_spectrogram(x, c)
    chunks = [ch.numpy()[0] for ch in melinvert.invert_blocks(mel, c, n_iter=16, seed=0, block_frames=256)]
    joins = np.cumsum([len(ch) for ch in chunks[:-1]])
    return {
        "config": c,
        "x": x,
        "blocked": np.concatenate(chunks),
        "whole": melinvert.invert(mel, c, n_iter=16, seed=0),
        "join_frames": np.round(joins / c.hop_length).astype(int),
    }


def test_long_joins_are_inaudible(join_case) -> None:
    """Within 0.5 s of every join, the log-mel L1 is at most 1.1x that of the same frames
    inverted in one piece. (The reference is the same frames without joins, not the clip's
    overall value: content differs in difficulty along the clip.)"""
    assert len(join_case["join_frames"]) >= 2
    blocked = _join_windows(join_case, join_case["blocked"])
    whole = _join_windows(join_case, join_case["whole"])
    assert (blocked <= 1.1 * whole).all(), blocked / whole


def test_invert_blocks_concatenation_equals_invert() -> None:
    x = speech_like(HIFIGAN.sample_rate, 2.0, seed=1)
    mel = melinvert.mel_spectrogram(x, HIFIGAN)
    kw = {"method": "pinv+random+fgla", "n_iter": 4, "seed": 5, "block_frames": 64}
    chunks = list(melinvert.invert_blocks(mel, HIFIGAN, **kw))
    assert len(chunks) >= 3 and all(isinstance(ch, torch.Tensor) and ch.dim() == 2 for ch in chunks)
    y = melinvert.invert(mel, HIFIGAN, **kw)
    np.testing.assert_array_equal(torch.cat(chunks, dim=-1)[0].numpy(), y)


# ---------------------------------------------------------------------- names


def test_list_methods_names_every_stage_and_pipeline() -> None:
    listed = melinvert.list_methods()
    bare = {key.split(" (")[0] for key in listed}
    registries = {
        "pipeline": registry.pipelines(),
        "stage 1": registry.names("magnitude"),
        "initial phase": registry.names("init"),
        "stage 2": registry.names("phase"),
        "stage 3": registry.names("refine"),
    }
    for what, names in registries.items():
        for name in names:
            assert name in bare, f"{what} {name!r} is not listed"
            if what != "pipeline":
                assert f"{name} ({what})" in listed
    assert set(registry.pipelines()) <= set(listed)
    assert all(isinstance(d, str) and d.strip() for d in listed.values())
    assert {"default", "fast", "nnls", "pinv", "transpose", "gd", "pghi", "random", "zero"} <= bare
    assert {"gla", "fgla", "agla", "mgla", "mfgla", "magla"} <= bare


def test_parse_method_fills_defaults_in_any_order() -> None:
    assert pipeline.parse_method("fgla").spelled == "nnls(iters=36)+pghi+fgla(iters=32)"
    assert pipeline.parse_method("agla+zero+pinv") == pipeline.parse_method("pinv+zero+agla")
    assert pipeline.parse_method("transpose").kinds() == ["magnitude", "init"]  # no stage 2: no iterations
    assert (
        pipeline.parse_method("default", 5).spelled
        == "sharpen+nnls(iters=20)+pghi+magla(iters=5, given_alpha=0.9, given_beta=0.9)"
    )


# ---------------------------------------------------------------------- errors


MEL = np.full((80, 20), -5.0, dtype=np.float32)


@pytest.mark.parametrize(
    ("mel", "kwargs", "match"),
    [
        (np.full((40, 20), -5.0, np.float32), {}, r"40 mel bins.*n_mels=80"),
        (np.full((20, 80), -5.0, np.float32), {}, r"20 mel bins.*n_mels=80.*time-first"),
        (np.where(np.arange(20) == 3, np.nan, MEL).astype(np.float32), {}, "NaN or Inf"),
        (np.where(np.arange(20) == 3, -np.inf, MEL).astype(np.float32), {}, "NaN or Inf"),
        (np.zeros((80, 0), np.float32), {}, r"empty \(shape \(80, 0\)\)"),
        (np.full(80, -5.0, np.float32), {}, r"shaped \(\.\.\., n_mels, frames\), got shape \(80,\)"),
        (MEL, {"method": "nnls+fgal"}, r"unknown method 'fgal'.*did you mean fgla"),
        (MEL, {"method": "griffinlim"}, r"unknown method 'griffinlim'.*known: .*fgla"),
        (MEL, {"method": "nnls+pinv+fgla"}, "two stages of the same kind \\('pinv'"),
        (MEL, {"method": "gla+fgla"}, "two stages of the same kind \\('fgla'"),
        (MEL, {"method": ""}, "non-empty name"),
        (MEL, {"n_iter": -1}, r"n_iter=-1 must be an integer >= 0"),
        (MEL, {"n_iter": 2.5}, r"n_iter=2.5 must be an integer"),
        (np.abs(MEL), {}, "looks like a linear mel"),
        (np.zeros((80, 20), np.int16), {}, "floating-point"),
        (MEL, {"length": 10}, r"length=10 does not fit a mel of 20 frames"),
        (MEL, {"block_frames": 10}, r"block_frames=10 must be >= 2 \* overlap_frames"),
        (MEL, {"device": "tpu"}, "device='tpu' is not a device name"),
    ],
    ids=[
        "n_mels",
        "time-first",
        "nan",
        "inf",
        "empty",
        "1-D",
        "typo",
        "unknown",
        "repeated-magnitude",
        "repeated-phase",
        "empty-method",
        "negative-n_iter",
        "float-n_iter",
        "linear-for-log",
        "integer",
        "length",
        "block_frames",
        "device",
    ],
)
def test_invert_errors(mel, kwargs, match: str) -> None:
    with pytest.raises(MelinvertError, match=match):
        melinvert.invert(mel, HIFIGAN, **kwargs)


def test_invert_error_too_few_frames() -> None:
    c = melinvert.get_preset("tacotron2-22k-80")  # centred: the shortest audio gives 3 frames
    assert c.min_frames == 3
    with pytest.raises(MelinvertError, match=r"a mel of 2 frame\(s\) is shorter .* \(at least 3\)"):
        melinvert.invert(MEL[:, :2], c)


def test_invert_error_unknown_preset_and_overlap() -> None:
    with pytest.raises(MelinvertError, match="unknown preset 'hifigan'; did you mean hifigan-22k-80"):
        melinvert.invert(MEL, "hifigan")
    with pytest.raises(MelinvertError, match=r"overlap_frames=3 must be an integer >= 7"):
        melinvert.invert_blocks(MEL, HIFIGAN, overlap_frames=3)

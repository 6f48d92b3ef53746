"""MelConfig validation, (de)serialisation, frame arithmetic, and the compression codecs.

The codecs are checked in float64 against formulas written here, librosa's ``power_to_db`` /
``amplitude_to_db``, and Coqui TTS's ``AudioProcessor.normalize`` as published.
"""

from __future__ import annotations

import dataclasses
import json
import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

import melinvert
from melinvert import Compression, MelConfig, MelinvertError
from melinvert.config import COMPRESSIONS, WHISPER_RANGE

PRESET_NAMES = melinvert.list_presets()


def _stats_config(n_mels: int = 4) -> MelConfig:
    return MelConfig(
        n_mels=n_mels,
        compression=Compression(
            kind="log10", floor=1e-10, mean=[-3.0, -2.5, -2.0, -1.5], std=[1.0, 2.0, 0.5, 1.5]
        ),
    )


def speech_like(sr: int, dur: float = 0.4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(sr * dur)
    t = np.arange(n) / sr
    phase = 2 * np.pi * np.cumsum(110.0 + 15.0 * np.sin(2 * np.pi * 2 * t)) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 30)) + 0.01 * rng.standard_normal(n)
    y = scipy.signal.lfilter([1.0], [1.0, -0.9], y)
    return (0.5 * y / np.abs(y).max()).astype(np.float64)


# ---------------------------------------------------------------------- MelConfig validation

BAD_CONFIGS = [
    # (changes, match)
    ({"sample_rate": 22050.0}, r"sample_rate=22050\.0 must be an integer >= 1"),
    ({"sample_rate": 0}, r"sample_rate=0 must be an integer >= 1"),
    ({"sample_rate": True}, r"sample_rate=True must be an integer"),
    ({"n_fft": "1024"}, r"n_fft='1024' must be an integer >= 2"),
    ({"n_fft": 1}, r"n_fft=1 must be an integer >= 2"),
    ({"hop_length": 0}, r"hop_length=0 must be an integer >= 1"),
    ({"hop_length": 2.5}, r"hop_length=2\.5 must be an integer >= 1"),
    ({"win_length": 2048}, r"win_length=2048 must be an integer in \[1, n_fft=1024\]"),
    ({"win_length": 0}, r"win_length=0 must be an integer in \[1, n_fft=1024\]"),
    ({"win_length": 512.0}, r"win_length=512\.0 must be an integer"),
    ({"win_length": 512, "hop_length": 600}, r"hop_length=600 must be <= win_length=512"),
    ({"hop_length": 1025}, r"hop_length=1025 must be <= win_length=1024"),
    ({"window": "hanning"}, r"window='hanning' must be one of hann, hamming, blackman, rect"),
    ({"window": None}, r"window=None must be one of"),
    ({"padding": "same"}, r"padding='same' must be one of center, half_overlap, none"),
    ({"pad_mode": "edge"}, r"pad_mode='edge' must be one of reflect, constant"),
    ({"mag_eps": -1e-9}, r"mag_eps=-1e-09 must be a number >= 0"),
    ({"mag_eps": float("nan")}, r"mag_eps=nan must be a number >= 0"),
    ({"mag_eps": "1e-9"}, r"mag_eps='1e-9' must be a number"),
    ({"mag_eps_mode": "max"}, r"mag_eps_mode='max' must be 'add' or 'clamp'"),
    ({"power": 0}, r"power=0 must be > 0"),
    ({"power": float("inf")}, r"power=inf must be > 0"),
    ({"power": "2"}, r"power='2' must be > 0"),
    ({"n_mels": 0}, r"n_mels=0 must be an integer >= 1"),
    ({"n_mels": 80.0}, r"n_mels=80\.0 must be an integer >= 1"),
    ({"fmin": -1.0}, r"fmin=-1\.0 must be in \[0, 11025\) Hz"),
    ({"fmin": 11025.0}, r"fmin=11025\.0 must be in \[0, 11025\) Hz"),
    ({"fmin": None}, r"fmin=None must be in"),
    ({"fmin": 200.0, "fmax": 100.0}, r"fmax=100\.0 must be None or in \(fmin=200, 11025\] Hz"),
    ({"fmin": 200.0, "fmax": 200.0}, r"fmax=200\.0 must be None or in \(fmin=200"),
    ({"fmax": 12000.0}, r"fmax=12000\.0 must be None or in \(fmin=0, 11025\] Hz"),
    ({"fmax": "8000"}, r"fmax='8000' must be None or in"),
    ({"mel_scale": "mel"}, r"mel_scale='mel' must be 'slaney' or 'htk'"),
    ({"mel_norm": 1}, r"mel_norm=1 must be 'slaney' or None"),
    ({"mel_norm": "htk"}, r"mel_norm='htk' must be 'slaney' or None"),
    ({"drop_last_frame": 1}, r"drop_last_frame must be True or False"),
    ({"compression": "ln"}, r"compression must be a melinvert\.Compression"),
    ({"compression": {"kind": "ln"}}, r"compression must be a melinvert\.Compression"),
    (
        {"n_mels": 3, "compression": Compression(mean=(0.0, 0.0), std=(1.0, 1.0))},
        r"compression statistics have 2 bins but n_mels=3",
    ),
    ({"padding": "half_overlap", "hop_length": 255}, r"padding='half_overlap' needs n_fft - hop_length even"),
    (
        {"padding": "half_overlap", "n_fft": 1023, "hop_length": 256},
        r"padding='half_overlap' needs n_fft - hop_length even; got 1023 - 256",
    ),
]


@pytest.mark.parametrize(("changes", "match"), BAD_CONFIGS)
def test_melconfig_validation(changes: dict, match: str) -> None:
    with pytest.raises(MelinvertError, match=match):
        MelConfig(**changes)


def test_valid_edge_configs() -> None:
    c = MelConfig(win_length=512)
    assert c.win_length == 512 and MelConfig().win_length == 1024
    MelConfig(hop_length=1024)  # hop == win is allowed
    MelConfig(fmax=11025.0, fmin=11024.0)
    MelConfig(padding="half_overlap", n_fft=1023, hop_length=255)
    MelConfig(sample_rate=8000, fmax=4000)  # an int fmax is a number
    # fmax at Nyquist is the same filterbank as None and is stored as None
    assert MelConfig(fmax=11025.0) == MelConfig(fmax=None) and MelConfig(fmax=11025).fmax is None


BAD_COMPRESSIONS = [
    ({"kind": "log2"}, r"compression kind='log2' must be one of none, ln, log10, db, log1p, whisper, coqui"),
    ({"kind": None}, r"compression kind=None must be one of"),
    ({"floor": 0.0}, r"compression floor=0\.0 must be > 0"),
    ({"floor": -1e-5}, r"compression floor=-1e-05 must be > 0"),
    ({"floor": "1e-5"}, r"compression floor=1e-5 must be > 0"),
    ({"floor": float("nan")}, r"compression floor=nan must be > 0"),
    ({"multiplier": 0}, r"compression multiplier=0 must be > 0"),
    ({"multiplier": True}, r"compression multiplier=True must be > 0"),
    ({"ref": -1.0}, r"compression ref=-1\.0 must be > 0"),
    ({"top_db": 0.0}, r"compression top_db=0\.0 must be None or > 0"),
    ({"top_db": "80"}, r"compression top_db=80 must be None or > 0"),
    ({"min_level_db": 0.0}, r"compression min_level_db=0\.0 must be < 0"),
    ({"min_level_db": 10}, r"compression min_level_db=10 must be < 0"),
    ({"max_norm": 0.0}, r"compression max_norm=0\.0 must be > 0"),
    ({"ref_level_db": float("inf")}, r"compression ref_level_db=inf must be finite"),
    ({"ref_level_db": None}, r"compression ref_level_db=None must be finite"),
    ({"mean": (0.0,)}, r"compression mean and std must be given together"),
    ({"std": (1.0,)}, r"compression mean and std must be given together"),
    ({"mean": (0.0, 1.0), "std": (1.0,)}, r"compression mean \(2\) and std \(1\) differ in length"),
    ({"mean": (float("nan"),), "std": (1.0,)}, r"compression mean has NaN or Inf"),
    ({"mean": (0.0,), "std": (0.0,)}, r"compression std must be finite and > 0"),
    ({"mean": (0.0,), "std": (-1.0,)}, r"compression std must be finite and > 0"),
    ({"mean": (0.0,), "std": (float("inf"),)}, r"compression std must be finite and > 0"),
]


@pytest.mark.parametrize(("changes", "match"), BAD_COMPRESSIONS)
def test_compression_validation(changes: dict, match: str) -> None:
    with pytest.raises(MelinvertError, match=match):
        Compression(**changes)


@pytest.mark.parametrize(
    "changes",
    [{"mean": ("a",), "std": (1.0,)}, {"mean": 5, "std": 5}, {"mean": (None,), "std": (1.0,)}],
)
def test_compression_bad_statistics_type(changes: dict) -> None:
    with pytest.raises(MelinvertError, match=r"compression (mean|std)"):
        Compression(**changes)


@pytest.mark.parametrize("field", ["symmetric", "clip_norm"])
def test_compression_bool_fields_validated(field: str) -> None:
    with pytest.raises(MelinvertError, match=field):
        Compression(kind="coqui", **{field: "no"})


def test_compression_lists_become_tuples() -> None:
    c = Compression(mean=[1, 2], std=[3, 4])
    assert c.mean == (1.0, 2.0) and c.std == (3.0, 4.0)
    assert isinstance(c.mean, tuple) and isinstance(c.mean[0], float)
    hash(c)


# ---------------------------------------------------------------------- frozen, equality, differences


def test_frozen() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.n_fft = 2048  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.compression.floor = 1.0  # type: ignore[misc]


def test_name_not_compared_and_replace_drops_it() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    d = c.replace()
    assert d == c and d.name is None and c.name == "hifigan-22k-80"
    assert hash(d) == hash(c)
    with pytest.raises(MelinvertError, match=r"hop_length=4000 must be <= win_length=3000"):
        c.replace(n_fft=3000, win_length=3000, hop_length=4000)


def test_differences_names_fields() -> None:
    a = melinvert.get_preset("hifigan-22k-80")
    b = melinvert.get_preset("tacotron2-22k-80")
    assert a.differences(b) == ["padding", "mag_eps"]
    assert a.differences(a.replace()) == []
    c = a.replace(
        n_mels=4, fmax=None, compression=Compression(kind="db", top_db=80.0, mean=(0,) * 4, std=(1,) * 4)
    )
    assert a.differences(c) == [
        "n_mels",
        "fmax",
        "compression.kind",
        "compression.top_db",
        "compression.mean",
        "compression.std",
    ]
    assert set(b.differences(melinvert.get_preset("whisper-16k-80"))) >= {
        "sample_rate",
        "n_fft",
        "power",
        "drop_last_frame",
        "compression.kind",
        "compression.floor",
    }


# ---------------------------------------------------------------------- (de)serialisation


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_dict_json_round_trip_presets(name: str) -> None:
    c = melinvert.get_preset(name)
    text = json.dumps(c.to_dict())
    back = MelConfig.from_dict(json.loads(text))
    assert back == c
    assert back.differences(c) == []
    assert back.name == name
    assert MelConfig.from_json(c.to_json()) == c


def test_round_trip_with_statistics() -> None:
    c = _stats_config()
    d = json.loads(json.dumps(c.to_dict()))
    assert d["compression"]["mean"] == [-3.0, -2.5, -2.0, -1.5]
    assert d["format"] == "melinvert-config/1"
    back = MelConfig.from_dict(d)
    assert back == c and back.compression.mean == c.compression.mean
    assert MelConfig.from_json(c.to_json()) == c


def test_from_dict_shorthands() -> None:
    assert MelConfig.from_dict({}) == MelConfig()
    assert MelConfig.from_dict({"compression": "log10"}).compression == Compression(kind="log10")
    comp = Compression(kind="db", top_db=80.0)
    assert MelConfig.from_dict({"compression": comp}).compression is comp


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"nfft": 1024}, r"unknown config field\(s\): nfft"),
        ({"nfft": 1, "hop": 2}, r"unknown config field\(s\): hop, nfft"),
        ({"compression": {"kind": "ln", "flor": 1e-5}}, r"unknown compression field\(s\): flor"),
        ({"format": "melinvert-config/2"}, r"config format 'melinvert-config/2' is not supported"),
        ({"compression": 5}, r"compression must be an object, a kind name, or a Compression"),
        ({"compression": {"mean": 1.0, "std": 1.0}}, r"compression mean must be a list of numbers"),
        ({"compression": "log2"}, r"compression kind='log2' must be one of"),
        ({"n_fft": "1024"}, r"n_fft='1024' must be an integer"),
        ([1, 2], r"a config must be a JSON object, got list"),
    ],
)
def test_from_dict_errors(data: object, match: str) -> None:
    with pytest.raises(MelinvertError, match=match):
        MelConfig.from_dict(data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", r"config is not valid JSON: .* at line 1"),
        ('{"n_fft": 1024,}', r"config is not valid JSON"),
        ("", r"config is not valid JSON"),
        ("[1]", r"a config must be a JSON object, got list"),
        ('{"fmin": NaN}', r"fmin=nan must be in"),
        ('{"n_fft": 1024, "typo": 1}', r"unknown config field\(s\): typo"),
    ],
)
def test_from_json_errors(text: str, match: str) -> None:
    with pytest.raises(MelinvertError, match=match):
        MelConfig.from_json(text)


# ---------------------------------------------------------------------- presets


def test_get_preset_unknown_suggests() -> None:
    with pytest.raises(MelinvertError, match=r"unknown preset 'hifigan-22k-81'; did you mean hifigan-22k-80"):
        melinvert.get_preset("hifigan-22k-81")
    with pytest.raises(MelinvertError, match=r"unknown preset 'zzz'; known: hifigan-22k-80"):
        melinvert.get_preset("zzz")
    assert melinvert.get_preset("vocos-24k-100").name == "vocos-24k-100"


# ---------------------------------------------------------------------- derived values, frames


def test_derived_properties() -> None:
    c = melinvert.get_preset("hifigan-22k-80")
    assert (c.n_freqs, c.pad, c.fmax_hz) == (513, 384, 8000.0)
    assert c.frame_rate == pytest.approx(22050 / 256)
    assert melinvert.get_preset("tacotron2-22k-80").pad == 512
    assert melinvert.get_preset("bigvgan-44k-128").fmax_hz == 22050.0
    assert MelConfig(padding="none").pad == 0


def _lengths(c: MelConfig, rng: np.random.Generator) -> list[int]:
    m = c.min_samples
    fixed = [m, m + 1, m + c.hop_length - 1, m + c.hop_length, c.n_fft, c.n_fft + 1, 3 * c.n_fft + 7]
    return sorted({n for n in fixed if n >= m} | set(rng.integers(m, 4 * c.n_fft, size=12).tolist()))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_n_frames_matches_mel_spectrogram(name: str) -> None:
    c = melinvert.get_preset(name)
    rng = np.random.default_rng(len(name))
    for n in _lengths(c, rng):
        mel = melinvert.mel_spectrogram(torch.zeros(n, dtype=torch.float64), c)
        assert mel.shape == (c.n_mels, c.n_frames(n)), n
        assert c.n_frames(n) >= 1
    assert c.n_frames(c.min_samples - 1) == 0
    if c.min_samples > 1:
        with pytest.raises(MelinvertError, match=f"fewer than the {c.min_samples} one frame needs"):
            melinvert.mel_spectrogram(torch.zeros(c.min_samples - 1), c)


@pytest.mark.parametrize(
    "cfg",
    [
        MelConfig(padding="none", n_fft=64, hop_length=16, n_mels=8),
        MelConfig(padding="center", pad_mode="constant", n_fft=63, hop_length=10, n_mels=8),
        MelConfig(padding="half_overlap", n_fft=63, hop_length=13, n_mels=8, drop_last_frame=True),
        MelConfig(padding="center", n_fft=65, hop_length=7, win_length=40, n_mels=8, drop_last_frame=True),
    ],
)
def test_n_frames_matches_for_odd_configs(cfg: MelConfig) -> None:
    for n in range(cfg.min_samples, cfg.min_samples + 2 * cfg.n_fft):
        mel = melinvert.mel_spectrogram(torch.zeros(n, dtype=torch.float64), cfg)
        assert mel.shape[-1] == cfg.n_frames(n), n


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_n_frames_of_n_samples(name: str) -> None:
    c = melinvert.get_preset(name)
    with pytest.raises(MelinvertError, match="shorter than any audio"):
        c.n_samples(c.min_frames - 1)
    checked = 0
    t_min = c.n_frames(c.min_samples)  # fewer frames are impossible (e.g. 3 for tacotron2-22k-80)
    for t in range(t_min, 200):
        n = c.n_samples(t)
        if n < c.min_samples:
            continue  # see test_n_samples_is_a_valid_length
        assert c.n_frames(n) == t, t
        checked += 1
    assert checked >= 195


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_n_samples_is_a_valid_length(name: str) -> None:
    c = melinvert.get_preset(name)
    for t in range(c.min_frames, 8):
        assert c.n_samples(t) >= c.min_samples, t
        # every frame count the forward transform can produce is reproduced exactly
        if any(c.n_frames(n) == t for n in range(c.min_samples, c.min_samples + 2 * c.hop_length + c.n_fft)):
            assert c.n_frames(c.n_samples(t)) == t, t


# ---------------------------------------------------------------------- codecs: encode


def _linear(
    shape: tuple[int, ...] = (2, 6, 40), lo: float = -12.0, hi: float = 2.0, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 10.0 ** rng.uniform(lo, hi, size=shape)


def _enc(comp: Compression, x: np.ndarray) -> np.ndarray:
    out = comp.encode(torch.from_numpy(x))
    assert out.dtype == torch.float64
    return out.numpy()


def _dec(comp: Compression, v: np.ndarray) -> np.ndarray:
    out = comp.decode(torch.from_numpy(v))
    assert out.dtype == torch.float64
    return out.numpy()


@pytest.mark.parametrize("floor", [1e-5, 1e-10, 0.3])
def test_encode_ln_log10(floor: float) -> None:
    x = _linear()
    np.testing.assert_allclose(
        _enc(Compression(kind="ln", floor=floor), x), np.log(np.maximum(x, floor)), rtol=1e-14
    )
    np.testing.assert_allclose(
        _enc(Compression(kind="log10", floor=floor), x), np.log10(np.maximum(x, floor)), rtol=1e-14
    )


def test_encode_none_and_log1p() -> None:
    x = _linear()
    np.testing.assert_array_equal(_enc(Compression(kind="none"), x), x)
    np.testing.assert_allclose(_enc(Compression(kind="log1p"), x), np.log1p(x), rtol=1e-14)


@pytest.mark.parametrize("top_db", [None, 80.0, 30.0])
@pytest.mark.parametrize("ref", [1.0, 3.7, 1e-12])
@pytest.mark.parametrize("floor", [1e-10, 1e-5])
def test_encode_db_power_matches_librosa(top_db: float | None, ref: float, floor: float) -> None:
    x = _linear((6, 40))
    got = _enc(Compression(kind="db", multiplier=10.0, floor=floor, ref=ref, top_db=top_db), x)
    want = librosa.power_to_db(x, ref=ref, amin=floor, top_db=top_db)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("top_db", [None, 80.0, 30.0])
@pytest.mark.parametrize("ref", [1.0, 3.7])
def test_encode_db_amplitude_matches_librosa(top_db: float | None, ref: float) -> None:
    x = _linear((6, 40))
    got = _enc(Compression(kind="db", multiplier=20.0, floor=1e-5, ref=ref, top_db=top_db), x)
    want = librosa.amplitude_to_db(x, ref=ref, amin=1e-5, top_db=top_db)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_encode_db_top_db_is_per_item() -> None:
    x = _linear((3, 6, 40))
    x[1] *= 1e-4
    comp = Compression(kind="db", multiplier=10.0, top_db=20.0)
    batch = _enc(comp, x)
    for i in range(3):
        np.testing.assert_allclose(batch[i], librosa.power_to_db(x[i], amin=1e-5, top_db=20.0), rtol=1e-12)


def test_encode_whisper_formula() -> None:
    x = _linear((3, 6, 40), lo=-14, hi=1)
    got = _enc(Compression(kind="whisper", floor=1e-10), x)
    for i in range(3):
        v = np.log10(np.maximum(x[i], 1e-10))
        v = np.maximum(v, v.max() - 8.0)
        np.testing.assert_allclose(got[i], (v + 4.0) / 4.0, rtol=1e-14)
        assert np.ptp(got[i]) <= WHISPER_RANGE / 4 + 1e-12


def _coqui_normalize(
    mel: np.ndarray,
    *,
    min_level: float,
    spec_gain: float,
    ref_level_db: float,
    min_level_db: float,
    max_norm: float,
    symmetric_norm: bool,
    clip_norm: bool,
) -> np.ndarray:
    """Coqui TTS: ``_amp_to_db`` then ``normalize`` (signal_norm, no stats), as published."""
    s = spec_gain * np.log10(np.maximum(min_level, mel))
    s = s - ref_level_db
    s_norm = (s - min_level_db) / (-min_level_db)
    if symmetric_norm:
        s_norm = ((2 * max_norm) * s_norm) - max_norm
        if clip_norm:
            s_norm = np.clip(s_norm, -max_norm, max_norm)
        return s_norm
    s_norm = max_norm * s_norm
    if clip_norm:
        s_norm = np.clip(s_norm, 0, max_norm)
    return s_norm


def _coqui_denormalize(
    s: np.ndarray,
    *,
    spec_gain: float,
    ref_level_db: float,
    min_level_db: float,
    max_norm: float,
    symmetric_norm: bool,
) -> np.ndarray:
    """Coqui TTS ``denormalize`` (without its clip) then ``_db_to_amp``."""
    if symmetric_norm:
        db = ((s + max_norm) * -min_level_db / (2 * max_norm)) + min_level_db
    else:
        db = (s * -min_level_db / max_norm) + min_level_db
    return 10.0 ** ((db + ref_level_db) / spec_gain)


COQUI_VARIANTS = [
    {"symmetric": True, "clip_norm": True},
    {"symmetric": True, "clip_norm": False},
    {"symmetric": False, "clip_norm": True},
    {"symmetric": False, "clip_norm": False, "multiplier": 10.0, "ref_level_db": 0.0, "min_level_db": -60.0},
    {"symmetric": True, "clip_norm": True, "max_norm": 1.0, "ref_level_db": 35.0},
]


@pytest.mark.parametrize("variant", COQUI_VARIANTS)
def test_coqui_matches_written_formula(variant: dict) -> None:
    comp = Compression(kind="coqui", floor=1e-5, **variant)
    kw = {
        "spec_gain": comp.multiplier,
        "ref_level_db": comp.ref_level_db,
        "min_level_db": comp.min_level_db,
        "max_norm": comp.max_norm,
        "symmetric_norm": comp.symmetric,
    }
    x = _linear((6, 40), lo=-7, hi=2)
    got = _enc(comp, x)
    np.testing.assert_allclose(
        got, _coqui_normalize(x, min_level=1e-5, clip_norm=comp.clip_norm, **kw), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(_dec(comp, got), _coqui_denormalize(got, **kw), rtol=1e-12)


def test_coqui_preset_is_coqui_defaults() -> None:
    comp = melinvert.get_preset("coqui-22k-80").compression
    x = _linear((6, 40), lo=-7, hi=2)
    want = _coqui_normalize(
        x,
        min_level=1e-5,
        spec_gain=20.0,
        ref_level_db=20.0,
        min_level_db=-100.0,
        max_norm=4.0,
        symmetric_norm=True,
        clip_norm=True,
    )
    np.testing.assert_allclose(_enc(comp, x), want, rtol=1e-12, atol=1e-12)


def test_statistics_applied_after_compression() -> None:
    comp = _stats_config().compression
    x = _linear((2, 4, 30))
    mean = np.array(comp.mean)[:, None]
    std = np.array(comp.std)[:, None]
    np.testing.assert_allclose(_enc(comp, x), (np.log10(np.maximum(x, 1e-10)) - mean) / std, rtol=1e-13)
    with pytest.raises(MelinvertError, match="mel has 5 bins but the compression statistics have 4"):
        comp.encode(torch.ones(5, 3, dtype=torch.float64))
    with pytest.raises(MelinvertError, match="mel has 5 bins but the compression statistics have 4"):
        comp.decode(torch.ones(5, 3, dtype=torch.float64))


# ---------------------------------------------------------------------- codecs: decode


def _round_trip_cases() -> list[tuple[Compression, float, float]]:
    """(codec, lowest linear value that survives, highest) for each codec."""
    return [
        (Compression(kind="none"), 0.0, 1e3),
        (Compression(kind="ln", floor=1e-5), 1e-5, 1e3),
        (Compression(kind="log10", floor=1e-10), 1e-10, 1e3),
        (Compression(kind="db", multiplier=10.0, floor=1e-10, ref=2.5), 1e-10, 1e3),
        (Compression(kind="db", multiplier=20.0, floor=1e-5, top_db=300.0), 1e-5, 1e3),
        (Compression(kind="log1p"), 0.0, 1e3),
        (Compression(kind="whisper", floor=1e-10), 1e-5, 1e3),  # within 8 decades of the max
        (Compression(kind="coqui", floor=1e-5), 1e-4, 10.0),  # [min_level_db, 0] + ref_level_db
        (Compression(kind="coqui", floor=1e-5, symmetric=False), 1e-4, 10.0),
        (Compression(kind="ln", floor=1e-5, mean=(1.0,) * 6, std=(2.0,) * 6), 1e-5, 1e3),
        (Compression(kind="coqui", floor=1e-5, mean=(0.5,) * 6, std=(3.0,) * 6), 1e-4, 10.0),
    ]


@pytest.mark.parametrize(("comp", "lo", "hi"), _round_trip_cases())
def test_decode_inverts_encode(comp: Compression, lo: float, hi: float) -> None:
    rng = np.random.default_rng(1)
    llo = math.log10(lo) if lo > 0 else -12.0
    x = 10.0 ** rng.uniform(llo, math.log10(hi), size=(2, 6, 50))
    x[:, 0, 0] = max(lo, 1e-12)
    x[:, 1, 0] = hi
    if lo == 0:
        x[:, 2, 0] = 0.0
    np.testing.assert_allclose(_dec(comp, _enc(comp, x)), x, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("comp", "clip_level"),
    [
        (Compression(kind="ln", floor=1e-5), 1e-5),
        (Compression(kind="log10", floor=1e-10), 1e-10),
        (Compression(kind="db", multiplier=20.0, floor=1e-5), 1e-5),
        (Compression(kind="db", multiplier=10.0, floor=1e-10, ref=3.0), 1e-10),
        (Compression(kind="coqui", floor=1e-5, clip_norm=False), 1e-5),
        (Compression(kind="coqui", floor=1e-5), 1e-4),  # clip_norm: the normalised range ends at -80 dB
        (Compression(kind="ln", floor=1e-5, mean=(1.0,) * 6, std=(2.0,) * 6), 1e-5),
    ],
)
def test_clipped_values_decode_to_the_floor(comp: Compression, clip_level: float) -> None:
    x = _linear((6, 20), lo=-3, hi=1)
    x[:, :5] = 0.0
    x[:, 5:10] = clip_level * 1e-3
    out = _dec(comp, _enc(comp, x))
    np.testing.assert_allclose(out[:, :10], clip_level, rtol=1e-12)
    np.testing.assert_allclose(out[:, 10:], x[:, 10:], rtol=1e-12)


def test_top_db_and_whisper_clip_relative_to_max() -> None:
    x = _linear((6, 20), lo=-3, hi=1)
    x[0, 0] = 100.0
    x[1, :] = 1e-12
    comp = Compression(kind="db", multiplier=10.0, floor=1e-10, top_db=60.0)
    np.testing.assert_allclose(_dec(comp, _enc(comp, x))[1], 100.0 * 1e-6, rtol=1e-12)
    w = Compression(kind="whisper", floor=1e-10)
    np.testing.assert_allclose(_dec(w, _enc(w, x))[1], 100.0 * 10**-WHISPER_RANGE, rtol=1e-12)


def test_decode_clamps_impossible_values() -> None:
    v = torch.tensor([[-1.0, 0.5]], dtype=torch.float64)
    assert Compression(kind="none").decode(v).tolist() == [[0.0, 0.5]]
    np.testing.assert_allclose(
        Compression(kind="log1p").decode(v).numpy(), [[0.0, np.expm1(0.5)]], rtol=1e-14
    )


def test_float32_codecs_close_to_float64() -> None:
    x = _linear((6, 20), lo=-4, hi=1)
    for kind in COMPRESSIONS:
        comp = Compression(kind=kind)
        a = comp.encode(torch.from_numpy(x).float())
        assert a.dtype == torch.float32
        np.testing.assert_allclose(a.double().numpy(), _enc(comp, x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------- silence and range checks


def test_silence_value() -> None:
    assert Compression(kind="ln", floor=1e-5).silence_value() == pytest.approx(math.log(1e-5))
    assert Compression(kind="log10", floor=1e-10).silence_value() == pytest.approx(-10.0)
    assert Compression(kind="none").silence_value() == 0.0
    assert melinvert.get_preset("coqui-22k-80").compression.silence_value() == pytest.approx(-4.0)
    assert Compression(kind="whisper").silence_value() is None
    assert Compression(kind="db", top_db=80.0).silence_value() is None
    assert _stats_config().compression.silence_value() is None


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_range_problem_none_for_genuine_mels(name: str) -> None:
    c = melinvert.get_preset(name)
    x = speech_like(c.sample_rate)
    for audio in (x, 0.01 * x, np.zeros_like(x)):
        mel = melinvert.mel_spectrogram(torch.from_numpy(audio), c)
        assert c.compression.range_problem(mel) is None, float(mel.min())
        assert c.compression.range_problem(mel.float()) is None


@pytest.mark.parametrize(
    "name", [n for n in PRESET_NAMES if melinvert.get_preset(n).compression.kind != "none"]
)
def test_range_problem_flags_wrong_mels(name: str) -> None:
    c = melinvert.get_preset(name)
    x = torch.from_numpy(speech_like(c.sample_rate))
    comp = c.compression
    linear = melinvert.dsp.linear_mel(x, c)
    kind = comp.kind
    if kind in ("ln", "log10"):
        assert "looks like a linear mel" in comp.range_problem(linear + 1e-3)
        below = comp.encode(linear).clone()
        below[0, 0] = comp.silence_value() - 5.0
        assert "below the" in comp.range_problem(below)
    elif kind == "whisper":
        # a linear mel (or an ln mel) spans far more than Whisper's 2.0
        assert "not a Whisper log-mel" in comp.range_problem(linear)
        ln_mel = torch.log(torch.clamp(linear, min=1e-10))
        assert "not a Whisper log-mel" in comp.range_problem(ln_mel)
    elif kind == "coqui":
        assert "outside Coqui's normalised range" in comp.range_problem(linear * 100)
        assert "outside Coqui's normalised range" in comp.range_problem(
            torch.log(torch.clamp(linear, min=1e-5))
        )
    assert comp.range_problem(torch.zeros(0, 3)) == "the mel is empty"


@pytest.mark.parametrize("name", ["librosa-default", "torchaudio-default"])
def test_range_problem_flags_log_mel_for_linear_config(name: str) -> None:
    c = melinvert.get_preset(name)
    x = speech_like(c.sample_rate)
    log_mel = melinvert.mel_spectrogram(torch.from_numpy(x), "tacotron2-22k-80")
    assert "expects a linear mel" in c.compression.range_problem(log_mel)


def test_range_problem_db_and_log1p() -> None:
    db = Compression(kind="db", multiplier=10.0, floor=1e-10)
    assert "below the db floor -100" in db.range_problem(torch.tensor([[-120.0, 0.0]]))
    assert db.range_problem(torch.tensor([[-100.0, 3.0]])) is None
    assert "impossible for log1p" in Compression(kind="log1p").range_problem(torch.tensor([[-0.5, 1.0]]))
    assert _stats_config().compression.range_problem(torch.tensor([[-50.0, 50.0]])) is None

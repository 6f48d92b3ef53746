"""melinvert.io: audio and mel files, layouts, atomic writes, output planning, statistics."""

from __future__ import annotations

import io as _io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import melinvert
from melinvert.config import Compression, get_preset
from melinvert.errors import MelinvertError
from melinvert.io import (
    TEMP_PATTERN,
    atomic_write,
    check_output,
    load_audio,
    load_mel,
    load_stats,
    plan_outputs,
    read_mel_file,
    save_audio,
    save_mel,
    sidecar_path,
    to_mels_first,
    write_text,
)

HIFI = get_preset("hifigan-22k-80")


def _mel(tone, name: str = "hifigan-22k-80") -> np.ndarray:
    cfg = get_preset(name)
    return melinvert.mel_spectrogram(tone(cfg.sample_rate), cfg)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP_PATTERN.match(p.name))


# ---------------------------------------------------------------------- audio


def test_load_audio_mono_pcm16(wav_file: Path, tone) -> None:
    y, sr, notices = load_audio(wav_file)
    assert sr == 22050 and notices == []
    assert y.dtype == np.float32 and y.shape == (22050,)
    np.testing.assert_allclose(y, tone(22050), atol=1 / 32768 + 1e-7)


def test_load_audio_mixes_channels_with_notice(tmp_path: Path, tone) -> None:
    left = tone(16000)
    path = tmp_path / "st.flac"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000, subtype="PCM_24")
    y, sr, notices = load_audio(path)
    assert sr == 16000 and y.shape == left.shape
    np.testing.assert_allclose(y, left / 2, atol=1e-6)
    assert len(notices) == 1 and "mixed 2 channels down to mono" in notices[0]


def test_load_audio_resamples_with_notice(tmp_path: Path, tone) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, tone(16000), 16000, subtype="FLOAT")
    y, sr, notices = load_audio(path, sample_rate=22050)
    assert sr == 22050 and y.dtype == np.float32 and y.shape == (22050,)
    assert notices == [f"{path}: resampled 16000 Hz -> 22050 Hz"]
    # The tone survives: its RMS is kept within 1%.
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(tone(16000) ** 2)), rel=0.01)


def test_load_audio_ogg(tmp_path: Path, tone) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, tone(22050), 22050, format="OGG", subtype="VORBIS")
    y, sr, _ = load_audio(path)
    assert sr == 22050 and abs(y.shape[0] - 22050) <= 2048


def test_save_audio_pcm16_clips_with_notice(tmp_path: Path) -> None:
    y = np.array([0.0, 0.5, 1.5, -2.0, 0.25] * 100, dtype=np.float32)
    path = tmp_path / "out.wav"
    notices = save_audio(path, y, 8000)
    assert len(notices) == 1 and "clipped 200 samples" in notices[0]
    back, sr = sf.read(path, dtype="float32")
    assert sf.info(path).subtype == "PCM_16" and sr == 8000
    assert back.max() <= 1.0 and back.min() >= -1.0
    assert _leftovers(tmp_path) == []


def test_save_audio_float_keeps_values(tmp_path: Path) -> None:
    y = torch.tensor([0.0, 1.5, -2.0, 0.25])
    path = tmp_path / "out.wav"
    assert save_audio(path, y, 8000, subtype="FLOAT") == []
    back, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(back, y.numpy())
    assert sf.info(path).subtype == "FLOAT"


def test_save_audio_refuses_existing_then_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    save_audio(path, np.zeros(100, np.float32), 8000)
    with pytest.raises(MelinvertError, match=r"already exists; pass overwrite=True"):
        save_audio(path, np.ones(100, np.float32) * 0.5, 8000)
    save_audio(path, np.ones(100, np.float32) * 0.5, 8000, overwrite=True)
    assert sf.read(path)[0][0] == pytest.approx(0.5, abs=1e-4)


def test_save_audio_never_replaces_an_input(wav_file: Path) -> None:
    before = wav_file.read_bytes()
    with pytest.raises(MelinvertError, match="it is an input file"):
        save_audio(wav_file, np.zeros(10, np.float32), 8000, overwrite=True, protect=[wav_file])
    assert wav_file.read_bytes() == before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"path": "x.mp3"}, r"cannot write audio format '\.mp3'"),
        ({"path": "x.flac", "subtype": "FLOAT"}, "FLAC cannot store float samples"),
        ({"subtype": "PCM_8"}, r"subtype='PCM_8' must be one of"),
        ({"y": np.array([0.0, np.nan])}, "NaN or Inf"),
        ({"y": np.zeros(0)}, "is empty"),
        ({"y": np.zeros(4, np.int16)}, "must be floating point"),
        ({"sample_rate": 0}, r"sample_rate=0 must be an integer >= 1"),
    ],
)
def test_save_audio_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"path": "x.wav", "y": np.zeros(10, np.float32), "sample_rate": 8000, **kwargs}
    args["path"] = tmp_path / args["path"]
    with pytest.raises(MelinvertError, match=match):
        save_audio(**args)
    assert list(tmp_path.iterdir()) == []


# bad audio files --------------------------------------------------------


def test_load_audio_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(MelinvertError, match=r"is empty \(0 bytes\)"):
        load_audio(path)


def test_load_audio_truncated_data(wav_file: Path) -> None:
    data = wav_file.read_bytes()
    wav_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        MelinvertError, match=r"is truncated: its header declares 44100 bytes of audio but only"
    ):
        load_audio(wav_file)


def test_load_audio_truncated_header(wav_file: Path) -> None:
    wav_file.write_bytes(wav_file.read_bytes()[:30])
    with pytest.raises(MelinvertError, match="truncated"):
        load_audio(wav_file)


def test_load_audio_corrupt_header(wav_file: Path) -> None:
    data = bytearray(wav_file.read_bytes())
    data[20:36] = b"\xff" * 16  # fmt chunk garbage
    wav_file.write_bytes(bytes(data))
    with pytest.raises(MelinvertError, match=r"is not a readable \.wav audio file"):
        load_audio(wav_file)


def test_load_audio_text_renamed_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("these are not the samples you are looking for\n" * 20)
    with pytest.raises(MelinvertError, match=r"is not a readable \.wav audio file \(Format not recognised"):
        load_audio(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_load_audio_nan_inf(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "nan.wav"
    y = np.zeros(1000, np.float32)
    y[10] = bad
    sf.write(path, y, 8000, subtype="FLOAT")
    with pytest.raises(MelinvertError, match="contains NaN or Inf samples"):
        load_audio(path)


def test_load_audio_zero_length(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 8000)
    with pytest.raises(MelinvertError, match="holds no audio samples"):
        load_audio(path)


def test_load_audio_unsupported_and_missing(tmp_path: Path) -> None:
    mp3 = tmp_path / "a.mp3"
    mp3.write_bytes(b"ID3" + b"\0" * 100)
    with pytest.raises(MelinvertError, match=r"unsupported audio format '\.mp3'"):
        load_audio(mp3)
    with pytest.raises(MelinvertError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(MelinvertError, match="is a folder"):
        load_audio(tmp_path)


# ---------------------------------------------------------------------- mel files: reading


@pytest.mark.parametrize("fmt", ["npy", "npz", "pt"])
def test_save_load_roundtrip_records_config(tmp_path: Path, tone, fmt: str) -> None:
    mel = _mel(tone)
    path = tmp_path / f"m.{fmt}"
    assert save_mel(path, mel, HIFI) == path
    back, recorded = load_mel(path)
    assert recorded == HIFI and recorded.name == "hifigan-22k-80"
    np.testing.assert_array_equal(back, mel)
    assert back.dtype == np.float32
    back2, recorded2 = load_mel(path, config="hifigan-22k-80")
    np.testing.assert_array_equal(back2, mel)
    assert recorded2 == HIFI
    assert _leftovers(tmp_path) == []


def test_save_formats_are_plain(tmp_path: Path, tone) -> None:
    mel = _mel(tone)
    save_mel(tmp_path / "m.npy", mel, HIFI)
    assert sidecar_path(tmp_path / "m.npy") == tmp_path / "m.npy.json"
    assert json.loads((tmp_path / "m.npy.json").read_text()) == json.loads(json.dumps(HIFI.to_dict()))
    save_mel(tmp_path / "m.npz", mel, HIFI)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["config_json", "mel"]
        assert melinvert.MelConfig.from_json(str(z["config_json"])) == HIFI
    save_mel(tmp_path / "m.pt", torch.from_numpy(mel), HIFI)
    obj = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(obj) == {"mel", "config_json"} and isinstance(obj["config_json"], str)
    assert torch.equal(obj["mel"], torch.from_numpy(mel))


def test_save_time_first_and_batch(tmp_path: Path, tone) -> None:
    mel = _mel(tone, "pwg-22k-80")
    pwg = get_preset("pwg-22k-80")
    save_mel(tmp_path / "t.npy", mel, pwg, layout="time-first")
    assert np.load(tmp_path / "t.npy").shape == mel.shape[::-1]
    back, _ = load_mel(tmp_path / "t.npy")
    np.testing.assert_array_equal(back, mel)
    batch = np.stack([mel, mel])
    save_mel(tmp_path / "b.pt", batch, pwg)
    back, _ = load_mel(tmp_path / "b.pt", config=pwg)
    assert back.shape == (2, *mel.shape)


def test_save_mel_checks(tmp_path: Path, tone) -> None:
    mel = _mel(tone)
    with pytest.raises(MelinvertError, match=r"mel has 80 bins .* but n_mels=100"):
        save_mel(tmp_path / "m.npy", mel, "bigvgan-24k-100")
    with pytest.raises(MelinvertError, match=r"cannot write mel format '\.txt'"):
        save_mel(tmp_path / "m.txt", mel, HIFI)
    bad = mel.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MelinvertError, match="NaN or Inf"):
        save_mel(tmp_path / "m.npy", bad, HIFI)
    assert list(tmp_path.iterdir()) == []
    save_mel(tmp_path / "m.npy", mel, HIFI)
    with pytest.raises(MelinvertError, match="already exists"):
        save_mel(tmp_path / "m.npy", mel, HIFI)
    save_mel(tmp_path / "m.npy", mel, HIFI, overwrite=True)


def test_load_mel_config_mismatch_names_fields(tmp_path: Path, tone) -> None:
    path = tmp_path / "m.npz"
    save_mel(path, _mel(tone), HIFI)
    with pytest.raises(
        MelinvertError, match=r"records a different config.*padding 'half_overlap' in the file"
    ):
        load_mel(path, config="tacotron2-22k-80")
    with pytest.raises(MelinvertError, match=r"compression\.floor 1e-05 in the file vs 1e-07 asked"):
        load_mel(path, config=HIFI.replace(compression=Compression(kind="ln", floor=1e-7)))


def test_load_mel_plain_files_and_layouts(tmp_path: Path, tone) -> None:
    mel = _mel(tone)  # (80, 86)
    np.save(tmp_path / "a.npy", mel)
    back, rec = load_mel(tmp_path / "a.npy")
    assert rec is None and back.shape == (80, 86)
    np.save(tmp_path / "t.npy", mel.T)  # time-first, decided from 80 being a preset n_mels
    np.testing.assert_array_equal(load_mel(tmp_path / "t.npy")[0], mel)
    np.testing.assert_array_equal(load_mel(tmp_path / "t.npy", config=HIFI)[0], mel)
    np.save(tmp_path / "b.npy", mel[None, None])  # leading batch axes of 1 squeezed
    assert load_mel(tmp_path / "b.npy")[0].shape == (80, 86)
    np.save(tmp_path / "f16.npy", mel.astype(np.float16))
    assert load_mel(tmp_path / "f16.npy")[0].dtype == np.float32
    np.save(tmp_path / "f64.npy", mel.astype(np.float64))
    assert load_mel(tmp_path / "f64.npy")[0].dtype == np.float64
    np.save(tmp_path / "i.npy", np.ones((80, 50), np.int16))
    assert load_mel(tmp_path / "i.npy")[0].dtype == np.float32


def test_load_mel_layout_square_and_undecidable(tmp_path: Path) -> None:
    np.save(tmp_path / "sq.npy", np.full((80, 80), -3.0, np.float32))
    with pytest.raises(
        MelinvertError, match=r"square \(80 x 80\).*--layout mels-first or --layout time-first"
    ):
        load_mel(tmp_path / "sq.npy", config=HIFI)
    with pytest.raises(MelinvertError, match=r"square .* --layout"):
        load_mel(tmp_path / "sq.npy")
    assert load_mel(tmp_path / "sq.npy", config=HIFI, layout="time-first")[0].shape == (80, 80)
    np.save(tmp_path / "amb.npy", np.full((80, 100), -3.0, np.float32))
    with pytest.raises(MelinvertError, match=r"cannot tell which axis holds the mel bins; pass --layout"):
        load_mel(tmp_path / "amb.npy")
    assert load_mel(tmp_path / "amb.npy", config="bigvgan-24k-100")[0].shape == (100, 80)
    assert load_mel(tmp_path / "amb.npy", layout="mels-first")[0].shape == (80, 100)


def test_load_mel_n_mels_disagrees(tmp_path: Path, tone) -> None:
    np.save(tmp_path / "a.npy", _mel(tone))
    with pytest.raises(
        MelinvertError, match=r"has 80 mel bins \(shape \(80, 86\)\) but the config has n_mels=128"
    ):
        load_mel(tmp_path / "a.npy", config="bigvgan-44k-128")
    with pytest.raises(MelinvertError, match=r"has 80 mel bins as mels-first .* n_mels=100"):
        load_mel(tmp_path / "a.npy", config="bigvgan-24k-100", layout="mels-first")


def test_load_mel_range_problems(tmp_path: Path, tone) -> None:
    linear = _mel(tone, "librosa-default")
    np.save(tmp_path / "lin.npy", linear[:80])
    with pytest.raises(
        MelinvertError, match=r"looks like a linear mel, but the config expects a ln-compressed"
    ):
        load_mel(tmp_path / "lin.npy", config=HIFI)
    np.save(tmp_path / "log.npy", _mel(tone, "bigvgan-44k-128"))
    with pytest.raises(MelinvertError, match=r"negative values .* expects a linear mel"):
        load_mel(tmp_path / "log.npy", config="librosa-default")
    np.save(tmp_path / "low.npy", _mel(tone, "vocos-24k-100"))
    with pytest.raises(MelinvertError, match=r"below the ln floor -11\.51"):
        load_mel(tmp_path / "low.npy", config="bigvgan-24k-100")


def test_load_mel_dict_files(tmp_path: Path, tone) -> None:
    mel = _mel(tone)
    np.savez(tmp_path / "one.npz", mel)  # arr_0
    np.testing.assert_array_equal(load_mel(tmp_path / "one.npz")[0], mel)
    np.savez(tmp_path / "feats.npz", feats=mel, f0=np.zeros(86))
    np.testing.assert_array_equal(load_mel(tmp_path / "feats.npz")[0], mel)
    np.savez(tmp_path / "many.npz", a=mel, b=mel)
    with pytest.raises(MelinvertError, match=r"several arrays \(a, b\) and none is obviously the mel"):
        load_mel(tmp_path / "many.npz")
    torch.save({"logmel": torch.from_numpy(mel), "speaker": 3, "text": "hi"}, tmp_path / "d.pt")
    np.testing.assert_array_equal(load_mel(tmp_path / "d.pt")[0], mel)
    torch.save([torch.from_numpy(mel)[None]], tmp_path / "l.pt")
    np.testing.assert_array_equal(load_mel(tmp_path / "l.pt")[0], mel)
    torch.save(torch.from_numpy(mel).to(torch.bfloat16), tmp_path / "bf.pt")
    assert load_mel(tmp_path / "bf.pt")[0].dtype == np.float32
    torch.save({"speaker": 3}, tmp_path / "none.pt")
    with pytest.raises(MelinvertError, match=r"holds no array \(keys: speaker\)"):
        load_mel(tmp_path / "none.pt")
    torch.save("text", tmp_path / "str.pt")
    with pytest.raises(MelinvertError, match="holds a str; expected a tensor"):
        load_mel(tmp_path / "str.pt")


class _Payload:
    """A custom class: pickling it puts a global reference in the file."""

    def __reduce__(self):  # pragma: no cover - only run if unpickled, which must never happen
        return (os.system, ("echo pwned",))


def test_load_mel_pickled_object_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"mel": torch.zeros(80, 10), "x": _Payload()}, path)
    with pytest.raises(MelinvertError, match=r"holds pickled Python objects \(posix\.system|holds pickled"):
        load_mel(path)
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(MelinvertError, match="never unpickles") as info:
        load_mel(plain)
    assert "\n" not in str(info.value)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MelinvertError, match=r"object array.*never unpickles"):
        load_mel(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", mel=np.array([{"a": 1}], dtype=object))
    with pytest.raises(MelinvertError, match="never unpickles"):
        load_mel(tmp_path / "obj.npz")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((80, 0), np.float32), r"empty array \(shape \(80, 0\)\)"),
        (np.full((80, 10), np.nan, np.float32), r"contains NaN or Inf \(800 of 800 values\)"),
        (np.full((80, 10), np.inf), "NaN or Inf"),
        (np.zeros((80, 10), np.complex64), "holds complex values"),
        (np.zeros((80, 10), bool), "non-numeric dtype bool"),
        (np.array(["a", "b"]), "non-numeric dtype <U1"),
        (np.zeros(80, np.float32), r"shape \(80,\): a mel needs two axes"),
        (np.zeros((2, 3, 80, 10), np.float32), "at most one batch axis"),
    ],
)
def test_load_mel_bad_arrays(tmp_path: Path, array: np.ndarray, match: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(MelinvertError, match=match) as info:
        load_mel(path)
    assert "\n" not in str(info.value)


def test_load_mel_bad_tensors(tmp_path: Path) -> None:
    torch.save(torch.zeros(80, 10, dtype=torch.complex64), tmp_path / "c.pt")
    with pytest.raises(MelinvertError, match="holds complex values"):
        load_mel(tmp_path / "c.pt")
    torch.save(torch.zeros(80, 10, dtype=torch.bool), tmp_path / "b.pt")
    with pytest.raises(MelinvertError, match="non-numeric dtype bool"):
        load_mel(tmp_path / "b.pt")


def test_load_mel_bad_files(tmp_path: Path) -> None:
    (tmp_path / "e.npy").write_bytes(b"")
    with pytest.raises(MelinvertError, match=r"is empty \(0 bytes\)"):
        load_mel(tmp_path / "e.npy")
    (tmp_path / "t.npy").write_text("hello")
    with pytest.raises(MelinvertError, match=r"is not a readable \.npy file"):
        load_mel(tmp_path / "t.npy")
    (tmp_path / "t.pt").write_text("hello")
    with pytest.raises(MelinvertError, match=r"\.pt"):
        load_mel(tmp_path / "t.pt")
    (tmp_path / "m.csv").write_text("1,2")
    with pytest.raises(MelinvertError, match=r"unsupported mel format '\.csv'"):
        load_mel(tmp_path / "m.csv")
    np.save(tmp_path / "s.npy", np.zeros((80, 5), np.float32))
    (tmp_path / "s.npy.json").write_text("{not json")
    with pytest.raises(
        MelinvertError, match=r"s\.npy\.json: the recorded config is invalid: config is not valid JSON"
    ):
        load_mel(tmp_path / "s.npy")


def test_to_mels_first_direct() -> None:
    a = np.zeros((10, 128), np.float32)
    mel, layout = to_mels_first(a)
    assert layout == "time-first" and mel.shape == (128, 10) and mel.flags.c_contiguous
    with pytest.raises(MelinvertError, match=r"layout='sideways' must be one of"):
        to_mels_first(a, layout="sideways")


# ---------------------------------------------------------------------- fuzzing: only MelinvertError

_PREFIXES = [b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"RIFF\x24\x00\x00\x00WAVEfmt ", b"\x80\x02"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ext=st.sampled_from([".npy", ".npz", ".pt", ".wav"]),
    prefix=st.sampled_from(_PREFIXES),
    body=st.binary(max_size=600),
)
def test_fuzz_random_bytes(tmp_path: Path, ext: str, prefix: bytes, body: bytes) -> None:
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(prefix + body)
    try:
        if ext == ".wav":
            load_audio(path)
        else:
            load_mel(path)
    except MelinvertError as e:
        assert "\n" not in str(e)


_DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "uint8", "bool", "complex64"]


def _valid_file(path: Path, arr: np.ndarray) -> None:
    if path.suffix == ".npy":
        np.save(path, arr)
    elif path.suffix == ".npz":
        np.savez(path, mel=arr)
    else:
        torch.save(torch.from_numpy(arr), path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ext=st.sampled_from([".npy", ".npz", ".pt"]),
    shape=st.lists(st.integers(0, 130), min_size=0, max_size=4),
    dtype=st.sampled_from(_DTYPES),
    fill=st.sampled_from([-11.5, 0.0, 1.0, np.nan, np.inf, -3.0]),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
    config=st.sampled_from([None, "hifigan-22k-80", "librosa-default", "whisper-16k-80"]),
    layout=st.sampled_from(["auto", "mels-first", "time-first"]),
)
def test_fuzz_arrays(tmp_path: Path, ext, shape, dtype, fill, cut, config, layout) -> None:
    if int(np.prod(shape)) > 50_000:
        shape = shape[:2]
    arr = np.full(shape, fill if dtype.startswith(("float", "complex")) else 1).astype(dtype)
    if arr.size and dtype.startswith("float") and np.isfinite(fill):
        arr.flat[0] += 0.5  # not constant
    if dtype == "uint16":  # pragma: no cover - not in _DTYPES
        return
    path = tmp_path / f"a{ext}"
    _valid_file(path, arr)
    if cut is not None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * cut)])
    try:
        mel, _ = load_mel(path, config=config, layout=layout)
    except MelinvertError as e:
        assert "\n" not in str(e)
    else:
        assert mel.ndim in (2, 3) and mel.dtype in (np.float32, np.float64)
        assert np.isfinite(mel).all()


# ---------------------------------------------------------------------- atomic writes and outputs


def test_atomic_write_creates_folders_and_leaves_no_temp(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "c.bin"
    atomic_write(out, lambda f: f.write(b"hello"))
    assert out.read_bytes() == b"hello"
    assert _leftovers(out.parent) == []
    mode = out.stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    out = tmp_path / "c.bin"
    out.write_bytes(b"old")

    def boom(f: _io.BufferedWriter) -> None:
        f.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(out, boom, overwrite=True)
    assert out.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_output_folder_blocked_by_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    target = blocker / "sub" / "out.npy"
    with pytest.raises(
        MelinvertError, match=r"cannot write '.*afile/sub/out\.npy': '.*afile' is a file, not a folder"
    ):
        check_output(target)
    with pytest.raises(MelinvertError, match="is a file, not a folder"):
        write_text(target, "x")


def test_output_folder_unwritable(tmp_path: Path) -> None:
    target = Path("/proc/melinvert-test-no-such-dir/out.json")
    with pytest.raises(
        MelinvertError, match=r"cannot create output folder '/proc/melinvert-test-no-such-dir'"
    ):
        write_text(target, "{}")


def test_check_output_rules(tmp_path: Path) -> None:
    f = tmp_path / "x.npy"
    f.write_bytes(b"1")
    with pytest.raises(MelinvertError, match=r"output '.*x\.npy' already exists; pass overwrite=True"):
        check_output(f)
    assert check_output(f, overwrite=True) == f
    with pytest.raises(MelinvertError, match="it is an input file"):
        check_output(tmp_path / "." / "x.npy", overwrite=True, protect=[f])
    with pytest.raises(MelinvertError, match="is a folder, not a file"):
        check_output(tmp_path, overwrite=True)


def test_plan_outputs(tmp_path: Path) -> None:
    src = tmp_path / "in"
    (src / "sub" / "deep").mkdir(parents=True)
    for rel in ["a.wav", "sub/b.flac", "sub/deep/c.ogg", "sub/notes.txt", ".hidden/d.wav", "sub/.e.wav"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    out = tmp_path / "out"
    plan = plan_outputs([src], out, ".npy")
    assert [(i.relative_to(src).as_posix(), o.relative_to(out).as_posix()) for i, o in plan] == [
        ("a.wav", "a.npy"),
        ("sub/b.flac", "sub/b.npy"),
        ("sub/deep/c.ogg", "sub/deep/c.npy"),
    ]
    # One file: OUT may be the file itself, or a folder.
    assert plan_outputs([src / "a.wav"], tmp_path / "x.npy", ".npy") == [(src / "a.wav", tmp_path / "x.npy")]
    assert plan_outputs([src / "a.wav"], out, ".npy") == [(src / "a.wav", out / "a.npy")]
    assert (
        plan_outputs([src / "a.wav"], str(tmp_path / "y.d") + "/", ".npy")[0][1] == tmp_path / "y.d" / "a.npy"
    )
    # The same input twice is one job.
    assert len(plan_outputs([src / "a.wav", src / "a.wav"], out, ".npy")) == 1


def test_plan_outputs_errors(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"x")
    (tmp_path / "b" / "x.wav").write_bytes(b"x")
    (tmp_path / "a" / "x.flac").write_bytes(b"x")
    with pytest.raises(MelinvertError, match=r"would both write '.*out/x\.npy'"):
        plan_outputs([tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav"], tmp_path / "out", ".npy")
    with pytest.raises(MelinvertError, match=r"would both write"):
        plan_outputs([tmp_path / "a"], tmp_path / "out", ".npy")
    with pytest.raises(MelinvertError, match=r"input '.*nope\.wav' does not exist"):
        plan_outputs([tmp_path / "nope.wav"], tmp_path / "out", ".npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MelinvertError, match=r"no \.wav, \.flac, \.ogg files found in folder"):
        plan_outputs([tmp_path / "empty"], tmp_path / "out", ".npy")
    with pytest.raises(MelinvertError, match=r"should end in \.npy"):
        plan_outputs([tmp_path / "a" / "x.wav"], tmp_path / "o.npz", ".npy")
    with pytest.raises(MelinvertError, match="is a file; with these inputs it must be a folder"):
        plan_outputs([tmp_path / "a" / "x.wav", tmp_path / "a" / "x.flac"], tmp_path / "a" / "x.wav", ".npy")
    with pytest.raises(MelinvertError, match="would replace the input"):
        plan_outputs([tmp_path / "a" / "x.wav"], tmp_path / "a", ".wav")
    with pytest.raises(MelinvertError, match="no input files given"):
        plan_outputs([], tmp_path / "out", ".npy")


# ---------------------------------------------------------------------- statistics


def test_load_stats(tmp_path: Path, tone) -> None:
    mean = np.linspace(-5, -1, 80)
    scale = np.linspace(0.5, 2, 80)
    np.save(tmp_path / "stats.npy", np.stack([mean, scale]))
    m, s = load_stats(tmp_path / "stats.npy")
    np.testing.assert_array_equal(m, mean)
    np.testing.assert_array_equal(s, scale)
    cfg = get_preset("pwg-22k-80")
    comp = Compression(kind="log10", floor=1e-10, mean=tuple(m), std=tuple(s))
    normed = cfg.replace(compression=comp)
    mel = melinvert.mel_spectrogram(tone(22050), normed)
    save_mel(tmp_path / "n.npy", mel, normed)
    assert load_mel(tmp_path / "n.npy")[1] == normed


@pytest.mark.parametrize(
    ("array", "name", "match"),
    [
        (np.zeros((3, 80)), "s.npy", r"shape \(3, 80\); statistics must be shaped \(2, n_mels\)"),
        (np.stack([np.zeros(80), np.zeros(80)]), "s.npy", "scale row .* must be > 0"),
        (np.stack([np.full(80, np.nan), np.ones(80)]), "s.npy", "NaN or Inf"),
        (np.zeros((2, 80)), "s.h5", r"not a readable \.h5 file|needs h5py"),
        (
            np.zeros((2, 80)),
            "s.txt",
            r"unsupported statistics format '\.txt'; use ParallelWaveGAN's stats\.npy",
        ),
    ],
)
def test_load_stats_errors(tmp_path: Path, array: np.ndarray, name: str, match: str) -> None:
    path = tmp_path / name
    with open(path, "wb") as f:
        np.save(f, array)
    with pytest.raises(MelinvertError, match=match):
        load_stats(path)


def test_read_mel_file_keeps_stored_axes(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.zeros((10, 80), np.float32))
    arr, rec = read_mel_file(tmp_path / "t.npy")
    assert arr.shape == (10, 80) and rec is None

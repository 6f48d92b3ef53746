"""melinvert.identify: recognising the preset of a mel from its values; describing audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import melinvert
from melinvert.config import PRESETS, get_preset
from melinvert.errors import MelinvertError
from melinvert.identify import AudioInfo, MelIdentity, identify_file, identify_mel, inspect_audio
from melinvert.io import load_audio, save_mel

#: Presets the values cannot tell apart (same compression, bins and silence level).
TWINS = {
    "hifigan-22k-80": {"hifigan-22k-80", "tacotron2-22k-80"},
    "tacotron2-22k-80": {"hifigan-22k-80", "tacotron2-22k-80"},
    "librosa-default": {"librosa-default", "torchaudio-default"},
    "torchaudio-default": {"librosa-default", "torchaudio-default"},
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_recognised(tone, name: str) -> None:
    cfg = get_preset(name)
    mel = melinvert.mel_spectrogram(tone(cfg.sample_rate), cfg)
    ident = identify_mel(mel)
    assert ident.layout == "mels-first" and ident.n_mels == cfg.n_mels and ident.frames == mel.shape[1]
    assert name in ident.top, ident.format()
    assert set(ident.top) <= TWINS.get(name, {name}), ident.format()
    assert ident.compression_kind == cfg.compression.kind
    assert ident.floor is not None and ident.floor_fraction > 0.3  # the silence in the tone
    best = ident.matches[0]
    assert best.score > 0.8 and f"{cfg.n_mels} bins" in best.reason


@pytest.mark.parametrize("name", ["pwg-22k-80", "vocos-24k-100", "whisper-16k-128"])
def test_time_first_and_batch(tone, name: str) -> None:
    cfg = get_preset(name)
    mel = melinvert.mel_spectrogram(tone(cfg.sample_rate), cfg)
    ident = identify_mel(mel.T)
    assert ident.layout == "time-first" and ident.n_mels == cfg.n_mels and name in ident.top
    batch = identify_mel(torch.from_numpy(np.stack([mel, mel])))
    assert batch.batch == 2 and batch.frames == mel.shape[1] and name in batch.top


def test_hifigan_on_real_speech(speech_file: Path) -> None:
    cfg = get_preset("hifigan-22k-80")
    y, _, _ = load_audio(speech_file, cfg.sample_rate)
    ident = identify_mel(melinvert.mel_spectrogram(y, cfg))
    assert set(ident.top) == {"hifigan-22k-80", "tacotron2-22k-80"}, ident.format()
    assert ident.compression_kind == "ln"
    text = ident.format("speech.npy")
    assert "hifigan-22k-80 or tacotron2-22k-80: 80 bins, ln, floor 1e-5 (-11.513)" in text


@pytest.mark.parametrize("name", ["pwg-22k-80", "coqui-22k-80", "whisper-16k-80", "vocos-24k-100"])
def test_other_presets_on_real_speech(speech_file: Path, name: str) -> None:
    cfg = get_preset(name)
    y, _, _ = load_audio(speech_file, cfg.sample_rate)
    ident = identify_mel(melinvert.mel_spectrogram(y, cfg))
    assert name in ident.top, ident.format()


def test_standardised_features(tone) -> None:
    cfg = get_preset("pwg-22k-80")
    mel = melinvert.mel_spectrogram(tone(22050, 2.0), cfg)
    normed = (mel - mel.mean(axis=1, keepdims=True)) / mel.std(axis=1, keepdims=True)
    ident = identify_mel(normed)
    assert ident.compression_kind == "standardised"
    assert {"espnet-22k-80", "pwg-22k-80"} <= set(ident.top)
    assert "--stats" in ident.matches[0].reason


def test_ambiguous_layout_is_noted(tone) -> None:
    cfg = get_preset("hifigan-22k-80")
    mel = melinvert.mel_spectrogram(tone(22050), cfg)[:, :80]  # square
    ident = identify_mel(mel)
    assert ident.layout == "mels-first"
    assert any("layout ambiguous for shape (80, 80)" in n for n in ident.notes)
    assert identify_mel(mel, layout="time-first").layout == "time-first"


def test_unknown_bin_count(tone) -> None:
    cfg = get_preset("hifigan-22k-80").replace(n_mels=64)
    ident = identify_mel(melinvert.mel_spectrogram(tone(22050), cfg), n_mels=64)
    assert ident.matches == () and ident.compression_kind == "ln"
    assert any("no preset has 64 mel bins" in n for n in ident.notes)
    assert "presets that fit: none" in ident.format()


def test_identify_file_recorded_and_plain(tmp_path: Path, tone) -> None:
    cfg = get_preset("bigvgan-24k-100")
    mel = melinvert.mel_spectrogram(tone(24000), cfg)
    save_mel(tmp_path / "m.pt", mel, cfg, layout="time-first")
    ident = identify_file(tmp_path / "m.pt")
    assert isinstance(ident, MelIdentity)
    assert ident.recorded == cfg and ident.layout == "time-first" and ident.top == ("bigvgan-24k-100",)
    assert "recorded config: bigvgan-24k-100" in ident.format()
    np.save(tmp_path / "p.npy", mel)
    plain = identify_file(tmp_path / "p.npy")
    assert isinstance(plain, MelIdentity) and plain.recorded is None and plain.top == ("bigvgan-24k-100",)


def test_identify_rejects_bad_values() -> None:
    with pytest.raises(MelinvertError, match="NaN or Inf"):
        identify_mel(np.full((80, 10), np.nan))
    with pytest.raises(MelinvertError, match="empty"):
        identify_mel(np.zeros((80, 0)))
    with pytest.raises(MelinvertError, match="non-numeric"):
        identify_mel(np.zeros((80, 10), bool))
    with pytest.raises(MelinvertError, match=r"layout='x' must be one of"):
        identify_mel(np.zeros((80, 10)), layout="x")


def test_inspect_audio(tmp_path: Path, tone) -> None:
    y = tone(16000)
    path = tmp_path / "s.wav"
    sf.write(path, np.stack([y, y * 0.5], axis=1), 16000, subtype="FLOAT")
    info = inspect_audio(path)
    assert (info.sample_rate, info.channels, info.samples, info.subtype) == (16000, 2, 16000, "FLOAT")
    assert info.duration == pytest.approx(1.0)
    assert info.peak == pytest.approx(0.5, rel=1e-6)
    expected_rms = np.sqrt((np.mean(y.astype(np.float64) ** 2) * 1.25) / 2)
    assert info.rms == pytest.approx(expected_rms, rel=1e-6)
    assert "whisper-16k-80" in info.presets_at_rate
    text = info.format()
    assert "16000 Hz, 2 channels, 1.000 s (16000 samples), FLOAT, peak -6.0 dBFS" in text
    assert isinstance(identify_file(path), AudioInfo)


def test_identify_file_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(MelinvertError, match=r"cannot inspect '\.txt' files"):
        identify_file(tmp_path / "x.txt")


@pytest.mark.parametrize("ref", [np.max, 1.0], ids=["ref=np.max", "ref=1.0"])
def test_librosa_power_to_db_gets_a_hint(tone, ref) -> None:
    import librosa

    y = tone(22050, 2.0).astype(np.float64)
    db = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050), ref=ref, top_db=80.0)
    ident = identify_mel(db)
    assert ident.matches == () and ident.compression_kind == "db", ident.format()
    assert ident.compression.startswith("dB (10·log10), clipped at the maximum - 80 dB")
    comp = '"compression" to {"kind": "db", "multiplier": 10.0, "floor": 1e-10, "ref": 1.0, "top_db": 80.0}'
    assert ident.hint is not None and comp in ident.hint
    assert "melinvert presets librosa-default --json > mel.json" in ident.hint
    assert ("made with ref=np.max" in ident.hint) == (ref is np.max)
    assert f"  hint: {ident.hint}" in ident.format()
    # the settings the hint gives reproduce the values (ref=np.max: up to the lost level)
    cfg = get_preset("librosa-default").replace(
        compression=melinvert.Compression(kind="db", multiplier=10.0, floor=1e-10, top_db=80.0)
    )
    mel = melinvert.mel_spectrogram(y, cfg)
    offset = float(mel.max()) if ref is np.max else 0.0
    np.testing.assert_allclose(mel - offset, db, atol=2e-3)
    assert cfg.compression.range_problem(torch.from_numpy(db)) is None


def test_db_hint_without_top_db(tone) -> None:
    import librosa

    y = tone(22050, 2.0).astype(np.float64)
    db = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050), top_db=None)
    ident = identify_mel(db)
    assert ident.compression_kind == "db" and '"top_db": null' in ident.hint
    assert "no clip level" in ident.hint


def test_no_hint_when_a_preset_fits(tone) -> None:
    cfg = get_preset("hifigan-22k-80")
    assert identify_mel(melinvert.mel_spectrogram(tone(cfg.sample_rate), cfg)).hint is None

"""Predicted mels dip below the log floor: clamped with a notice, or refused on request.

(issue 15 item 1) A recording's mel plus log-domain noise of 0.3 and the same mel stored as
float16 both invert; the noisy one with one notice naming how many values and how far, the
float16 one silently (its rounding is in range); ``--strict-range`` makes the dip an error.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import harmonic_noise

import melinvert
from melinvert.commands import main
from melinvert.errors import MelinvertError, MelinvertNotice

CFG = melinvert.get_preset("hifigan-22k-80")


def _mels() -> tuple[np.ndarray, np.ndarray]:
    y = harmonic_noise(CFG.sample_rate, 0.5, seed=3)
    y[4000:9000] = 0.0  # digital silence: the mel sits on its floor there
    mel = melinvert.mel_spectrogram(y.astype(np.float32), CFG)
    noisy = mel + 0.3 * np.random.default_rng(0).standard_normal(mel.shape).astype(np.float32)
    return mel, noisy


def test_api_clamps_with_one_notice_attributed_to_the_caller() -> None:
    mel, noisy = _mels()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = melinvert.invert(noisy, CFG, method="fast")
    notes = [w for w in seen if issubclass(w.category, MelinvertNotice)]
    assert len(notes) == 1 and notes[0].filename == __file__
    below = int((noisy < np.log(1e-5)).sum())
    assert f"clamped {below:,} of {noisy.size:,} values" in str(notes[0].message)
    assert "below the ln floor -11.51, down to" in str(notes[0].message)
    assert out.shape[-1] == CFG.n_samples(mel.shape[-1]) and np.isfinite(out).all()
    # clamping is what happens: the same as inverting the clamped mel
    np.testing.assert_array_equal(
        out, melinvert.invert(np.maximum(noisy, np.float32(np.log(1e-5))), CFG, method="fast")
    )


def test_api_strict_range_refuses() -> None:
    _, noisy = _mels()
    with pytest.raises(
        MelinvertError, match=r"mel does not fit the config: values down to -1\d\.\d+, below the ln"
    ):
        melinvert.invert(noisy, CFG, method="fast", strict_range=True)


def test_float16_rounding_is_in_range() -> None:
    mel, _ = _mels()
    with warnings.catch_warnings():
        warnings.simplefilter("error", MelinvertNotice)
        out = melinvert.invert(mel.astype(np.float16).astype(np.float32), CFG, method="fast")
    assert np.isfinite(out).all()


def _run(tmp: Path, mel: np.ndarray, name: str, *extra: str, capsys) -> tuple[int, str, Path]:
    src = tmp / f"{name}.npy"
    np.save(src, mel)
    dst = tmp / f"{name}.wav"
    rc = main(
        [
            "invert",
            str(src),
            "-o",
            str(dst),
            "--preset",
            "hifigan-22k-80",
            "--method",
            "fast",
            "--quiet",
            *extra,
        ]
    )
    return rc, capsys.readouterr().err, dst


def test_cli_inverts_a_noisy_mel_with_a_note(tmp_path: Path, capsys) -> None:
    _, noisy = _mels()
    rc, err, dst = _run(tmp_path, noisy, "noisy", capsys=capsys)
    assert rc == 0 and dst.exists()
    assert (
        [line for line in err.splitlines() if "clamped" in line]
        == [line for line in err.splitlines() if line.startswith("melinvert: note: mel: clamped")]
        != []
    )


def test_cli_inverts_a_float16_mel_without_a_note(tmp_path: Path, capsys) -> None:
    mel, _ = _mels()
    rc, err, dst = _run(tmp_path, mel.astype(np.float16), "half", capsys=capsys)
    assert rc == 0 and dst.exists() and "clamped" not in err


def test_cli_strict_range_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    _, noisy = _mels()
    rc, err, dst = _run(tmp_path, noisy, "strict", "--strict-range", capsys=capsys)
    assert rc == 2 and not dst.exists()
    errors = [line for line in err.splitlines() if line.startswith("melinvert: error:")]
    assert len(errors) == 1 and "below the ln floor -11.51" in errors[0]
    assert not list(tmp_path.glob("*.wav*")) and not list(tmp_path.glob(".*tmp*"))

"""Issue 16, items 6-8: bounded memory outside invert, own messages for renamed files, small faults."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

import melinvert as mi
from melinvert.commands import main
from melinvert.errors import MelinvertError
from melinvert.io import find_inputs, read_mel_file
from melinvert.report import _csv_cell
from melinvert.streaming import linear_mel_blocks, mel_of_chunks, mel_of_file

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


@pytest.mark.parametrize("name", ["hifigan-22k-80", "whisper-16k-80", "librosa-default", "vocos-24k-100"])
def test_streamed_mel_matches_whole_file(name):
    cfg = mi.get_preset(name)
    rng = np.random.default_rng(3)
    y = rng.standard_normal(cfg.sample_rate * 4 + 77) * 0.1
    chunks = np.split(y, np.sort(rng.integers(0, len(y), 9)))
    want = mi.mel_spectrogram(y, cfg)
    for bf in (64, 300, 10_000):  # float64: equal to rounding of the matrix product (BLAS blocking)
        got = mel_of_chunks(chunks, cfg, block_frames=bf)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    got32 = mel_of_chunks([c.astype(np.float32) for c in chunks], cfg, block_frames=128)
    np.testing.assert_allclose(got32, mi.mel_spectrogram(y.astype(np.float32), cfg), atol=2e-4)


def test_streamed_stft_frames_are_bit_exact_at_block_edges():
    """The padding at block edges is exact: the per-block frames equal the whole signal's bit
    for bit when the matrix product sees the same columns (one block == the whole)."""
    cfg = mi.get_preset("tacotron2-22k-80")
    y = np.random.default_rng(0).standard_normal(9000)
    whole = np.concatenate([b.numpy() for b in linear_mel_blocks([y], cfg, block_frames=10**6)], axis=-1)
    parts = np.concatenate([b.numpy() for b in linear_mel_blocks(np.split(y, [1, 500, 4000]), cfg, block_frames=10**6)], axis=-1)  # fmt: skip
    np.testing.assert_array_equal(parts, whole)
    assert whole.shape[-1] == mi.mel_spectrogram(y, cfg).shape[-1]


def test_mel_of_file_resamples_and_mixes_like_load_audio(tmp_path):
    cfg = mi.get_preset("hifigan-22k-80")
    rng = np.random.default_rng(1)
    sf.write(tmp_path / "a.wav", (rng.standard_normal((44100 * 3, 2)) * 0.1).astype(np.float32), 44100)
    y, _, _ = mi.load_audio(tmp_path / "a.wav", cfg.sample_rate)
    fm = mel_of_file(tmp_path / "a.wav", cfg, head_samples=1000, block_frames=100)
    assert fm.samples == len(y) and len(fm.notices) == 2
    np.testing.assert_array_equal(fm.head, y[:1000])
    np.testing.assert_allclose(fm.mel, mi.mel_spectrogram(y, cfg), atol=2e-4)


def test_too_short_audio_names_the_file(tmp_path):
    sf.write(tmp_path / "s.wav", np.zeros(10, np.float32), 22050)
    with pytest.raises(MelinvertError, match=r"s\.wav. has 10 samples at 22050 Hz, fewer than"):
        mel_of_file(tmp_path / "s.wav", "hifigan-22k-80")


CHILD = r"""
import resource, sys
from melinvert.commands import main
status = main(sys.argv[1:])
print("RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, status)
"""


def _peak_kb(args: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=ENV)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RSS")][-1].split()
    assert line[2] == "0", out.stderr
    return int(line[1])


def test_mel_memory_does_not_grow_with_the_audio(tmp_path):
    """``mel`` of 8 minutes peaks less than 100 MB above 1 minute (whole-file: ~0.5 GB more)."""
    from melinvert.demo import speech_like

    one = speech_like(22050, seconds=60.0, seed=0).astype(np.float32)
    sf.write(tmp_path / "one.wav", one, 22050)
    sf.write(tmp_path / "eight.wav", np.tile(one, 8), 22050)
    base = _peak_kb(["mel", str(tmp_path / "one.wav"), "-o", str(tmp_path / "one.npy"), "--preset", "hifigan-22k-80"])  # fmt: skip
    long = _peak_kb(["mel", str(tmp_path / "eight.wav"), "-o", str(tmp_path / "eight.npy"), "--preset", "hifigan-22k-80"])  # fmt: skip
    assert (long - base) / 1024 < 100, (base, long)
    np.testing.assert_allclose(np.load(tmp_path / "eight.npy")[:, 100:200], np.load(tmp_path / "one.npy")[:, 100:200], atol=1e-4)  # fmt: skip


# ------------------------------------------------------------------ item 6: bounded entries


def test_decompressed_size_is_capped_before_loading(tmp_path, monkeypatch, capsys):
    np.savez_compressed(
        tmp_path / "bomb.npz", mel=np.zeros((80, 100_000), np.float32)
    )  # 32 MB, ~30 kB on disk
    assert (tmp_path / "bomb.npz").stat().st_size < 1_000_000
    monkeypatch.setenv("MELINVERT_MAX_ARRAY_MB", "8")
    with pytest.raises(MelinvertError, match="above the limit of 8 MiB; set MELINVERT_MAX_ARRAY_MB"):
        read_mel_file(tmp_path / "bomb.npz")
    np.save(tmp_path / "big.npy", np.zeros((80, 100_000), np.float32))
    with pytest.raises(MelinvertError, match=r"\(80, 100000\) float32 array of 31 MiB"):
        read_mel_file(tmp_path / "big.npy")
    assert main(["inspect", str(tmp_path / "bomb.npz")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    monkeypatch.setenv("MELINVERT_MAX_ARRAY_MB", "nope")
    with pytest.raises(MelinvertError, match="must be a number of MiB"):
        read_mel_file(tmp_path / "big.npy")


def test_inspect_samples_frames_but_reports_the_whole(tmp_path, capsys):
    from melinvert.identify import identify_sampled

    cfg = mi.get_preset("hifigan-22k-80")
    from melinvert.demo import speech_like

    mel = mi.mel_spectrogram(speech_like(22050, seconds=20.0, seed=0), cfg)
    info = identify_sampled(mel, limit=80 * 300)
    assert info.frames == mel.shape[-1] and info.maximum == pytest.approx(float(mel.max()))
    assert "values analysed on" in info.notes[-1]
    full = mi.identify_mel(mel)
    assert info.top == full.top


# ------------------------------------------------------------------ item 7: renamed files


@pytest.mark.parametrize("kind", ["pickle", "wav"])
@pytest.mark.parametrize("ext", [".npy", ".npz"])
def test_renamed_files_get_melinvert_s_message(tmp_path, capsys, kind, ext):
    f = tmp_path / f"x{ext}"
    if kind == "pickle":
        f.write_bytes(pickle.dumps({"mel": [1.0, 2.0]}))
    else:
        sf.write(f, np.zeros(2205, np.float32), 22050, format="WAV")
    what = "a Python pickle; melinvert never unpickles" if kind == "pickle" else "a WAV audio file"
    with pytest.raises(MelinvertError, match=f"is not a readable {ext} file: its content looks like {what}"):
        read_mel_file(f)
    good = tmp_path / "good.npy"
    np.save(good, mi.mel_spectrogram(np.random.default_rng(0).standard_normal(4000) * 0.1, "pwg-22k-80"))
    runs = [
        ["inspect", str(f)],
        ["invert", str(f), "-o", str(tmp_path / "o.wav"), "--preset", "hifigan-22k-80", "--quiet"],
    ]
    if ext == ".npy":
        runs.append(["invert", str(good), "-o", str(tmp_path / "o.wav"), "--preset", "pwg-22k-80", "--quiet", "--stats", str(f)])  # fmt: skip
    for argv in runs:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "allow_pickle" not in err and "looks like" in err and err.count("\n") == 1, err


def test_object_npy_is_refused_without_numpy_s_suggestion(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(MelinvertError, match=r"object array\); melinvert never unpickles$"):
        read_mel_file(tmp_path / "o.npy")


# ------------------------------------------------------------------ item 8


def test_roundtrip_of_silence_writes_and_exits_0_with_a_notice(tmp_path, capsys):
    sf.write(tmp_path / "s.wav", np.zeros(22050, np.float32), 22050)
    out = tmp_path / "rt.wav"
    argv = ["roundtrip", str(tmp_path / "s.wav"), "-o", str(out), "--preset", "hifigan-22k-80", "--method", "fast", "--no-extras"]  # fmt: skip
    assert main(argv) == 0
    assert out.is_file() and sf.info(str(out)).frames == 22050
    err = capsys.readouterr().err
    assert "no scores: the reference is silent" in err


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user for 0000 folders"
)
def test_unreadable_subfolder_is_reported(tmp_path):
    (tmp_path / "ok").mkdir()
    (tmp_path / "locked").mkdir()
    sf.write(tmp_path / "ok" / "a.wav", np.zeros(100, np.float32), 22050)
    os.chmod(tmp_path / "locked", 0)
    try:
        with pytest.raises(MelinvertError, match=r"cannot read folder .*locked.*Permission denied"):
            find_inputs([tmp_path], (".wav",))
    finally:
        os.chmod(tmp_path / "locked", 0o755)


def test_unreadable_subfolder_is_reported_whoever_runs(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    sf.write(tmp_path / "sub" / "a.wav", np.zeros(100, np.float32), 22050)
    real = os.scandir

    def scandir(path="."):
        if str(path).endswith("sub"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(MelinvertError, match=r"cannot read folder .*sub.: Permission denied"):
        find_inputs([tmp_path], (".wav",))


def test_train_skips_a_bad_file_and_lists_it(tmp_path):
    from melinvert.neural.data import load_clips

    cfg = mi.get_preset("hifigan-22k-80")
    sf.write(
        tmp_path / "a.wav", np.random.default_rng(0).standard_normal(22050).astype(np.float32) * 0.1, 22050
    )
    (tmp_path / "b.wav").write_bytes(b"RIFF not really a wav")
    skipped = []
    clips = load_clips(
        [tmp_path / "a.wav", tmp_path / "b.wav"], cfg, on_skip=lambda p, r: skipped.append((p, r))
    )
    assert [c.name for c in clips] == ["a.wav"] and skipped[0][0].name == "b.wav"
    with pytest.raises(MelinvertError, match="none of the 1 audio file"):
        load_clips([tmp_path / "b.wav"], cfg, on_skip=lambda p, r: None)
    with pytest.raises(MelinvertError, match=r"b\.wav"):
        load_clips([tmp_path / "b.wav"], cfg)


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["invert", "x.npy", "-o", "y.wav", "--preset", "hifigan-22k-80", "--seed", "1e23"],
            "--seed: '1e23' is not an integer",
        ),
        (
            ["invert", "x.npy", "-o", "y.wav", "--preset", "hifigan-22k-80", "--seed", str(10**23)],
            "--seed: .* out of range",
        ),
        (
            ["invert", "x.npy", "-o", "y.wav", "--preset", "hifigan-22k-80", "--device", "meta"],
            "'meta' is not a device",
        ),
        (
            ["roundtrip", "x.wav", "-o", "y.wav", "--preset", "hifigan-22k-80", "--device", "mps"],
            "'mps' is not a device",
        ),
        (
            ["train", "refiner", "x", "-o", "r", "--preset", "hifigan-22k-80", "--device", "mps"],
            "'mps' is not a device",
        ),
        (["demo", "--seconds", "0"], "--seconds: 0 must be a finite number of seconds > 0"),
        (["demo", "--seconds", "-1"], "must be a finite number of seconds > 0"),
        (["demo", "--seconds", "nan"], "must be a finite number of seconds > 0"),
    ],
)
def test_bad_values_are_usage_errors(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert __import__("re").search(match, err), err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_bench_on_a_missing_device_leaves_nothing(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    sf.write(tmp_path / "a.wav", np.zeros(22050, np.float32) + 0.1, 22050)
    out = tmp_path / "bench"
    assert main(["bench", str(tmp_path / "a.wav"), "-o", str(out), "--preset", "hifigan-22k-80", "--device", "cuda"]) == 2  # fmt: skip
    assert "no CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_during_start_up_is_one_line_and_130(tmp_path):
    """SIGINT while the command line loads (after the interpreter's own start)."""
    np.save(tmp_path / "m.npy", np.zeros((80, 10), np.float32) - 11.5)
    argv = [sys.executable, "-m", "melinvert", "invert", str(tmp_path / "m.npy"), "-o", str(tmp_path / "o.wav"), "--preset", "hifigan-22k-80", "--quiet"]  # fmt: skip
    for delay in (0.4, 0.7, 1.0):
        p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=ENV)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        if p.returncode == 0:
            continue  # finished before the signal: nothing to check
        if "Traceback" in err and "melinvert" not in err:
            continue  # a loaded machine: the signal came inside Python's own start-up, before melinvert
        # 130; a loaded machine has shown -SIGINT once after the message (left open in the notes)
        assert p.returncode in (130, -signal.SIGINT), err
        assert "Traceback" not in err and err.strip().splitlines()[-1] == "melinvert: error: interrupted"


def test_csv_cells_cannot_be_formulas():
    assert _csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _csv_cell("+1+2 notes") == "'+1+2 notes"
    assert _csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert _csv_cell("-cmd|x") == "'-cmd|x"
    assert _csv_cell("-1.5") == "-1.5" and _csv_cell(-3) == "-3" and _csv_cell(-0.25) == "-0.25"
    assert _csv_cell(float("-inf")) == "-inf" and _csv_cell("clip.wav") == "clip.wav"


def test_truncated_npy_is_an_error_not_sigbus(tmp_path):
    f = tmp_path / "m.npy"
    np.save(f, np.zeros((80, 200), np.float32))
    with open(f, "r+b") as fh:
        fh.truncate(f.stat().st_size - 1000)
    with pytest.raises(MelinvertError, match="is truncated: its header declares 64000 bytes"):
        read_mel_file(f)


def test_truncation_during_a_read_never_kills_invert(tmp_path):
    """Another process cuts the file while ``invert`` reads it: an error or a result, never SIGBUS."""
    f = tmp_path / "m.npy"
    np.save(f, np.full((80, 400_000), -5.0, np.float32))  # 128 MB
    argv = [sys.executable, "-m", "melinvert", "invert", str(f), "-o", str(tmp_path / "o.wav"), "--preset", "hifigan-22k-80", "--quiet", "--method", "pinv+zero+gla", "--iters", "1"]  # fmt: skip
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(1.5)
    with open(f, "r+b") as fh:
        fh.truncate(4096)
    try:
        _, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("invert did not finish")
    assert p.returncode != -signal.SIGBUS and p.returncode in (0, 2), (p.returncode, err[-500:])

"""The inverting commands: invert (streaming, skip finished, Ctrl-C), roundtrip, demo, methods."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import melinvert
from melinvert.demo import speech_like

CFG = melinvert.get_preset("hifigan-22k-80")


def _mel_file(
    tmp_path: Path, seconds: float = 1.0, name: str = "a.npy", seed: int = 0
) -> tuple[Path, np.ndarray]:
    y = speech_like(22050, seconds=seconds, seed=seed)
    mel = melinvert.mel_spectrogram(y, CFG)
    path = tmp_path / name
    melinvert.save_mel(path, mel, CFG)
    return path, y


def test_invert_writes_aligned_audio_at_level(tmp_path: Path, run_cli) -> None:
    src, y = _mel_file(tmp_path)
    out = tmp_path / "a.wav"
    status, stdout, err = run_cli("invert", src, "-o", out, "--preset", "hifigan-22k-80", "--quiet")
    assert status == 0, err
    z, sr = sf.read(out, dtype="float32")
    assert sr == 22050 and z.shape[0] == CFG.n_samples(melinvert.mel_spectrogram(y, CFG).shape[-1])
    s = melinvert.metrics.score(y, z, sr, config=CFG, extras=False)
    assert abs(s["lag_samples"]) <= 64
    assert abs(s["rms_ratio_db"]) < 1.0
    assert s["log_mel_l1"] < 0.25
    assert f"{src} -> {out}" in stdout


def test_invert_folder_mirrors_and_skips_finished(tmp_path: Path, run_cli) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    _mel_file(tmp_path / "in", 0.5, "x.npy")
    _mel_file(tmp_path / "in" / "sub", 0.5, "y.npy", seed=1)
    out = tmp_path / "out"
    args = ("invert", tmp_path / "in", "-o", out, "--preset", "hifigan-22k-80", "--method", "fast", "--quiet")
    status, _, err = run_cli(*args)
    assert status == 0, err
    assert (out / "x.wav").is_file() and (out / "sub" / "y.wav").is_file()
    before = (out / "x.wav").stat().st_mtime_ns
    status, _, err = run_cli(*args)
    assert status == 0 and "skipped 2 files finished earlier" in err
    assert (out / "x.wav").stat().st_mtime_ns == before  # not overwritten unless asked
    status, _, err = run_cli(*args, "--overwrite")
    assert status == 0 and "finished earlier" not in err


def test_invert_wrong_preset_is_one_line_and_writes_nothing(tmp_path: Path, run_cli) -> None:
    src, _ = _mel_file(tmp_path)
    out = tmp_path / "a.wav"
    status, _, err = run_cli("invert", src, "-o", out, "--preset", "vocos-24k-100", "--quiet")
    assert status == 2
    assert len(err.strip().splitlines()) == 1 and "melinvert: error:" in err
    assert not out.exists()
    assert not list(tmp_path.glob(".a.wav*"))


def test_invert_unknown_method(tmp_path: Path, run_cli) -> None:
    src, _ = _mel_file(tmp_path)
    status, _, err = run_cli(
        "invert", src, "-o", tmp_path / "a.wav", "--preset", "hifigan-22k-80", "--method", "fgal"
    )
    assert status == 2 and "did you mean" in err and "fgla" in err
    assert not (tmp_path / "a.wav").exists()


def test_invert_batch_file_is_refused(tmp_path: Path, run_cli) -> None:
    y = np.stack([speech_like(22050, 0.5, seed=s) for s in range(2)])
    path = tmp_path / "b.npy"
    np.save(path, melinvert.mel_spectrogram(y, CFG))
    status, _, err = run_cli(
        "invert", path, "-o", tmp_path / "b.wav", "--preset", "hifigan-22k-80", "--quiet"
    )
    assert status == 2 and "batch of 2" in err


def test_roundtrip_prints_scores(tmp_path: Path, run_cli) -> None:
    wav = tmp_path / "in.wav"
    sf.write(wav, speech_like(22050, 1.0), 22050)
    status, out, err = run_cli(
        "roundtrip",
        wav,
        "-o",
        tmp_path / "rt.wav",
        "--preset",
        "hifigan-22k-80",
        "--method",
        "fast",
        "--no-extras",
    )
    assert status == 0, err
    assert "log_mel_l1" in out and "lag_samples" in out and "x real time)" in out and "RTF " in out
    assert (tmp_path / "rt.wav").is_file()
    status, _, err = run_cli("roundtrip", wav, "-o", tmp_path / "rt.wav", "--preset", "hifigan-22k-80")
    assert status == 2 and "exists" in err


def test_demo_writes_everything(tmp_path: Path, run_cli) -> None:
    out = tmp_path / "demo"
    status, stdout, err = run_cli("demo", "-o", out, "--seconds", "1.5", "--methods", "fast")
    assert status == 0, err
    for name in ("original.wav", "original.mel.npy", "original.mel.npy.json", "fast.wav"):
        assert (out / name).is_file(), name
    assert "pesq_wb" in stdout


def test_methods_lists_pipelines_and_stages(run_cli) -> None:
    status, out, _ = run_cli("methods")
    assert status == 0
    for name in ("default", "fast", "nnls", "pghi", "fgla", "agla", "mfgla"):
        assert name in out


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_writes_best_estimate_and_rerun_finishes(tmp_path: Path) -> None:
    src, _ = _mel_file(tmp_path, seconds=2.0)
    out = tmp_path / "a.wav"
    cmd = [
        sys.executable, "-m", "melinvert", "invert", str(src), "-o", str(out), "--preset", "hifigan-22k-80",
        "--method", "nnls+pghi+mfgla", "--iters", "100000",
    ]  # fmt: skip
    # faulthandler: if it ever fails to stop, SIGABRT below makes it print every thread's stack
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONFAULTHANDLER="1")
    # a test run started in the background by a shell inherits SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition, as a
    # terminal's foreground job has
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # wait until the progress bar shows iterations running (its "x real time" field appears then)
    seen = b""
    deadline = time.monotonic() + 120
    while b"x real time" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096)
    assert b"x real time" in seen, seen[-500:]
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    try:
        _, err_b = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err_b = proc.communicate(timeout=30)
        pytest.fail("still running 60 s after SIGINT; its stacks:\n" + err_b.decode(errors="replace")[-6000:])
    err = (seen + err_b).decode(errors="replace")
    assert proc.returncode == 130, err
    assert "interrupted: wrote the best estimate so far" in err
    z, sr = sf.read(out)  # a complete, readable WAV
    assert sr == 22050 and z.shape[0] > 0 and np.isfinite(z).all()
    assert (tmp_path / "a.wav.partial").is_file()
    assert not list(tmp_path.glob(".a.wav.*.tmp"))
    # a rerun redoes the interrupted file (and only it) and removes the marker
    from melinvert.cli import main

    assert (
        main(
            ["invert", str(src), "-o", str(out), "--preset", "hifigan-22k-80", "--method", "fast", "--quiet"]
        )
        == 0
    )
    assert not (tmp_path / "a.wav.partial").exists()

"""The melinvert command line, in-process (plus one run of the installed console script)."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import melinvert
from melinvert import commands as cli
from melinvert.config import PRESETS, MelConfig, get_preset
from melinvert.engines import MANIFEST_NAME
from melinvert.io import load_mel, save_mel


def _files(folder: Path) -> list[str]:
    """The files under ``folder``, less the run manifest every run over files keeps there."""
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME
    )


def _one_error_line(err: str, match: str) -> None:
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("melinvert: error: ")]
    assert len(errors) == 1, err
    assert match in errors[0], err
    assert "Traceback" not in err


# ---------------------------------------------------------------------- presets, help, version


def test_presets_table(run_cli) -> None:
    status, out, err = run_cli("presets")
    assert status == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["name", "rate", "n_fft", "hop", "n_mels"]
    assert len(lines) == 1 + len(PRESETS)
    row = next(ln for ln in lines if ln.startswith("hifigan-22k-80 "))
    assert row.split()[1:7] == ["22050", "1024", "256", "80", "0-8000", "ln"]


def test_presets_one(run_cli) -> None:
    status, out, _ = run_cli("presets", "vocos-24k-100")
    assert status == 0
    assert "project: Vocos" in out and "source: " in out
    status, out, _ = run_cli("presets", "vocos-24k-100", "--json")
    assert status == 0 and MelConfig.from_json(out) == get_preset("vocos-24k-100")


def test_unknown_preset_suggests(run_cli) -> None:
    status, out, err = run_cli("presets", "hifigan-22k")
    assert status == 2 and out == ""
    _one_error_line(err, "unknown preset 'hifigan-22k'; did you mean hifigan-22k-80")


def test_version_help_and_usage(run_cli) -> None:
    status, out, _ = run_cli("--version")
    assert status == 0 and out.strip() == f"melinvert {melinvert.__version__}"
    status, out, _ = run_cli("--help")
    assert status == 0
    assert "examples:" in out and "melinvert mel speech.wav -o speech.npy --preset hifigan-22k-80" in out
    for c in cli.COMMANDS:
        assert c.name in out
    status, out, _ = run_cli("mel", "--help")
    assert status == 0 and "--layout" in out and "--time-first" not in out and "melinvert mel corpus/" in out
    status, _, err = run_cli()
    assert status == 2
    _one_error_line(err, "no command given")
    status, _, err = run_cli("mel", "x.wav", "-o", "y", "--preset", "hifigan-22k-80", "--format", "wav")
    assert status == 2
    _one_error_line(err, "argument --format: invalid choice: 'wav'")
    status, _, err = run_cli("frobnicate")
    assert status == 2
    _one_error_line(err, "invalid choice: 'frobnicate'")


_LATE_CTRL_C = """
import os, signal, time
from melinvert import commands
commands.main = lambda: 0  # a command that has finished its work
status = commands.cli()
os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the process exits
time.sleep(0.2)
raise SystemExit(status)
"""


def test_ctrl_c_after_the_work_is_done_does_not_fail_the_command() -> None:
    done = subprocess.run([sys.executable, "-c", _LATE_CTRL_C], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")


def test_python_dash_m(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["melinvert", "--version"])
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as info:
            runpy.run_module("melinvert", run_name="__main__")
    finally:
        signal.signal(signal.SIGINT, handler)  # (the command ignores Ctrl-C once it is done)
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"melinvert {melinvert.__version__}"


# ---------------------------------------------------------------------- mel


def test_mel_one_file(run_cli, wav_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "o" / "m.npy"
    status, stdout, err = run_cli("mel", wav_file, "-o", out, "--preset", "hifigan-22k-80", "--device", "cpu")
    assert status == 0 and err == "", err
    assert "(80 mels x 86 frames, mels-first)" in stdout
    mel, recorded = load_mel(out)
    assert recorded == get_preset("hifigan-22k-80")
    y, _ = sf.read(wav_file, dtype="float32")
    np.testing.assert_allclose(mel, melinvert.mel_spectrogram(y, "hifigan-22k-80"), atol=1e-5)
    assert _files(tmp_path / "o") == ["m.npy", "m.npy.json"]


def test_mel_folder_mirrored_with_notes(run_cli, tmp_path: Path, tone) -> None:
    src = tmp_path / "corpus"
    (src / "spk1").mkdir(parents=True)
    sf.write(src / "a.wav", tone(22050), 22050)
    sf.write(src / "spk1" / "b.flac", np.stack([tone(16000)] * 2, axis=1), 16000)
    (src / "spk1" / "readme.txt").write_text("not audio")
    out = tmp_path / "mels"
    status, _, err = run_cli(
        "mel", src, "-o", out, "--preset", "pwg-22k-80", "--format", "pt", "--time-first"
    )
    assert status == 0, err
    assert _files(out) == ["a.pt", "spk1/b.pt"]
    assert "melinvert: note: " in err and "resampled 16000 Hz -> 22050 Hz" in err
    assert "mixed 2 channels down to mono" in err
    stored = torch.load(out / "spk1" / "b.pt", weights_only=True)["mel"]
    assert stored.shape[1] == 80  # time-first
    mel, rec = load_mel(out / "spk1" / "b.pt", config="pwg-22k-80")
    assert mel.shape[0] == 80 and rec == get_preset("pwg-22k-80")


def test_mel_config_file_and_format_from_output(run_cli, wav_file: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.json"
    cfg = get_preset("coqui-22k-80").replace(n_mels=64)
    cfg_path.write_text(cfg.to_json())
    status, _, err = run_cli("mel", wav_file, "-o", tmp_path / "x.npz", "--config", cfg_path)
    assert status == 0, err
    mel, rec = load_mel(tmp_path / "x.npz")
    assert rec == cfg and mel.shape[0] == 64


def test_mel_with_stats(run_cli, wav_file: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "stats.npy", np.stack([np.full(80, -3.0), np.full(80, 2.0)]))
    status, _, err = run_cli(
        "mel", wav_file, "-o", tmp_path / "n.npy", "--preset", "pwg-22k-80", "--stats", tmp_path / "stats.npy",
        "--device", "cpu",  # the reference below runs on the CPU; float32 FFTs differ near the floor on a GPU
    )  # fmt: skip
    assert status == 0, err
    mel, rec = load_mel(tmp_path / "n.npy")
    plain = melinvert.mel_spectrogram(sf.read(wav_file, dtype="float32")[0], "pwg-22k-80")
    np.testing.assert_allclose(mel, (plain + 3.0) / 2.0, atol=1e-5)
    assert rec.compression.mean == (-3.0,) * 80


# ---------------------------------------------------------------------- inspect


def test_inspect_mel_and_audio(run_cli, wav_file: Path, tmp_path: Path, tone) -> None:
    np.save(tmp_path / "m.npy", melinvert.mel_spectrogram(tone(24000), "vocos-24k-100").T)
    status, out, err = run_cli("inspect", tmp_path / "m.npy", wav_file)
    assert status == 0 and err == ""
    assert "mel, 100 bins x 94 frames (time-first)" in out
    assert "vocos-24k-100: 100 bins, ln, floor 1e-7 (-16.118)" in out
    assert "audio, 22050 Hz, 1 channel, 1.000 s (22050 samples), PCM_16" in out


def test_inspect_checks_a_config(run_cli, tmp_path: Path, tone) -> None:
    np.save(tmp_path / "m.npy", melinvert.mel_spectrogram(tone(22050), "hifigan-22k-80"))
    status, out, _ = run_cli("inspect", tmp_path / "m.npy", "--preset", "tacotron2-22k-80")
    assert status == 0 and "fits the config asked for (tacotron2-22k-80)" in out


# ---------------------------------------------------------------------- score


def test_score_table_and_json(run_cli, wav_file: Path, tmp_path: Path, tone) -> None:
    deg = tmp_path / "deg.wav"
    sf.write(deg, tone(16000) * 0.5, 16000, subtype="FLOAT")
    js = tmp_path / "s.json"
    status, out, err = run_cli(
        "score", wav_file, deg, "--preset", "hifigan-22k-80", "--json", js, "--no-extras"
    )
    assert status == 0, err
    assert "resampled 16000 Hz -> 22050 Hz" in err
    rows = dict(ln.split(None, 1) for ln in out.strip().splitlines() if not ln.startswith("wrote"))
    assert rows["pesq_wb"] == "n/a" and float(rows["rms_ratio_db"]) == pytest.approx(-6.02, abs=0.1)
    doc = json.loads(js.read_text())
    assert doc["sample_rate"] == 22050 and doc["config"]["n_mels"] == 80
    assert doc["metrics"]["pesq_wb"] is None
    assert doc["metrics"]["rms_ratio_db"] == pytest.approx(-6.02, abs=0.1)


def test_score_identical_writes_inf_as_text(run_cli, wav_file: Path, tmp_path: Path) -> None:
    js = tmp_path / "s.json"
    status, out, _ = run_cli("score", wav_file, wav_file, "--json", js)
    assert status == 0 and "snr_db" in out
    doc = json.loads(js.read_text())
    assert doc["metrics"]["snr_db"] == "inf" and doc["metrics"]["log_mel_l1"] == 0.0
    assert doc["config"] is None


# ---------------------------------------------------------- bad input: status 2, one line, no output


def _mel_args(inp: Path, out: Path, *extra: object) -> list[object]:
    return ["mel", inp, "-o", out, "--preset", "hifigan-22k-80", *extra]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        (lambda p: p.write_text("just some text, renamed\n" * 10), "is not a readable .wav audio file"),
        (
            lambda p: p.write_bytes(_wav_bytes(np.zeros(5000, np.float32))[:3000]),
            "is truncated: its header declares 10000 bytes of audio but only",
        ),
        (
            lambda p: p.write_bytes(_wav_bytes(np.array([0.0, np.nan] * 3000, np.float32), "FLOAT")),
            "contains NaN or Inf samples",
        ),
        (lambda p: p.write_bytes(_wav_bytes(np.zeros(0, np.float32))), "holds no audio samples"),
        (
            lambda p: p.write_bytes(_wav_bytes(np.zeros(300, np.float32))),
            "has 300 samples at 22050 Hz, fewer than the 385 one frame needs (n_fft=1024",
        ),
    ],
    ids=["empty", "text-as-wav", "truncated", "nan", "zero-length", "shorter-than-a-frame"],
)
def test_mel_bad_audio(run_cli, tmp_path: Path, make, message: str) -> None:
    inp = tmp_path / "in.wav"
    make(inp)
    out = tmp_path / "out"
    status, stdout, err = run_cli(*_mel_args(inp, out))
    assert status == 2 and stdout == ""
    _one_error_line(err, message)
    assert not out.exists()


def _wav_bytes(y: np.ndarray, subtype: str = "PCM_16") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, y, 22050, subtype=subtype, format="WAV")
    return buf.getvalue()


def test_mel_unknown_preset(run_cli, wav_file: Path, tmp_path: Path) -> None:
    status, _, err = run_cli("mel", wav_file, "-o", tmp_path / "o", "--preset", "vocos24k")
    assert status == 2
    _one_error_line(err, "unknown preset 'vocos24k'; did you mean vocos-24k-100")
    assert not (tmp_path / "o").exists()


def test_mel_bad_config_file(run_cli, wav_file: Path, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"n_mels": 80, "hop": 256}')
    status, _, err = run_cli("mel", wav_file, "-o", tmp_path / "o", "--config", tmp_path / "c.json")
    assert status == 2
    _one_error_line(err, "unknown config field(s): hop")
    status, _, err = run_cli("mel", wav_file, "-o", tmp_path / "o", "--config", tmp_path / "nope.json")
    assert status == 2
    _one_error_line(err, "config file")
    assert not (tmp_path / "o").exists()


def test_mel_output_blocked_by_a_file(run_cli, wav_file: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "notafolder"
    blocker.write_text("x")
    status, _, err = run_cli(*_mel_args(wav_file, blocker / "sub" / "m.npy"))
    assert status == 2
    _one_error_line(err, "notafolder' is a file, not a folder")
    assert blocker.read_text() == "x"


def test_mel_output_unwritable(run_cli, wav_file: Path) -> None:
    status, _, err = run_cli(*_mel_args(wav_file, Path("/proc/melinvert-test-no-such-dir/m.npy")))
    assert status == 2
    _one_error_line(err, "cannot create output folder '/proc/melinvert-test-no-such-dir'")


def test_mel_existing_output_needs_overwrite(run_cli, wav_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.npy"
    out.write_bytes(b"precious")
    status, _, err = run_cli(*_mel_args(wav_file, out))
    assert status == 2
    _one_error_line(
        err, "already exists and the run manifest has no record of melinvert making it; pass --overwrite"
    )
    assert out.read_bytes() == b"precious" and not (tmp_path / "m.npy.json").exists()
    status, _, err = run_cli(*_mel_args(wav_file, out, "--overwrite"))
    assert status == 0, err
    assert load_mel(out)[1] == get_preset("hifigan-22k-80")


def test_mel_sidecar_counts_as_output(run_cli, wav_file: Path, tmp_path: Path) -> None:
    (tmp_path / "m.npy.json").write_text("{}")
    status, _, err = run_cli(*_mel_args(wav_file, tmp_path / "m.npy"))
    assert status == 2
    _one_error_line(err, "m.npy.json' already exists")
    assert not (tmp_path / "m.npy").exists()


def test_input_never_overwritten(run_cli, wav_file: Path, tmp_path: Path) -> None:
    before = wav_file.read_bytes()
    status, _, err = run_cli("score", wav_file, wav_file, "--json", wav_file, "--overwrite")
    assert status == 2
    _one_error_line(err, "it is an input file")
    assert wav_file.read_bytes() == before
    fake = tmp_path / "x.npy"  # an input named as its own output
    fake.write_bytes(before)
    status, _, err = run_cli(*_mel_args(fake, fake, "--overwrite"))
    assert status == 2
    _one_error_line(err, "would replace the input")
    assert fake.read_bytes() == before


class Custom:
    """Pickled into a .pt file by reference: loading it would need to import this module."""


def test_inspect_bad_mels(run_cli, tmp_path: Path) -> None:
    torch.save({"mel": torch.zeros(80, 10), "meta": Custom()}, tmp_path / "evil.pt")
    nan = np.full((80, 20), -5.0, np.float32)
    nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "inf.npy", np.full((80, 20), -np.inf, np.float32))
    (tmp_path / "empty.npy").write_bytes(b"")
    for name, message in [
        ("evil.pt", "holds pickled Python objects"),
        ("nan.npy", "contains NaN or Inf (1 of 1600 values)"),
        ("inf.npy", "contains NaN or Inf (1600 of 1600 values)"),
        ("empty.npy", "is empty (0 bytes)"),
    ]:
        status, out, err = run_cli("inspect", tmp_path / name)
        assert status == 2 and out == ""
        _one_error_line(err, message)


def test_inspect_mel_against_config_errors(run_cli, tmp_path: Path, tone) -> None:
    np.save(tmp_path / "m.npy", melinvert.mel_spectrogram(tone(22050), "hifigan-22k-80"))
    np.save(tmp_path / "lin.npy", melinvert.mel_spectrogram(tone(22050), "librosa-default")[:80])
    status, _, err = run_cli("inspect", tmp_path / "m.npy", "--preset", "bigvgan-44k-128")
    assert status == 2
    _one_error_line(err, "has 80 mel bins (shape (80, 86)) but the config has n_mels=128")
    status, _, err = run_cli("inspect", tmp_path / "lin.npy", "--preset", "hifigan-22k-80")
    assert status == 2
    _one_error_line(err, "this looks like a linear mel, but the config expects a ln-compressed mel")
    status, _, err = run_cli(
        "inspect", tmp_path / "m.npy", "--preset", "librosa-default", "--layout", "mels-first"
    )
    assert status == 2
    _one_error_line(err, "has 80 mel bins as mels-first")
    cfg = get_preset("librosa-default").replace(n_mels=80)
    (tmp_path / "lin.json").write_text(cfg.to_json())
    status, _, err = run_cli("inspect", tmp_path / "m.npy", "--config", tmp_path / "lin.json")
    assert status == 2
    _one_error_line(err, "negative values (min -11.51) in a mel whose config expects a linear mel")


def test_inspect_square_mel_asks_for_layout(run_cli, tmp_path: Path) -> None:
    save_mel(tmp_path / "sq.npz", np.full((80, 80), -4.0, np.float32), "hifigan-22k-80")
    status, _, err = run_cli("inspect", tmp_path / "sq.npz", "--preset", "hifigan-22k-80")
    assert status == 2
    _one_error_line(err, "is square (80 x 80): cannot tell mels from frames; pass --layout")
    status, out, _ = run_cli(
        "inspect", tmp_path / "sq.npz", "--preset", "hifigan-22k-80", "--layout", "mels-first"
    )
    assert status == 0 and "fits the config asked for" in out


# ---------------------------------------------------------------------- exit statuses


def _fake_command(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def boom(args, ui):
        raise exc

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, cli.Command("boom", boom, "raise")])


def test_interrupt_is_130(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, KeyboardInterrupt())
    status, _, err = run_cli("boom")
    assert status == 130
    _one_error_line(err, "interrupted")


def test_internal_error_is_1_without_traceback(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_command(monkeypatch, ZeroDivisionError("oops\nsecond line"))
    monkeypatch.delenv("MELINVERT_DEBUG", raising=False)
    status, _, err = run_cli("boom")
    assert status == 1
    _one_error_line(err, "internal error: ZeroDivisionError: oops second line")
    assert "MELINVERT_DEBUG=1" in err and "report" in err
    monkeypatch.setenv("MELINVERT_DEBUG", "1")
    status, _, err = run_cli("boom")
    assert status == 1 and "Traceback (most recent call last)" in err


def test_register_adds_a_command(run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))

    def hello(args, ui):
        ui.out(f"hello {args.who} at {get_preset(args.preset).sample_rate}")
        ui.note("said hello")

    cli.register(
        cli.Command(
            "hello", hello, "greet", options=(cli.arg("who"), cli.add_required_config, cli.add_device)
        )
    )
    status, out, err = run_cli("hello", "world", "--preset", "whisper-16k-80")
    assert status == 0 and out == "hello world at 16000\n" and err == "melinvert: note: said hello\n"


# ---------------------------------------------------------------------- the installed console script


def test_console_script_subprocess(tmp_path: Path) -> None:
    exe = shutil.which("melinvert", path=os.path.dirname(sys.executable)) or shutil.which("melinvert")
    if exe is None:
        pytest.skip("the melinvert console script is not installed (pip install -e .)")
    (tmp_path / "bad.wav").write_text("not audio")
    proc = subprocess.run(
        [exe, "mel", str(tmp_path / "bad.wav"), "-o", str(tmp_path / "out"), "--preset", "hifigan-22k-80"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MELINVERT_DEBUG": ""},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("melinvert: error: ")
    assert "is not a readable .wav audio file" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_config_with_non_numeric_statistics(run_cli, wav_file: Path, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text('{"compression": {"kind": "log10", "mean": ["a"], "std": [1]}}')
    status, _, err = run_cli("mel", wav_file, "-o", tmp_path / "o", "--config", tmp_path / "c.json")
    assert status == 2
    _one_error_line(err, "compression mean must be a sequence of numbers")
    assert not (tmp_path / "o").exists()

"""Issue 15, items 2 and 5-8: what a new user trips over, each run as a user runs it (the CLI
in-process, or a subprocess where the process matters), checking the exit status, the one-line
message and the files left."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import melinvert
from melinvert import MelinvertError
from melinvert.commands import COMMANDS, Command, add_threads, build_parser, common, register
from melinvert.demo import speech_like
from melinvert.io import load_stats

PRESET = ("--preset", "hifigan-22k-80")
CFG = melinvert.get_preset("hifigan-22k-80")
COMPUTING = ("invert", "mel", "roundtrip", "bench", "score", "train", "demo")

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_error(err: str, *parts: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("melinvert: error:")]
    assert len(lines) == 1, err
    for p in parts:
        assert p in lines[0], (p, lines[0])


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    path = tmp_path / "speech.wav"
    sf.write(path, speech_like(22050, 1.0, seed=1), 22050, subtype="PCM_16")
    return path


@pytest.fixture
def mel_file(tmp_path: Path, speech_wav: Path, run_cli) -> Path:
    out = tmp_path / "speech.npy"
    status, _, err = run_cli("mel", speech_wav, "-o", out, *PRESET)
    assert status == 0, err
    return out


# ---------------------------------------------------------------------- item 2: threads


def _subcommand_flags(name: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {f for a in sub.choices[name]._actions for f in a.option_strings}


def test_every_computing_command_takes_threads_and_every_command_quiet() -> None:
    for c in COMMANDS:
        flags = _subcommand_flags(c.name)
        assert "--quiet" in flags, c.name
        assert ("--threads" in flags) == (c.name in COMPUTING), c.name


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch):
    """A registered command that reports the torch threads it runs with."""
    seen: list[int] = []
    register(Command("probe", lambda a, ui: seen.append(torch.get_num_threads()), "probe", (add_threads,)))
    yield seen
    COMMANDS[:] = [c for c in COMMANDS if c.name != "probe"]


def test_threads_option_default_and_restore(probe, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    assert melinvert.commands.main(["probe", "--threads", "2"]) == 0
    assert probe[-1] == 2 and torch.get_num_threads() == before  # restored after the command
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(common, "_busy_cpus", lambda: float(cores))  # every core busy: one thread
    assert melinvert.commands.main(["probe"]) == 0 and probe[-1] == 1
    monkeypatch.setattr(common, "_busy_cpus", lambda: 0.0)  # idle: every core, at most 8
    assert melinvert.commands.main(["probe"]) == 0
    assert probe[-1] == min(cores, common.MAX_DEFAULT_THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's choice is kept
    torch.set_num_threads(3)
    try:
        assert melinvert.commands.main(["probe"]) == 0 and probe[-1] == 3
    finally:
        torch.set_num_threads(before)
    capsys.readouterr()
    assert melinvert.commands.main(["probe", "--threads", "0"]) == 2
    _one_error(capsys.readouterr().err, "--threads 0 must be an integer >= 1")


def test_busy_cpus_sees_spinning_processes() -> None:
    """The default reacts at once to CPU-bound processes (/proc/loadavg's runnable count), not
    after the 1-minute load average has caught up."""
    if not Path("/proc/loadavg").is_file():
        pytest.skip("no /proc/loadavg on this system")
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        seen = max(common._busy_cpus() for _ in range(20))
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert seen >= 2.0
    assert common.default_threads() >= 1


# ---------------------------------------------------------------------- item 5: recorded config


def test_invert_uses_the_recorded_config(tmp_path: Path, mel_file: Path, run_cli) -> None:
    args = ("--method", "fast", "--quiet")
    status, _out, err = run_cli("invert", mel_file, "-o", tmp_path / "a.wav", *args)
    assert status == 0, err
    notes = [line for line in err.splitlines() if "recorded" in line]
    assert len(notes) == 1 and "no --preset/--config: using the config recorded" in notes[0]
    assert "hifigan-22k-80" in notes[0]
    status, _, err = run_cli("invert", mel_file, "-o", tmp_path / "b.wav", *PRESET, *args)
    assert status == 0, err
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def test_invert_without_any_config_is_one_clear_error(tmp_path: Path, mel_file: Path, run_cli) -> None:
    np.save(tmp_path / "bare.npy", np.load(mel_file))
    status, _, err = run_cli("invert", tmp_path / "bare.npy", "-o", tmp_path / "x.wav", "--quiet")
    assert status == 2
    _one_error(err, "records no config", "--preset NAME or --config FILE.json")
    assert not (tmp_path / "x.wav").exists()


def test_inspect_honours_recorded_stats(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    np.save(tmp_path / "stats.npy", np.stack([np.full(80, -3.0), np.full(80, 2.0)]))
    pwg = ("--preset", "pwg-22k-80")
    status, _, err = run_cli(
        "mel", speech_wav, "-o", tmp_path / "m.npy", *pwg, "--stats", tmp_path / "stats.npy"
    )
    assert status == 0, err
    status, out, err = run_cli("inspect", tmp_path / "m.npy")
    assert status == 0, err
    assert "standardised per bin with recorded statistics (--stats)); the values fit it" in out
    assert "compression: log10, floor 1e-10 (-10), standardised per bin (recorded statistics)" in out
    assert "floor 1e-5" not in out.split("presets that fit")[0]  # no guess contradicting the record
    assert "un-standardised with the statistics the file records" in out
    assert out.split("presets that fit")[1].split("\n")[1].split(":")[0].strip().endswith("pwg-22k-80")
    status, _, err = run_cli("inspect", tmp_path / "m.npy", *pwg)
    assert status == 2
    _one_error(err, "statistics differ", "pass the --stats it was made with")
    status, out, err = run_cli("inspect", tmp_path / "m.npy", *pwg, "--stats", tmp_path / "stats.npy")
    assert status == 0 and "fits the config asked for" in out, err


def test_inspect_flags_a_recorded_config_the_values_contradict(tmp_path: Path, mel_file: Path) -> None:
    from melinvert.identify import identify_mel

    mel = np.load(mel_file)
    info = identify_mel(np.exp(mel), recorded=CFG)  # a linear mel recorded as an ln one
    assert info.recorded_problem is not None
    assert "but the values do not fit it" in info.format()
    assert identify_mel(mel, recorded=CFG).recorded_problem is None


# ---------------------------------------------------------------------- item 6: metrics


def test_bench_and_score_agree(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    pytest.importorskip("matplotlib", reason="bench draws with matplotlib")
    status, _, err = run_cli(
        "bench", speech_wav, *PRESET, "--methods", "fast", "-o", tmp_path / "b", "--no-extras", "--quiet"
    )
    assert status == 0, err
    with open(tmp_path / "b" / "results.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["method"] == "fast")
    est = next((tmp_path / "b").rglob("fast.wav"))
    status, _out, err = run_cli(
        "score", speech_wav, est, *PRESET, "--no-extras", "--json", tmp_path / "s.json"
    )
    assert status == 0, err
    scored = json.loads((tmp_path / "s.json").read_text())["metrics"]
    # bench scores the float estimate, score its 16-bit WAV: equal up to that rounding
    assert float(row["log_mel_l1"]) == pytest.approx(scored["log_mel_l1"], abs=2e-3)
    assert float(row["lsd"]) == pytest.approx(scored["lsd"], abs=0.05)
    assert float(row["rtf"]) > 0  # seconds of compute per second of audio


def test_roundtrip_reports_rtf_and_x_real_time(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    status, out, err = run_cli(
        "roundtrip", speech_wav, "-o", tmp_path / "r.wav", *PRESET, "--method", "fast", "--no-extras"
    )
    assert status == 0, err
    line = next(line for line in out.splitlines() if "RTF" in line)
    rtf = float(line.split("RTF ")[1].split(" ")[0])
    times = float(line.split("(")[1].split("x real time")[0])
    assert rtf * times == pytest.approx(1.0, rel=0.1)  # one is the inverse of the other (rounded)
    assert "real-time factor" not in out


# ---------------------------------------------------------------------- item 7: outputs


def test_two_inputs_and_a_file_name_is_an_error(tmp_path: Path, mel_file: Path, run_cli) -> None:
    other = tmp_path / "other.npy"
    status, _, err = run_cli("mel", tmp_path / "speech.wav", "-o", other, *PRESET)
    assert status == 0, err
    status, _, err = run_cli("invert", mel_file, other, "-o", tmp_path / "two.wav", "--quiet")
    assert status == 2
    _one_error(err, "'", "two.wav' names one file but the inputs give 2 files", "give a folder")
    assert not (tmp_path / "two.wav").exists()


def test_roundtrip_into_a_folder(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    out = tmp_path / "rt"
    status, stdout, err = run_cli(
        "roundtrip", speech_wav, "-o", f"{out}/", *PRESET, "--method", "fast", "--no-extras"
    )
    assert status == 0, err
    assert sf.info(out / "speech.wav").samplerate == 22050
    assert f"-> {out / 'speech.wav'}" in stdout
    status, _, err = run_cli("roundtrip", tmp_path, "-o", tmp_path / "x.wav", *PRESET)
    assert status == 2
    _one_error(err, "is a folder; roundtrip takes one audio file")


def test_invert_writes_flac(tmp_path: Path, mel_file: Path, run_cli) -> None:
    out = tmp_path / "a.flac"
    status, _stdout, err = run_cli("invert", mel_file, "-o", out, *PRESET, "--method", "fast", "--quiet")
    assert status == 0, err
    info = sf.info(out)
    assert info.format == "FLAC" and info.samplerate == 22050 and info.frames > 0
    status, _, err = run_cli("invert", mel_file, "-o", tmp_path / "a.mp3", *PRESET, "--quiet")
    assert status == 2
    _one_error(err, "should end in .wav or .flac or .ogg")


# ---------------------------------------------------------------------- item 8: smaller


def test_demo_writes_a_page_and_pictures(tmp_path: Path, run_cli) -> None:
    pytest.importorskip("matplotlib", reason="the pictures are drawn with matplotlib")
    out = tmp_path / "demo"
    status, stdout, err = run_cli("demo", "-o", out, "--seconds", "1", "--methods", "fast")
    assert status == 0, err
    page = (out / "index.html").read_text()
    for f in ("original.wav", "fast.wav", "figures/original.png", "figures/fast.png"):
        assert (out / f).is_file() and f in page, f
    assert (out / "figures" / "fast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out / 'index.html'} and 2 mel pictures" in stdout


def test_missing_pesq_gets_an_install_hint(tmp_path: Path, speech_wav: Path, run_cli, monkeypatch) -> None:
    from melinvert import metrics

    real = metrics._import_extra
    monkeypatch.setattr(metrics, "_import_extra", lambda n: None if n in ("pesq", "pystoi") else real(n))
    status, out, err = run_cli("score", speech_wav, speech_wav, *PRESET)
    assert status == 0, err
    assert [line.split()[-1] for line in out.splitlines() if line.split()[0] in ("pesq_wb", "stoi")] == [
        "n/a"
    ] * 2
    assert 'pip install "melinvert[metrics]"' in err and "pesq_wb (the pesq package)" in err
    status, out, err = run_cli("score", speech_wav, speech_wav, *PRESET, "--no-extras")
    assert status == 0 and "pip install" not in err


def test_train_stopped_before_validation(tmp_path: Path, run_cli) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        sf.write(clips / f"c{i}.wav", speech_like(22050, 1.0, seed=i), 22050)
    run = tmp_path / "run"
    status, out, err = run_cli(
        "train", "refiner", clips, *PRESET, "-o", run, "--quiet", "--steps", "50", "--val-every", "50",
        "--batch-size", "2", "--crop-frames", "16", "--hparam", "channels=8", "--hparam", "dilations=[1]",
        "--hparam", "fine_hz=0", "--val-n-iter", "2", "--val-fraction", "0.34", "--max-minutes", "0.0001",
    )  # fmt: skip
    assert status == 0, err
    assert "stopped before the first validation" in out and "None" not in out
    assert not (run / "best.safetensors").exists() and (run / "last.safetensors").is_file()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "stopped" and log[-1]["validated"] is False and log[-1]["status"] == "time"


def test_load_unpacks_as_audio_and_rate(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    sf.write(path, np.stack([speech_like(16000, 0.5), speech_like(16000, 0.5, seed=2)], 1), 16000)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y, sr = melinvert.load(path, 22050)
    assert sr == 22050 and y.ndim == 1 and y.dtype == np.float32
    assert any("mixed 2 channels" in str(x.message) for x in w) and any(
        "resampled" in str(x.message) for x in w
    )
    full = melinvert.load_audio(path, 22050)
    _y3, sr3, notices = full  # the three-value form keeps working
    np.testing.assert_array_equal(full.audio, y)
    assert full.sample_rate == sr3 == 22050 and len(notices) == 2


def test_espnet_feats_stats(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(-4.0, 1.5, size=(500, 80))
    np.savez(
        tmp_path / "feats_stats.npz",
        count=np.array(feats.shape[0]),
        sum=feats.sum(0),
        sum_square=(feats**2).sum(0),
    )
    mean, std = load_stats(tmp_path / "feats_stats.npz")
    np.testing.assert_allclose(mean, feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, feats.std(0), rtol=1e-9)
    status, _, err = run_cli(
        "mel",
        speech_wav,
        "-o",
        tmp_path / "m.npy",
        "--preset",
        "espnet-22k-80",
        "--stats",
        tmp_path / "feats_stats.npz",
    )
    assert status == 0, err
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(MelinvertError, match=r"expected ESPnet's feats_stats\.npz"):
        load_stats(tmp_path / "bad.npz")


def test_parallel_wavegan_h5(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    h5py = pytest.importorskip("h5py")
    pwg = melinvert.get_preset("pwg-22k-80")
    y, _, _ = melinvert.load_audio(speech_wav, 22050)
    mel = melinvert.mel_spectrogram(y, pwg)
    with h5py.File(tmp_path / "utt.h5", "w") as f:
        f["wave"] = y
        f["feats"] = mel.T.astype(np.float32)  # ParallelWaveGAN dumps (frames, n_mels)
    with h5py.File(tmp_path / "stats.h5", "w") as f:
        f["mean"] = np.full(80, -4.0)
        f["scale"] = np.full(80, 2.0)
    mean, std = load_stats(tmp_path / "stats.h5")
    assert mean[0] == -4.0 and std[0] == 2.0
    status, _, err = run_cli(
        "invert",
        tmp_path / "utt.h5",
        "-o",
        tmp_path / "utt.wav",
        "--preset",
        "pwg-22k-80",
        "--method",
        "fast",
        "--quiet",
    )
    assert status == 0, err
    assert sf.info(tmp_path / "utt.wav").frames > 0


def test_h5_without_h5py_names_what_to_install(tmp_path: Path, run_cli, monkeypatch) -> None:
    (tmp_path / "utt.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    status, _, err = run_cli(
        "invert", tmp_path / "utt.h5", "-o", tmp_path / "u.wav", "--preset", "pwg-22k-80"
    )
    assert status == 2
    _one_error(err, "needs h5py", "pip install 'melinvert[io]'")
    assert not (tmp_path / "u.wav").exists()


def test_invert_says_what_a_method_means(tmp_path: Path, mel_file: Path, run_cli) -> None:
    status, _, err = run_cli(
        "invert", mel_file, "-o", tmp_path / "g.wav", *PRESET, "--method", "gla", "--quiet"
    )
    assert status == 0, err
    first = next(line for line in err.splitlines() if line.startswith("melinvert: note:"))
    assert first == "melinvert: note: method gla: nnls(iters=36)+pghi+gla(iters=32)"


def test_presets_table_keeps_parentheses_whole(run_cli) -> None:
    status, out, _ = run_cli("presets")
    assert status == 0
    for line in out.splitlines():
        assert line.count("(") == line.count(")"), line
    assert "(librosa >= 0.10; checked against 0.11)" in out


def test_cli_messages_use_cli_spellings(tmp_path: Path, speech_wav: Path, run_cli) -> None:
    out = tmp_path / "m.npy"
    assert run_cli("mel", speech_wav, "-o", out, *PRESET)[0] == 0
    assert run_cli("mel", speech_wav, "-o", out, *PRESET)[0] == 0  # known finished: skipped
    other = tmp_path / "other.npy"
    np.save(other, np.zeros((80, 4), np.float32))  # an output melinvert did not make
    status, _, err = run_cli("mel", speech_wav, "-o", other, *PRESET)
    assert status == 2
    _one_error(err, "pass --overwrite to replace it")
    assert "overwrite=True" not in err
    with pytest.raises(MelinvertError, match="pass overwrite=True"):  # the API keeps its own
        melinvert.save_mel(out, np.load(out), CFG)


def test_mel_layout_flag_and_hidden_alias(tmp_path: Path, speech_wav: Path, run_cli, capsys) -> None:
    status, out, err = run_cli("mel", speech_wav, "-o", tmp_path / "a.npy", *PRESET, "--layout", "time-first")
    assert status == 0 and "time-first" in out, err
    status, _, err = run_cli("mel", speech_wav, "-o", tmp_path / "b.npy", *PRESET, "--time-first")
    assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert np.load(tmp_path / "a.npy").shape[1] == 80
    melinvert.commands.main(["mel", "--help"])
    assert "--time-first" not in capsys.readouterr().out

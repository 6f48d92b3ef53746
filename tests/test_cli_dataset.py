"""``melinvert invert`` and ``melinvert mel`` over folders, through the dataset engines (issues 14,
15 items 3-4, 16 items 1 and 4): bad files named with their reasons and exit 3, workers equal,
concurrent runs, provenance, Ray, --quiet, linear path planning."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import melinvert
from melinvert.commands.invert import BLOCK_FRAMES, mel_frames
from melinvert.demo import speech_like
from melinvert.engines import MANIFEST_NAME, plan_jobs, read_manifest

CFG = melinvert.get_preset("hifigan-22k-80")
PRESET = ("--preset", "hifigan-22k-80")
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _cli(*argv: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "melinvert", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def _good_mels(folder: Path, n: int, seconds: float = 0.4) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        y = speech_like(22050, seconds=seconds + 0.05 * (i % 2), seed=i)
        p = folder / f"g{i}.npy"
        melinvert.save_mel(p, melinvert.mel_spectrogram(y, CFG), CFG)
        paths.append(p)
    return paths


def _bad_mels(folder: Path) -> dict[str, str]:
    """Bad mel files: ``{name: a phrase of the reason}``."""
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY garbage, not an array header at all")
    (folder / "empty.npy").write_bytes(b"")
    np.save(folder / "nan.npy", np.full((80, 30), np.nan, np.float32))
    np.save(folder / "mismatch.npy", np.full((100, 30), -5.0, np.float32))  # 100 bins, config has 80
    return {
        "corrupt.npy": "corrupt.npy",
        "empty.npy": "empty",
        "nan.npy": "NaN",
        "mismatch.npy": "100",
    }


def test_block_frames_is_invert_blocks_default() -> None:
    from melinvert.pipeline import invert_blocks

    assert inspect.signature(invert_blocks).parameters["block_frames"].default == BLOCK_FRAMES


def test_mel_frames_from_headers(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((80, 5000), np.float32))
    np.save(tmp_path / "t.npy", np.zeros((5000, 80), np.float32))
    np.savez(tmp_path / "z.npz", mel=np.zeros((80, 300), np.float32))
    (tmp_path / "bad.npy").write_bytes(b"nope")
    assert mel_frames(tmp_path / "a.npy", 80, "auto") == 5000
    assert mel_frames(tmp_path / "t.npy", 80, "auto") == 5000
    assert mel_frames(tmp_path / "t.npy", 80, "time-first") == 5000
    assert mel_frames(tmp_path / "z.npz", 80, "auto") == 300
    assert mel_frames(tmp_path / "bad.npy", 80, "auto") is None


def test_invert_folder_with_bad_files_finishes_the_good_ones(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    good = _good_mels(src, 4)
    bad = _bad_mels(src)
    done = _cli("invert", src, "-o", out, *PRESET, "--method", "fast", "--workers", "1")
    assert done.returncode == 3, done.stderr
    for g in good:
        z, sr = sf.read(out / (g.stem + ".wav"))
        assert sr == 22050 and z.size > 0 and np.isfinite(z).all()
        assert f"{g} -> {out / (g.stem + '.wav')}" in done.stdout
    failed = [ln for ln in done.stderr.splitlines() if ln.startswith("melinvert: error: failed: ")]
    assert len(failed) == len(bad), done.stderr
    for name, phrase in bad.items():
        line = next(ln for ln in failed if f"{src / name}:" in ln)
        assert phrase in line.split(f"{src / name}:", 1)[1], line
        assert not (out / (Path(name).stem + ".wav")).exists()
    assert "4 made, 0 already finished, 4 failed of 8 files" in done.stderr
    records, torn = read_manifest(out / MANIFEST_NAME)
    assert torn == 0 and sorted(r["status"] for r in records) == ["failed"] * 4 + ["ok"] * 4
    assert not list(out.glob(".*"))  # no claim, no temporary file left


def test_mel_folder_with_a_corrupt_wav(tmp_path: Path) -> None:
    src, out = tmp_path / "wavs", tmp_path / "mels"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"w{i}.wav", speech_like(22050, 0.5, seed=i), 22050)
    (src / "broken.wav").write_text("not audio at all\n" * 20)
    done = _cli("mel", src, "-o", out, *PRESET, "--workers", "1", "--device", "cpu")  # as the reference
    assert done.returncode == 3, done.stderr
    for i in range(3):
        mel, _ = melinvert.load_mel(out / f"w{i}.npy")
        y, _ = sf.read(src / f"w{i}.wav", dtype="float32")
        np.testing.assert_allclose(mel, melinvert.mel_spectrogram(y, CFG), atol=1e-5)
    line = [ln for ln in done.stderr.splitlines() if ln.startswith("melinvert: error: failed: ")]
    assert len(line) == 1 and "broken.wav" in line[0] and "not a readable .wav audio file" in line[0]
    assert not (out / "broken.npy").exists()


@pytest.mark.slow
def test_two_workers_equal_one(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_mels(src, 5)
    for w in ("1", "2"):
        done = _cli(
            "invert", src, "-o", tmp_path / f"w{w}", *PRESET, "--method", "fast", "--workers", w, "--quiet"
        )
        assert done.returncode == 0, done.stderr
    for i in range(5):
        assert (tmp_path / "w1" / f"g{i}.wav").read_bytes() == (tmp_path / "w2" / f"g{i}.wav").read_bytes()


def test_two_concurrent_runs_make_every_output_once(tmp_path: Path) -> None:
    """Two runs into one folder: same-named inputs from two folders; each output made exactly
    once, from its own input, and the other run's attempt refused with both names."""
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    _good_mels(a, 6)
    b.mkdir()
    for i in range(6):  # the same names, other content
        y = speech_like(22050, seconds=0.6, seed=100 + i)
        melinvert.save_mel(b / f"g{i}.npy", melinvert.mel_spectrogram(y, CFG), CFG)
    argv = [sys.executable, "-m", "melinvert", "invert"]
    tail = ["-o", str(out), *PRESET, "--method", "fast", "--workers", "1", "--quiet"]
    procs = [subprocess.Popen([*argv, str(d), *tail], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for d in (a, b)]  # fmt: skip
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    records, _ = read_manifest(out / MANIFEST_NAME)
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 6, (codes, results)  # every output made exactly once
    outputs = {r["output"] for r in ok}
    assert len(outputs) == 6
    for r in ok:  # and the file there is from the input recorded
        src = Path(r["input"])
        mel, _ = melinvert.load_mel(src)
        z, _ = sf.read(r["output"], dtype="float32")
        assert z.shape[0] == CFG.n_samples(mel.shape[-1])  # a and b differ in length
    # the other run's files were refused, named with both inputs
    refused = [r for r in records if r["status"] == "failed"]
    assert len(refused) == 6 and all("was made from" in r["error"] and "not" in r["error"] for r in refused)
    assert codes in ([0, 3], [3, 3])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_output_from_another_input_is_refused_and_overwrite_redoes_it(tmp_path: Path) -> None:
    a, b, out = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    _good_mels(a, 2)
    _good_mels(b, 2, seconds=0.7)
    assert (
        _cli("invert", a, "-o", out, *PRESET, "--method", "fast", "--workers", "1", "--quiet").returncode == 0
    )
    before = (out / "g0.wav").read_bytes()
    done = _cli("invert", b, "-o", out, *PRESET, "--method", "fast", "--workers", "1", "--quiet")
    assert done.returncode == 3
    line = next(ln for ln in done.stderr.splitlines() if "g0.wav" in ln)
    assert f"was made from {str((a / 'g0.npy').absolute())!r}, not {str(b / 'g0.npy')!r}" in line
    assert "--overwrite" in line and (out / "g0.wav").read_bytes() == before
    # one input file onto an output from another input: exit 2, one line
    done = _cli("invert", b / "g0.npy", "-o", out / "g0.wav", *PRESET, "--method", "fast", "--quiet")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "was made from" in done.stderr
    done = _cli(
        "invert", b, "-o", out, *PRESET, "--method", "fast", "--workers", "1", "--quiet", "--overwrite"
    )
    assert done.returncode == 0, done.stderr
    z, _ = sf.read(out / "g0.wav", dtype="float32")
    assert z.shape[0] == CFG.n_samples(melinvert.load_mel(b / "g0.npy")[0].shape[-1])
    # the same settings again: known finished, skipped; another method: refused
    done = _cli("invert", b, "-o", out, *PRESET, "--method", "fast", "--workers", "1", "--quiet")
    assert done.returncode == 0 and "skipped 2 files finished earlier" in done.stderr
    done = _cli("invert", b, "-o", out, *PRESET, "--method", "nnls+zero+gla", "--workers", "1", "--quiet")
    assert done.returncode == 3 and "made from this input with another recipe" in done.stderr


def test_quiet_prints_nothing_on_success(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _good_mels(src, 2)
    done = _cli(
        "invert", src, "-o", tmp_path / "out", *PRESET, "--method", "fast", "--workers", "1", "--quiet"
    )
    assert done.returncode == 0 and done.stderr == ""
    loud = _cli("invert", src, "-o", tmp_path / "out2", *PRESET, "--method", "fast", "--workers", "1")
    assert loud.returncode == 0 and "x real time" in loud.stderr and "2 made" in loud.stderr
    done = _cli("mel", tmp_path / "out", "-o", tmp_path / "mels", *PRESET, "--workers", "1", "--quiet")
    assert done.returncode == 0 and done.stderr == ""


def test_long_mel_is_streamed_with_the_batched_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli
) -> None:
    """A mel longer than one block goes through invert_blocks; the short ones through the
    engine; one manifest, and a rerun skips both kinds."""
    import melinvert.commands.invert as inv

    src, out = tmp_path / "in", tmp_path / "out"
    _good_mels(src, 2)
    np.save(src / "long.npy", np.full((80, BLOCK_FRAMES + 100), -6.0, np.float32))
    streamed = []
    real = inv._invert_one

    def spy(job, *a, **k):  # type: ignore[no-untyped-def]
        streamed.append(job.input.name)
        return real(job, *a, **k)

    monkeypatch.setattr(inv, "_invert_one", spy)
    argv = ("invert", src, "-o", out, *PRESET, "--method", "pinv+zero+gla", "--iters", "2", "--workers", "1")
    status, _, err = run_cli(*argv, "--quiet")
    assert status == 0, err
    assert streamed == ["long.npy"]
    assert sf.info(out / "long.wav").frames == CFG.n_samples(BLOCK_FRAMES + 100)
    records, _ = read_manifest(out / MANIFEST_NAME)
    assert sorted(r["engine"] for r in records) == ["local", "local", "stream"]
    assert len({json.dumps(r["provenance"]["task_digest"]) for r in records}) == 1
    status, _, err = run_cli(*argv, "--quiet")
    assert status == 0 and "skipped 3 files" in err and streamed == ["long.npy"]


def test_ray_on_a_tiny_folder(tmp_path: Path) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        done = _cli("invert", tmp_path, "-o", tmp_path / "o", *PRESET, "--ray")
        assert done.returncode == 2 and "pip install" in done.stderr and "melinvert[ray]" in done.stderr
        assert done.stderr.count("\n") == 1
        pytest.skip("Ray is not installed (pip install 'melinvert[ray]'); checked its one-line error")
    src = tmp_path / "in"
    _good_mels(src, 3)
    done = _cli("invert", src, "-o", tmp_path / "ray", *PRESET, "--method", "fast", "--workers", "1", "--quiet", "--ray", timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    loc = _cli(
        "invert", src, "-o", tmp_path / "loc", *PRESET, "--method", "fast", "--workers", "1", "--quiet"
    )
    for i in range(3):
        assert (tmp_path / "ray" / f"g{i}.wav").read_bytes() == (tmp_path / "loc" / f"g{i}.wav").read_bytes()
    assert loc.returncode == 0


def test_planning_10000_files_is_linear(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for k in range(10):
        (src / f"d{k}").mkdir(parents=True)
        for i in range(1000):
            (src / f"d{k}" / f"f{i}.npy").touch()
    t0 = time.process_time()
    jobs = plan_jobs([src], tmp_path / "out", ".wav", extensions=(".npy",))
    cpu = time.process_time() - t0
    assert len(jobs) == 10_000 and jobs[0].output == tmp_path / "out" / "d0" / "f0.wav"
    assert cpu < 2.0, f"planning 10,000 files took {cpu:.2f} s of CPU"

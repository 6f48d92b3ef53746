"""The engines: batches equal one file at a time, bad files fail alone, kills and races lose
nothing, Ray gives the local engine's results."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import melinvert
from melinvert import MelinvertError
from melinvert.engines import EXIT_OK, EXIT_SOME_FAILED, Job, Manifest, ProgressBar, plan_jobs, read_manifest
from melinvert.engines.local import run
from melinvert.engines.manifest import claim_path
from melinvert.engines.tasks import InvertTask, MelTask, _invert_batch, _mel_batch

CFG = melinvert.get_preset("hifigan-22k-80")
DRIVER = Path(__file__).with_name("engine_driver.py")
pytestmark = pytest.mark.usefixtures("one_thread")


def _signal(seconds: float, seed: int) -> np.ndarray:
    """A voiced-like test signal: harmonics of a seed-dependent f0 with a little noise, float32."""
    rng = np.random.default_rng(seed)
    n = round(seconds * CFG.sample_rate)
    t = np.arange(n) / CFG.sample_rate
    f0 = 110 + 15 * seed
    y = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 8))
    y = 0.4 * y / np.abs(y).max() + 0.01 * rng.standard_normal(n)
    return y.astype(np.float32)


def _mel_folder(root: Path, seconds: list[float], seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(seconds):
        mel = melinvert.mel_spectrogram(_signal(s, i + seed), CFG)
        melinvert.save_mel(root / f"m{i:02d}.npy", mel, CFG)
    return root


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


def _debris(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith((".part", ".tmp", ".claim")))


# ---------------------------------------------------------------------- batching


def test_invert_batch_equals_one_at_a_time() -> None:
    mels = [
        np.asarray(melinvert.mel_spectrogram(_signal(s, i), CFG)) for i, s in enumerate([0.5, 0.7, 0.5, 0.6])
    ]
    batched = _invert_batch(mels, CFG, method="fast")
    for mel, audio in zip(mels, batched):
        alone = melinvert.invert(mel, CFG, method="fast")
        assert audio.shape == alone.shape
        np.testing.assert_array_equal(audio, alone)


def test_cpu_batches_are_split_to_the_frame_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from melinvert.engines import tasks

    calls: list[tuple[int, ...]] = []
    real = melinvert.invert

    def spy(mel, cfg, **kw):
        calls.append(np.shape(mel))
        return real(mel, cfg, **kw)

    monkeypatch.setattr(melinvert.pipeline, "invert", spy)
    monkeypatch.setattr(tasks, "CPU_BATCH_FRAMES", 100)
    mels = [np.asarray(melinvert.mel_spectrogram(_signal(0.5, i), CFG)) for i in range(5)]  # 43 frames
    out = _invert_batch(mels, CFG, method="fast", device="cpu")
    shape = mels[0].shape
    assert shape[-1] == 43 and all(m.shape == shape for m in mels)
    assert calls == [(2, *shape), (2, *shape), shape]  # 100 frames: two stacks of two, the fifth alone
    for mel, audio in zip(mels, out):
        np.testing.assert_array_equal(audio, real(mel, CFG, method="fast"))


def test_mel_batch_equals_one_at_a_time() -> None:
    ys = [_signal(s, i) for i, s in enumerate([0.5, 0.3, 0.5, 0.5])]
    for y, mel in zip(ys, _mel_batch(ys, CFG)):
        np.testing.assert_array_equal(mel, melinvert.mel_spectrogram(y, CFG))


def test_mel_task_at_dataset_scale_is_bit_identical(tmp_path: Path) -> None:
    src = tmp_path / "wavs"
    (src / "spk").mkdir(parents=True)
    lengths = [0.5, 0.5, 0.8, 0.5, 0.3, 0.8]
    for i, s in enumerate(lengths):
        sf.write(
            src / ("spk" if i % 2 else "") / f"w{i}.wav", _signal(s, i), CFG.sample_rate, subtype="PCM_16"
        )
    jobs = plan_jobs([src], tmp_path / "mels", ".npy", extensions=(".wav",))
    summary = run(jobs, MelTask(CFG), manifest=Manifest.in_folder(tmp_path / "mels"), workers=1, batch=4)
    assert (summary.done, summary.failed, summary.exit_code) == (len(lengths), [], EXIT_OK)
    for job in jobs:
        y, _, _ = melinvert.load_audio(job.input, CFG.sample_rate)
        mel, recorded = melinvert.load_mel(job.output)
        assert recorded == CFG
        np.testing.assert_array_equal(mel, melinvert.mel_spectrogram(y, CFG))


def test_invert_task_batched_run_equals_single_files(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.5, 0.6, 0.5, 0.5, 0.7])
    jobs = plan_jobs([src], tmp_path / "out", ".wav", extensions=(".npy",))
    summary = run(
        jobs, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(tmp_path / "out"), workers=1
    )
    assert summary.done == 5 and summary.exit_code == EXIT_OK
    for job in jobs:
        mel, _ = melinvert.load_mel(job.input, config=CFG)
        single = tmp_path / "single.wav"
        melinvert.save_audio(
            single, melinvert.invert(mel, CFG, method="fast"), CFG.sample_rate, overwrite=True
        )
        assert job.output.read_bytes() == single.read_bytes()


@pytest.mark.slow
def test_worker_processes_give_the_same_files(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.5, 0.6, 0.5, 0.4])
    jobs = plan_jobs([src], tmp_path / "a", ".wav", extensions=(".npy",))
    run(jobs, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(tmp_path / "a"), workers=1)
    jobs2 = plan_jobs([src], tmp_path / "b", ".wav", extensions=(".npy",))
    s = run(
        jobs2, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(tmp_path / "b"), workers=2, batch=2
    )
    assert s.done == 4 and s.exit_code == EXIT_OK
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")


class CrashOnShortTask(InvertTask):
    """Kills its worker process on a mel shorter than 30 frames (a segfault, the OOM killer);
    slow on the others."""

    def process(self, items: list[np.ndarray]) -> list[np.ndarray]:
        if any(m.shape[-1] < 30 for m in items):
            os._exit(3)
        time.sleep(0.3)  # still running in the other worker when the short one kills its own
        return super().process(items)


@pytest.mark.slow
def test_a_dying_worker_fails_only_its_file(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.4, 0.5, 0.4, 0.5])
    mel = melinvert.mel_spectrogram(_signal(0.2, 9), CFG)
    melinvert.save_mel(src / "short.npy", mel, CFG)
    jobs = plan_jobs([src], tmp_path / "out", ".wav", extensions=(".npy",))
    s = run(
        jobs, CrashOnShortTask(CFG, method="fast"), manifest=Manifest.in_folder(tmp_path / "out"), workers=2
    )
    assert s.done == 4 and [Path(f).name for f, _, _ in s.failed] == ["short.npy"]
    assert "worker process died" in s.failed[0][2]
    assert _debris(tmp_path / "out") == []


# ---------------------------------------------------------------------- bad files


def test_bad_files_fail_alone_and_are_named(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.4, 0.5, 0.4])
    np.save(src / "nan.npy", np.full((80, 40), np.nan, np.float32))
    (src / "empty.npy").write_bytes(b"")
    (src / "corrupt.npy").write_bytes(os.urandom(300))
    np.save(src / "mels60.npy", np.full((60, 40), -5.0, np.float32))
    (src / "pickle.npy").write_bytes(b"\x80\x04\x95" + os.urandom(40))
    jobs = plan_jobs([src], tmp_path / "out", ".wav", extensions=(".npy",))
    seen = []
    summary = run(
        jobs,
        InvertTask(CFG, method="fast"),
        manifest=Manifest.in_folder(tmp_path / "out"),
        workers=1,
        batch=8,
        progress=seen.append,
    )
    assert summary.done == 3 and summary.exit_code == EXIT_SOME_FAILED and summary.status == "failed"
    reasons = {Path(src_).name: reason for src_, _, reason in summary.failed}
    assert set(reasons) == {"nan.npy", "empty.npy", "corrupt.npy", "mels60.npy", "pickle.npy"}
    assert "NaN" in reasons["nan.npy"] and "empty" in reasons["empty.npy"]
    assert "n_mels=80" in reasons["mels60.npy"] and "is not a readable .npy file" in reasons["corrupt.npy"]
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    assert sorted(_outputs(tmp_path / "out")) == ["m00.wav", "m01.wav", "m02.wav"]
    records, torn = read_manifest(tmp_path / "out" / "melinvert-manifest.jsonl")
    assert torn == 0 and sorted(r["status"] for r in records) == ["failed"] * 5 + ["ok"] * 3
    ok = [r for r in records if r["status"] == "ok"]
    assert all(r["audio_s"] > 0.3 and r["provenance"]["task_digest"] for r in ok)
    assert seen[-1].finished and seen[-1].files_done == 3 and seen[-1].files_failed == 5
    assert summary.lines()[0].startswith("3 made, 0 already finished, 5 failed of 8 files")


def test_progress_bar_and_usage_errors(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.3])
    jobs = plan_jobs([src], tmp_path / "out", ".wav", extensions=(".npy",))
    with pytest.raises(MelinvertError, match="workers=0 must be >= 1"):
        run(jobs, InvertTask(CFG), manifest=Manifest.in_folder(tmp_path / "out"), workers=0)
    with pytest.raises(MelinvertError, match="unknown method"):
        InvertTask(CFG, method="nope")
    text = io.StringIO()
    bar = ProgressBar(file=text)
    s = run(
        jobs,
        InvertTask(CFG, method="fast"),
        manifest=Manifest.in_folder(tmp_path / "out"),
        workers=1,
        progress=bar,
    )
    assert s.done == 1 and bar.bar.n == pytest.approx(s.audio_s)
    assert "1/1 files" in text.getvalue() and "x real time" in text.getvalue()


# ---------------------------------------------------------------------- kills, signals, races


def _driver(src: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(src), str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _finish(p: subprocess.Popen, timeout: float = 240) -> tuple[int, dict]:
    out, err = p.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    assert lines, err
    return p.returncode, json.loads(lines[-1])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """Ten mel files and the outputs of one uninterrupted run."""
    root = tmp_path_factory.mktemp("dataset")
    src = _mel_folder(root / "in", [0.6, 0.8, 0.6, 0.7, 0.6, 0.9, 0.6, 0.8, 0.7, 0.6])
    rc, res = _finish(_driver(src, root / "ref"))
    assert rc == 0 and res["done"] == 10
    return src, _outputs(root / "ref")


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_then_rerun_completes_identically(
    tmp_path: Path, dataset: tuple[Path, dict], seed: int
) -> None:
    src, ref = dataset
    out = tmp_path / "out"
    p = _driver(src, out)
    time.sleep(random.Random(seed).uniform(2.0, 5.0))  # start-up is about 2 s, the run a few more
    p.kill()
    p.communicate()
    rc, res = _finish(_driver(src, out))
    assert rc == 0, res
    assert res["done"] + res["skipped"] == 10
    assert _outputs(out) == ref
    assert _debris(out) == []


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_a_rerun_finishes(tmp_path: Path, dataset: tuple[Path, dict]) -> None:
    src, ref = dataset
    out = tmp_path / "out"
    p = _driver(src, out)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.wav")) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # signal once the run is under way (start-up varies with the load)
    p.send_signal(signal.SIGTERM)
    rc, _ = _finish(p)
    made = _outputs(out)
    # 0 only if it finished before the signal; -SIGTERM only if the signal came as the finished
    # run was exiting (its handler already restored): every output made
    assert rc in (143, 0) or (rc == -signal.SIGTERM and made == ref), rc
    assert _debris(out) == []
    assert all(ref[name] == data for name, data in made.items())  # nothing half-written
    rc, res = _finish(_driver(src, out))
    assert rc == 0 and res["done"] + res["skipped"] == 10 and _outputs(out) == ref


@pytest.mark.slow
def test_two_runs_with_the_same_inputs_make_each_output_once(
    tmp_path: Path, dataset: tuple[Path, dict]
) -> None:
    src, ref = dataset
    out = tmp_path / "out"
    a, b = _driver(src, out), _driver(src, out)
    (rc_a, res_a), (rc_b, res_b) = _finish(a), _finish(b)
    assert (rc_a, rc_b) == (0, 0)
    assert res_a["done"] + res_b["done"] == 10 and res_a["skipped"] + res_b["skipped"] == 10
    records, _ = read_manifest(out / "melinvert-manifest.jsonl")
    made = [r["output"] for r in records if r["status"] == "ok"]
    assert sorted(made) == sorted(set(made)) and len(made) == 10
    assert _outputs(out) == ref and _debris(out) == []


@pytest.mark.slow
def test_two_runs_with_same_named_inputs_never_take_each_others_results(
    tmp_path: Path, dataset: tuple[Path, dict]
) -> None:
    src_a, ref_a = dataset
    src_b = _mel_folder(tmp_path / "b", [0.6, 0.7, 0.6, 0.6, 0.8, 0.6, 0.6, 0.7, 0.6, 0.6], seed=20)
    ref_b_dir = tmp_path / "ref_b"
    run(
        plan_jobs([src_b], ref_b_dir, ".wav", extensions=(".npy",)),
        InvertTask(CFG, method="fast"),
        manifest=Manifest.in_folder(ref_b_dir),
        workers=1,
    )
    ref_b = _outputs(ref_b_dir)
    out = tmp_path / "out"
    a, b = _driver(src_a, out), _driver(src_b, out)
    (rc_a, res_a), (rc_b, res_b) = _finish(a), _finish(b)
    assert res_a["done"] + res_b["done"] == 10
    assert len(res_a["failed"]) + len(res_b["failed"]) == 10  # each refused what the other made
    assert all("was made from" in reason for _, reason in res_a["failed"] + res_b["failed"])
    assert {rc_a, rc_b} <= {EXIT_OK, EXIT_SOME_FAILED}
    records, _ = read_manifest(out / "melinvert-manifest.jsonl")
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 10 and len({r["output"] for r in ok}) == 10
    for r in ok:  # every output is exactly the one its recorded input makes
        name = Path(r["output"]).name
        ref = ref_a if Path(r["input"]).parent == src_a else ref_b
        assert (out / name).read_bytes() == ref[name]
    assert _debris(out) == []


def test_stale_claim_of_a_dead_run_is_taken_over(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.4, 0.4])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": os.uname().nodename, "start": time.time(), "token": "x", "run": "old"}
    claim_path(out / "m00.wav").write_text(json.dumps(holder) + "\nmaking\n")
    (out / "m00.wav").write_bytes(b"RIFF half of what a killed run renamed")
    (out / ".m00.wav.abc123.part").write_bytes(b"partial")
    jobs = plan_jobs([src], out, ".wav", extensions=(".npy",))
    s = run(jobs, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(out), workers=1)
    assert s.done == 2 and s.exit_code == EXIT_OK
    assert _debris(out) == []
    assert sf.info(str(out / "m00.wav")).frames > 0


def test_rerun_skips_known_and_refuses_foreign_outputs(tmp_path: Path) -> None:
    src = _mel_folder(tmp_path / "in", [0.4, 0.4, 0.4])
    out = tmp_path / "out"
    jobs = plan_jobs([src], out, ".wav", extensions=(".npy",))
    task = InvertTask(CFG, method="fast")
    run(jobs, task, manifest=Manifest.in_folder(out), workers=1)
    (out / "m01.wav").write_bytes((out / "m00.wav").read_bytes())  # someone else's file
    s = run(jobs, task, manifest=Manifest.in_folder(out), workers=1)
    assert (s.done, s.skipped, len(s.failed), s.exit_code) == (0, 2, 1, EXIT_SOME_FAILED)
    assert "changed after melinvert wrote it" in s.failed[0][2]
    s = run(jobs[1:2], task, manifest=Manifest.in_folder(out), workers=1, overwrite=True)
    assert s.done == 1 and s.exit_code == EXIT_OK
    s = run(jobs, InvertTask(CFG, method="fast", seed=3), manifest=Manifest.in_folder(out), workers=1)
    assert len(s.failed) == 3 and all("another recipe" in r for _, _, r in s.failed)


def test_jobs_as_pairs_and_job_paths() -> None:
    j = Job("a.npy", "b.wav")
    assert j.input == Path("a.npy") and j.output == Path("b.wav")


# ---------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_ray_two_node_cluster_matches_local(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'melinvert[ray]')")
    from ray.cluster_utils import Cluster

    from melinvert.engines import ray_engine

    src = _mel_folder(tmp_path / "in", [0.4, 0.5, 0.4, 0.6])
    np.save(src / "bad.npy", np.zeros((60, 30), np.float32))
    local_jobs = plan_jobs([src], tmp_path / "local", ".wav", extensions=(".npy",))
    run(
        local_jobs, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(tmp_path / "local"), workers=1
    )
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        out = tmp_path / "ray"
        jobs = plan_jobs([src], out, ".wav", extensions=(".npy",))
        s = ray_engine.run(jobs, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(out), batch=2)
        assert (s.done, s.exit_code) == (4, EXIT_SOME_FAILED)
        assert [Path(f).name for f, _, _ in s.failed] == ["bad.npy"] and "n_mels=80" in s.failed[0][2]
        assert _outputs(out) == _outputs(tmp_path / "local") and _debris(out) == []
        again = ray_engine.run(
            jobs, InvertTask(CFG, method="fast"), manifest=Manifest.in_folder(out), batch=2
        )
        assert (again.done, again.skipped) == (0, 4)
        records, _ = read_manifest(out / "melinvert-manifest.jsonl")
        assert {r["engine"] for r in records} == {"ray"}
    finally:
        ray.shutdown()
        cluster.shutdown()

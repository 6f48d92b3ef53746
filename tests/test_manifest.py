"""The run manifest, per-file claims, the known-finished decision and the linear-time planner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from melinvert import MelinvertError
from melinvert.engines import Job, Manifest, Task, plan_jobs, read_manifest
from melinvert.engines.manifest import Ledger, acquire_claim, claim_path, fingerprint, leftovers


class CopyTask(Task):
    """Copies the input's bytes (reversed when ``flip``): a recipe the tests can change."""

    name = "copy"

    def __init__(self, flip: bool = False):
        self.flip = flip

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "flip": self.flip}


def _made(ledger: Ledger, job: Job) -> None:
    """What an engine does for a job it was told to make: write it, then record it."""
    data = job.input.read_bytes()
    job.output.write_bytes(data)
    ledger.finish_ok(job, fingerprint(job.input), audio_s=1.0, wall_s=0.1, notices=[])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        (tmp_path / "in" / f"{name}.npy").write_bytes(f"content of {name}".encode())
    return tmp_path


def _ledger(out: Path, task: Task | None = None, overwrite: bool = False) -> Ledger:
    return Ledger(Manifest.in_folder(out), task or CopyTask(), overwrite=overwrite)


# ---------------------------------------------------------------------- the manifest file


def test_torn_last_line_is_skipped_and_the_next_record_survives(tmp_path: Path) -> None:
    m = Manifest(tmp_path / "m.jsonl")
    m.append({"status": "ok", "n": 1})
    m.close()
    with open(m.path, "ab") as f:  # what kill -9 in the middle of a write leaves
        f.write(b'{"status": "ok", "n": 2, "inp')
    records, torn = read_manifest(m.path)
    assert [r["n"] for r in records] == [1] and torn == 1
    m2 = Manifest(m.path)
    m2.append({"status": "ok", "n": 3})
    m2.close()
    records, torn = read_manifest(m.path)
    assert [r["n"] for r in records] == [1, 3] and torn == 1


def test_refresh_reads_only_complete_lines(tmp_path: Path) -> None:
    m = Manifest(tmp_path / "m.jsonl")
    rec = {"status": "ok", "provenance": {"output": str(tmp_path / "x.wav")}}
    with open(m.path, "wb") as f:
        f.write((json.dumps(rec) + "\n").encode() + b'{"status": "ok", "provenance": {"out')
    assert m.last_ok(tmp_path / "x.wav") == rec
    assert m.torn == 0  # the unterminated tail may still be being written: not judged yet
    with open(m.path, "ab") as f:
        f.write(b"\n")
    m.refresh()
    assert m.torn == 1


def test_missing_manifest_has_no_records(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "none.jsonl") == ([], 0)


def test_unwritable_manifest_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(MelinvertError, match="cannot write the run manifest"):
        Manifest(tmp_path / "file" / "m.jsonl").append({"status": "ok"})


# ---------------------------------------------------------------------- known finished


def test_finished_output_is_skipped_only_when_known(folder: Path) -> None:
    out = folder / "out"
    job = Job(folder / "in" / "a.npy", out / "a.wav")
    led = _ledger(out)
    assert led.begin(job) == "todo"
    _made(led, job)
    assert not claim_path(job.output).exists()
    assert _ledger(out).begin(job) == "skip"
    # another recipe: refused, naming the recipe; with overwrite: redone
    led2 = _ledger(out, CopyTask(flip=True))
    assert led2.begin(job) == "failed"
    assert "another recipe" in led2.summary.failed[0][2] and "--overwrite" in led2.summary.failed[0][2]
    assert _ledger(out, CopyTask(flip=True), overwrite=True).begin(job) == "todo"


def test_output_from_another_input_is_refused_with_its_name(folder: Path) -> None:
    out = folder / "out"
    led = _ledger(out)
    a = Job(folder / "in" / "a.npy", out / "x.wav")
    assert led.begin(a) == "todo"
    _made(led, a)
    led2 = _ledger(out)
    assert led2.begin(Job(folder / "in" / "b.npy", out / "x.wav")) == "failed"
    reason = led2.summary.failed[0][2]
    assert "was made from" in reason and "a.npy" in reason and "b.npy" in reason
    assert (out / "x.wav").read_bytes() == b"content of a"  # untouched


def test_changed_input_changed_output_and_unknown_output_are_refused(folder: Path) -> None:
    out = folder / "out"
    job = Job(folder / "in" / "a.npy", out / "a.wav")
    led = _ledger(out)
    led.begin(job)
    _made(led, job)
    job.output.write_bytes(b"edited by hand!!")  # same size as before is not enough either
    led2 = _ledger(out)
    assert led2.begin(job) == "failed" and "changed after melinvert wrote it" in led2.summary.failed[0][2]
    job.input.write_bytes(b"new content of a, longer")
    led3 = _ledger(out)
    assert led3.begin(job) == "failed" and "earlier version" in led3.summary.failed[0][2]
    stranger = Job(folder / "in" / "b.npy", out / "b.wav")
    stranger.output.write_bytes(b"not ours")
    led4 = _ledger(out)
    assert led4.begin(stranger) == "failed" and "no record" in led4.summary.failed[0][2]


def test_moved_input_with_the_same_content_is_still_known(folder: Path) -> None:
    out = folder / "out"
    job = Job(folder / "in" / "a.npy", out / "a.wav")
    led = _ledger(out)
    led.begin(job)
    _made(led, job)
    os.utime(job.input, ns=(1, 1))  # a copy or a touch changes the time, not the content
    assert _ledger(out).begin(job) == "skip"


# ---------------------------------------------------------------------- claims


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_live_claim_is_busy_and_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": sleeper.pid, "host": os.uname().nodename, "start": time.time(), "token": "t"}
        claim_path(out).write_text(json.dumps(holder) + "\n")
        busy = acquire_claim(out, "run")
        assert isinstance(busy, dict) and busy["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    claim = acquire_claim(out, "run")
    assert not isinstance(claim, dict)
    assert claim.taken_over is not None and claim.taken_over["pid"] == sleeper.pid
    assert json.loads(claim_path(out).read_text().splitlines()[0])["pid"] == os.getpid()
    claim.release()
    assert not claim_path(out).exists()
    assert list(tmp_path.iterdir()) == []  # the stale claim moved aside was removed too


def test_claim_being_written_is_busy_until_it_is_old(tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    claim_path(out).touch()  # another run between O_EXCL create and its write
    assert isinstance(acquire_claim(out, "r"), dict)
    os.utime(claim_path(out), (time.time() - 60, time.time() - 60))  # its creator died there
    claim = acquire_claim(out, "r")
    assert not isinstance(claim, dict) and claim.taken_over is not None


def test_claim_exclusive_within_a_process(tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    first = acquire_claim(out, "r1")
    assert not isinstance(first, dict)
    assert isinstance(acquire_claim(out, "r2"), dict)  # held by a live process (this one)
    first.release()
    assert not isinstance(acquire_claim(out, "r3"), dict)


def test_stale_claim_while_making_is_redone_and_leftovers_removed(folder: Path) -> None:
    out = folder / "out"
    out.mkdir()
    job = Job(folder / "in" / "a.npy", out / "a.wav")
    job.output.write_bytes(b"whatever a killed run left")  # renamed, not yet recorded
    temp = out / ".a.wav.k3j2l1.part"
    temp.write_bytes(b"half")
    holder = {
        "pid": _dead_pid(),
        "host": os.uname().nodename,
        "start": time.time(),
        "token": "t",
        "run": "dead",
    }
    claim_path(job.output).write_text(json.dumps(holder) + "\nmaking\n")
    led = _ledger(out)
    led.prepare([job])
    assert led.begin(job) == "todo"  # the dead run was making it: finish its work
    assert not temp.exists()
    led.abandon(job)
    assert not claim_path(job.output).exists()


def test_leftovers_match_only_their_outputs(tmp_path: Path) -> None:
    for name in (".a.wav.x1.part", ".a.wav.json.x2.part", ".ab.wav.x3.tmp", ".a.wav.claim", "a.wav"):
        (tmp_path / name).write_text("x")
    found = leftovers([tmp_path / "a.wav"])
    assert sorted(p.name for v in found.values() for p in v) == [".a.wav.json.x2.part", ".a.wav.x1.part"]


# ---------------------------------------------------------------------- planning


def test_plan_10000_files_under_a_second(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for d in range(100):
        sub = root / f"spk{d:03d}" / "wav"
        sub.mkdir(parents=True)
        for i in range(100):
            (sub / f"utt{i:03d}.npy").touch()
    # CPU time of this process (user + system, the file-system calls included): on a shared
    # machine the wall clock measures the neighbours; a quadratic check costs minutes either way
    t0, w0 = time.process_time(), time.perf_counter()
    jobs = plan_jobs([root], tmp_path / "out", ".wav", extensions=(".npy",))
    elapsed, wall = time.process_time() - t0, time.perf_counter() - w0
    assert len(jobs) == 10_000
    assert jobs[0] == Job(
        root / "spk000" / "wav" / "utt000.npy", tmp_path / "out" / "spk000" / "wav" / "utt000.wav"
    )
    assert elapsed < 1.0, f"planning 10,000 files took {elapsed:.2f} s of CPU ({wall:.2f} s wall)"


def test_plan_refuses_collisions_and_replacing_inputs(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        np.save(tmp_path / d / "x.npy", np.zeros(3))
    with pytest.raises(MelinvertError, match="would both write"):
        plan_jobs(
            [tmp_path / "a" / "x.npy", tmp_path / "b" / "x.npy"],
            tmp_path / "out",
            ".wav",
            extensions=(".npy",),
        )
    with pytest.raises(MelinvertError, match="would replace the input"):
        plan_jobs([tmp_path / "a"], tmp_path / "a", ".npy", extensions=(".npy",))
    os.link(tmp_path / "a" / "x.npy", tmp_path / "b" / "hard.wav")
    with pytest.raises(MelinvertError, match="would replace the input"):
        plan_jobs([tmp_path / "a" / "x.npy"], tmp_path / "b" / "hard.wav", ".wav", extensions=(".npy",))
    with pytest.raises(MelinvertError, match="does not exist"):
        plan_jobs([tmp_path / "nope"], tmp_path / "out", ".wav", extensions=(".npy",))
    with pytest.raises(MelinvertError, match=r"should end in \.wav"):
        plan_jobs([tmp_path / "a" / "x.npy"], tmp_path / "y.flac", ".wav", extensions=(".npy",))


def test_plan_mirrors_folders_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "in" / "s1").mkdir(parents=True)
    (tmp_path / "in" / ".hidden").mkdir()
    for p in ("in/s1/b.npy", "in/a.NPY", "in/.hidden/c.npy", "in/s1/.d.npy", "in/s1/e.txt"):
        (tmp_path / p).touch()
    jobs = plan_jobs(
        [tmp_path / "in", tmp_path / "in" / "a.NPY"], tmp_path / "o", ".wav", extensions=(".npy",)
    )
    assert [
        (j.input.relative_to(tmp_path).as_posix(), j.output.relative_to(tmp_path).as_posix()) for j in jobs
    ] == [
        ("in/a.NPY", "o/a.wav"),
        ("in/s1/b.npy", "o/s1/b.wav"),
    ]

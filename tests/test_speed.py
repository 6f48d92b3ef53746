"""Set-up that is cached or kept off extra threads (issue 17): same numbers, less repeated work.

- the overlap-add envelope of :class:`melinvert.dsp.FrameOps` is built once per window, hop,
  frame count, dtype and device, equals the sum of squared windows computed directly, and is
  keyed on every one of those;
- the filterbank's SVDs run with numpy's BLAS on one thread, and the caller's thread count is
  restored afterwards;
- memory freed by one inversion is kept for the next (glibc's mallopt), unless
  ``MELINVERT_KEEP_MEMORY=0``: later calls touch no fresh pages.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import harmonic_noise

import melinvert
from melinvert import MelConfig, dsp, operator


def direct_inv_env(c: MelConfig, n_frames: int) -> np.ndarray:
    """``1 / max(sum_t w^2(n - t hop), 1e-3 peak)`` by an explicit loop, float64."""
    w2 = dsp.window(c, dtype=torch.float64).numpy() ** 2
    env = np.zeros(c.n_fft + c.hop_length * (n_frames - 1))
    for i in range(n_frames):
        env[i * c.hop_length : i * c.hop_length + c.n_fft] += w2
    return 1.0 / np.maximum(env, 1e-3 * env.max())


CONFIGS = [
    MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80),  # n_fft a multiple of hop
    MelConfig(sample_rate=16000, n_fft=512, hop_length=100, win_length=300, window="blackman", n_mels=40),
    MelConfig(sample_rate=8000, n_fft=63, hop_length=10, n_mels=12),  # odd n_fft: F.fold
]


@pytest.mark.parametrize("c", CONFIGS, ids=["multiple", "short-window", "odd"])
def test_envelope_equals_the_direct_sum_and_is_shared(c: MelConfig) -> None:
    length = 40 * c.hop_length + 7
    a = dsp.FrameOps(c, length, dtype=torch.float64, device="cpu")
    b = dsp.FrameOps(c, length, dtype=torch.float64, device="cpu")
    np.testing.assert_allclose(a.inv_env.numpy(), direct_inv_env(c, a.n_frames), rtol=1e-12, atol=0)
    assert b.inv_env is a.inv_env  # built once
    other = dsp.FrameOps(c, length + c.hop_length, dtype=torch.float64, device="cpu")
    assert other.inv_env.shape[-1] == a.inv_env.shape[-1] + c.hop_length
    f32 = dsp.FrameOps(c, length, dtype=torch.float32, device="cpu")
    assert f32.inv_env.dtype == torch.float32
    np.testing.assert_allclose(f32.inv_env.double().numpy(), a.inv_env.numpy(), rtol=1e-6)


def test_envelope_keyed_on_the_window() -> None:
    c = CONFIGS[0]
    hann = dsp.FrameOps(c, 10_000, dtype=torch.float64, device="cpu").inv_env
    for changed in (
        MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80, window="hamming"),
        MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, n_mels=80, win_length=800),
    ):
        env = dsp.FrameOps(changed, 10_000, dtype=torch.float64, device="cpu").inv_env
        assert env.shape == hann.shape
        assert not torch.equal(env, hann)
        np.testing.assert_allclose(env.numpy(), direct_inv_env(changed, 1 + 10_000 // 256), rtol=1e-12)


def test_synthesis_unchanged_by_the_shared_envelope() -> None:
    """Two FrameOps sharing the envelope synthesise what a fresh envelope gives."""
    c = CONFIGS[0]
    ops = dsp.FrameOps(c, 20_000, dtype=torch.float64, device="cpu")
    spec = ops.analysis(torch.from_numpy(np.random.default_rng(0).standard_normal((2, 20_000))))
    y = ops.synthesis(spec)
    fresh = dsp.FrameOps(c, 20_000, dtype=torch.float64, device="cpu")
    fresh._inv_env = torch.from_numpy(direct_inv_env(c, fresh.n_frames))
    torch.testing.assert_close(y, fresh.synthesis(spec), rtol=0, atol=1e-13)


def test_one_blas_thread_limits_and_restores() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not visible to threadpoolctl here")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        outer = blas_threads()
        with operator.one_blas_thread():
            assert blas_threads() == [1] * len(outer)
        assert blas_threads() == outer
    assert blas_threads() == before


def test_operator_pinv_is_the_pseudo_inverse() -> None:
    c = CONFIGS[0]
    fb = dsp.mel_basis_np(c)
    np.testing.assert_allclose(operator.pinv_np(c), np.linalg.pinv(fb, rcond=operator.PINV_RCOND), atol=1e-10)
    op = operator.MelOperator(c, dtype=torch.float64)
    assert op.step == pytest.approx(1.0 / np.linalg.norm(fb[:, op.lo : op.hi], 2) ** 2, rel=1e-12)


# ---------------------------------------------------------------------- threads on a busy machine


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _load(monkeypatch: pytest.MonkeyPatch, load: float) -> None:
    """A 2-core machine at this 1-minute load average, without ``/proc/stat``."""
    monkeypatch.delenv("MELINVERT_LOAD_AWARE_THREADS", raising=False)
    monkeypatch.setattr(dsp.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(dsp.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(dsp, "_busy_seconds", lambda: None)


def _readings(monkeypatch: pytest.MonkeyPatch, cores: int, *looks: tuple[float, float, float]) -> None:
    """``cores`` cores and ``/proc/stat`` read as given: each look is (monotonic s, the
    machine's busy CPU s, this process's CPU s); the first is the mark already taken."""
    monkeypatch.delenv("MELINVERT_LOAD_AWARE_THREADS", raising=False)
    monkeypatch.setattr(dsp.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(dsp.os, "getloadavg", lambda: pytest.fail("the load average was read"))
    rest = iter(looks[1:])
    now: list[tuple[float, float, float]] = []

    def clock() -> float:
        now[:] = [next(rest)]
        return now[0][0]

    monkeypatch.setattr(dsp, "_clock", clock)
    monkeypatch.setattr(dsp, "_busy_seconds", lambda: now[0][1])
    monkeypatch.setattr(dsp, "_own_seconds", lambda: now[0][2])
    monkeypatch.setattr(dsp, "_look", [*looks[0], None])


def test_free_cores_are_those_other_processes_leave(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's busy CPU time less this process's own, per second since the last look."""
    _readings(
        monkeypatch,
        2,
        (0.0, 100.0, 5.0),
        (1.0, 101.9, 5.9),  # 1.9 s busy in 1 s, 0.9 of it ours: one core's worth is others'
        (2.0, 102.9, 6.8),  # 0.1 of others': both cores free
        (2.05, 103.0, 6.8),  # too soon to measure (50 ms): the last verdict stands
        (3.0, 104.5, 7.2),  # 1.1 of others'
        (4.0, 105.1, 7.7),  # 0.1 of others'
        (5.0, 106.05, 8.2),  # 0.45 of others': half a core's worth or less is left alone
    )
    assert [dsp.free_cores() for _ in range(6)] == [1, 2, 2, 1, 2, 2]
    _readings(monkeypatch, 16, (0.0, 0.0, 0.0), (2.0, 20.0, 12.8))  # 7.2 s others' in 2 s: 3.6 cores
    assert dsp.free_cores() == 12
    _readings(monkeypatch, 2, (0.0, 0.0, 0.0), (1.0, 9.0, 0.5))  # more than every core: one left
    assert dsp.free_cores() == 1


def test_threads_follow_the_free_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        _readings(monkeypatch, 8, (0.0, 0.0, 0.0), (1.0, 3.0, 0.5))  # 2.5 cores' worth of others'
        with dsp.threads_for_load(torch.device("cpu")):
            assert torch.get_num_threads() == 6
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(before)


def _spinning_thread(stop: threading.Event) -> threading.Thread:
    """A thread that holds a core until ``stop`` without the GIL (hashing 16 MB at a time:
    ~25 ms between its short returns to the interpreter)."""
    data = b"x" * (16 << 20)

    def spin() -> None:
        while not stop.is_set():
            hashlib.sha256(data).digest()  # releases the GIL for buffers over 2 kB

    th = threading.Thread(target=spin, daemon=True)
    th.start()
    return th


def _eventually(cond: Callable[[], bool], seconds: float = 2.0) -> bool:
    """Whether ``cond()`` holds at some look within ``seconds`` (thread states flicker: a
    thread waiting a moment for the GIL reads as sleeping)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc/self/task")
def test_busy_threads_sees_a_running_thread_and_not_torchs_pool(
    monkeypatch: pytest.MonkeyPatch, two_threads: None
) -> None:
    time.sleep(0.2)  # numpy's BLAS pool, if an earlier test woke it, is asleep again
    base = dsp.busy_threads()
    torch.ones(1 << 20).mul_(2.0)  # torch's pool has just worked: its threads may still spin
    assert dsp.busy_threads() <= base  # ... and do not count
    stop = threading.Event()
    th = _spinning_thread(stop)
    try:
        assert _eventually(lambda: dsp.busy_threads() >= base + 1)
        monkeypatch.delenv("MELINVERT_LOAD_AWARE_THREADS", raising=False)
        monkeypatch.setattr(dsp, "free_cores", lambda: 2)

        def cut() -> bool:
            with dsp.threads_for_load(torch.device("cpu")):
                inside = torch.get_num_threads()
            return inside == 1 and torch.get_num_threads() == 2

        assert _eventually(cut)
    finally:
        stop.set()
        th.join()
    assert _eventually(lambda: dsp.busy_threads() <= base)
    with dsp.threads_for_load(torch.device("cpu")):
        assert torch.get_num_threads() == 2 or dsp.busy_threads() > base


def test_without_proc_stat_the_load_average_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    for load, free in ((1.5, 2), (2.0, 2), (2.5, 1), (7.5, 1)):
        _load(monkeypatch, load)
        assert dsp.free_cores() == free


def test_busy_cpu_runs_on_one_thread_and_restores(monkeypatch: pytest.MonkeyPatch, two_threads: None) -> None:
    _load(monkeypatch, 7.5)
    with dsp.threads_for_load(torch.device("cpu")):
        assert torch.get_num_threads() == 1
        with dsp.threads_for_load(torch.device("cpu")):  # nested: the outer count is kept
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"), dsp.threads_for_load(torch.device("cpu")):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


def test_idle_cpu_and_other_devices_keep_their_threads(
    monkeypatch: pytest.MonkeyPatch, two_threads: None
) -> None:
    _load(monkeypatch, 1.5)  # the caller's own work on an idle 2-core machine
    with dsp.threads_for_load(torch.device("cpu")):
        assert torch.get_num_threads() == 2
    _load(monkeypatch, 7.5)
    with dsp.threads_for_load(torch.device("cuda")):
        assert torch.get_num_threads() == 2
    monkeypatch.setenv("MELINVERT_LOAD_AWARE_THREADS", "0")  # the opt-out
    with dsp.threads_for_load(torch.device("cpu")):
        assert torch.get_num_threads() == 2


def test_invert_on_a_busy_cpu_gives_the_same_audio(
    monkeypatch: pytest.MonkeyPatch, two_threads: None
) -> None:
    cfg = melinvert.get_preset("hifigan-22k-80")
    mel = melinvert.mel_spectrogram(harmonic_noise(cfg.sample_rate, 0.5, seed=3), cfg)
    idle = melinvert.invert(mel, cfg, method="fast", seed=0)
    _load(monkeypatch, 7.5)
    seen = []
    busy = melinvert.invert(
        mel, cfg, method="fast", seed=0, callback=lambda p: seen.append(torch.get_num_threads())
    )
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2
    np.testing.assert_allclose(busy, idle, rtol=0, atol=1e-12)  # float64: thread count does not matter


_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
import melinvert
from melinvert import dsp
cfg = melinvert.get_preset("hifigan-22k-80")
t = np.arange(3 * cfg.sample_rate) / cfg.sample_rate
mel = melinvert.mel_spectrogram((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), cfg)
faults = []
for _ in range(4):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    melinvert.invert(mel, cfg, method="fast")
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print(dsp.keep_freed_memory(), min(faults[1:]))
"""


def _faults(env: dict[str, str]) -> tuple[bool, int]:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_SCRIPT], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    kept, least = done.stdout.split()
    return kept == "True", int(least)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_memory_is_kept_for_the_next_call_unless_asked_not_to() -> None:
    kept, least = _faults({})
    plain, _ = _faults({"MELINVERT_KEEP_MEMORY": "0"})
    assert kept and not plain
    # with memory kept, a later call of a 3 s inversion touches (almost) no fresh page; malloc's
    # defaults are not compared here: its adaptive threshold gives 0 to 3,600 faults per call
    # from run to run (a benchmark figure, benchmarks/RESULTS.md, not a deterministic test)
    assert least < 200, least

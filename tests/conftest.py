"""Shared fixtures: synthesised audio (never files from outside the repository) and the CLI runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import SHARED_SPEECH


def make_tone(sample_rate: int, seconds: float = 1.0, *, amplitude: float = 0.5) -> np.ndarray:
    """A harmonic tone (220 Hz, 7 partials) between 30% and 70% of the clip, digital silence around.

    Returns float32 ``(samples,)`` in [-amplitude, amplitude].
    """
    n = round(sample_rate * seconds)
    t = np.arange(n) / sample_rate
    y = sum(np.sin(2 * np.pi * 220.0 * k * t + 0.3 * k) / k for k in range(1, 8))
    y = y / np.abs(y).max() * amplitude
    y[(t < 0.3 * seconds) | (t >= 0.7 * seconds)] = 0.0
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module (``pytest.mark.usefixtures("one_thread")``): small FFTs
    and tiny models only pay for the thread pool on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def torch_threads_whatever_the_load(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """melinvert keeps torch's thread count on a busy machine too (``dsp.threads_for_load``):
    recorded outputs depend on the count; tests/test_speed.py tests the load-aware choice."""
    if request.module.__name__ != "test_speed":
        monkeypatch.setenv("MELINVERT_LOAD_AWARE_THREADS", "0")


@pytest.fixture
def tone() -> Callable[..., np.ndarray]:
    """``tone(sample_rate, seconds=1.0)``: see :func:`make_tone`."""
    return make_tone


@pytest.fixture
def wav_file(tmp_path: Path) -> Path:
    """A 1 s, 22050 Hz, 16-bit mono WAV of :func:`make_tone`."""
    path = tmp_path / "tone.wav"
    sf.write(path, make_tone(22050), 22050, subtype="PCM_16")
    return path


@pytest.fixture
def speech_file() -> Path:
    """LJ001-0002.wav from ``../shared`` (skips when the shared data are absent)."""
    path = SHARED_SPEECH / "LJ001-0002.wav"
    if not path.is_file():
        pytest.skip(f"optional real speech not available: {path} is absent (../shared not checked out)")
    return path


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(*argv) -> (status, stdout, stderr)``: the CLI in-process."""
    from melinvert.cli import main

    def run(*argv: object) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run

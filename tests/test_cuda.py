"""The whole engine on a CUDA device: every pipeline gives what it gives on the CPU.

Skipped where no CUDA device is present (CI); run on a GPU machine with ``pytest tests/test_cuda.py``.
In float64 the two devices compute the same arithmetic in a different order, so after a few
iterations the outputs agree to rounding; PGHI's peak picking runs on the CPU in both cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import melinvert as mi
from melinvert import metrics
from melinvert.cli import main as cli_main
from melinvert.demo import speech_like
from melinvert.neural.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CFG = mi.get_preset("hifigan-22k-80")


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return speech_like(CFG.sample_rate, seconds=1.5, seed=3)


@pytest.fixture(scope="module")
def mel64(audio: np.ndarray) -> torch.Tensor:
    return mi.mel_spectrogram(torch.from_numpy(audio.astype(np.float64)), CFG)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.cpu() - b.cpu()).abs().max() / b.abs().max())


@pytest.mark.parametrize(
    ("method", "n_iter", "tol"),
    [
        ("default", 4, 1e-8),
        ("fast", 3, 1e-8),
        ("nnls+random+agla", 4, 1e-8),
        ("wave_lbfgs", 3, 1e-6),  # line-search decisions on the same values
        ("joint", 3, 1e-8),
        # Adam's normalised steps amplify the order of the filterbank sums in NNLS (a CSR product
        # on the CPU, a dense one on the GPU: 1e-16 apart) to ~1e-4 in three steps
        ("stft_gd", 3, 1e-3),
    ],
)
def test_pipelines_on_cuda_match_the_cpu(mel64: torch.Tensor, method: str, n_iter: int, tol: float) -> None:
    cpu = mi.invert(mel64, CFG, method=method, n_iter=n_iter, seed=0, device="cpu")
    gpu = mi.invert(mel64, CFG, method=method, n_iter=n_iter, seed=0, device="cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64 and gpu.shape == cpu.shape
    assert _rel(gpu, cpu) < tol


def test_refiner_on_cuda_matches_the_cpu(mel64: torch.Tensor) -> None:
    """The refiner's network runs in float32, so its magnitudes agree to float32 rounding, and
    what the phase stage makes of them fits the mel as well on either device."""
    from melinvert.magnitude import decode_mel
    from melinvert.neural import refiner_magnitude

    lin = decode_mel(mel64, CFG)
    refine = refiner_magnitude
    cpu, gpu = refine(lin, CFG), refine(lin.cuda(), CFG)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float64
    assert _rel(gpu, cpu) < 1e-4
    ref = mi.invert(mel64, CFG, method="learned", n_iter=6, seed=0, device="cpu").numpy()
    out = mi.invert(mel64, CFG, method="learned", n_iter=6, seed=0, device="cuda").cpu().numpy()
    d_cpu = float(np.abs(mi.mel_spectrogram(ref, CFG) - mel64.numpy()).mean())
    d_gpu = float(np.abs(mi.mel_spectrogram(out, CFG) - mel64.numpy()).mean())
    assert d_gpu <= 1.05 * d_cpu + 1e-3


def test_numpy_in_numpy_out_from_cuda(audio: np.ndarray) -> None:
    mel = mi.mel_spectrogram(audio, CFG)
    out = mi.invert(mel, CFG, method="fast", device="cuda")
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert metrics.log_mel_l1(audio[: len(out)], out, CFG) < 0.3


def test_cuda_batch_equals_stacked_singles(audio: np.ndarray) -> None:
    other = speech_like(CFG.sample_rate, seconds=1.5, seed=4)
    x = torch.from_numpy(np.stack([audio, other]).astype(np.float64))
    mels = mi.mel_spectrogram(x, CFG, device="cuda")
    both = mi.invert(mels, CFG, method="default", n_iter=5, seed=1)
    one = torch.stack([mi.invert(m, CFG, method="default", n_iter=5, seed=1) for m in mels])
    assert both.device.type == "cuda"
    assert _rel(both, one) < 1e-8


def test_blocks_on_cuda_join_like_one_piece(audio: np.ndarray) -> None:
    mel = mi.mel_spectrogram(torch.from_numpy(audio), CFG, device="cuda")
    chunks = list(mi.invert_blocks(mel, CFG, method="fast", block_frames=60))
    blocked = torch.cat(chunks, dim=-1)[0]
    whole = mi.invert(mel, CFG, method="fast")
    assert len(chunks) >= 3 and blocked.device.type == "cuda" and blocked.shape == whole.shape
    n = blocked.shape[-1]
    l1_blocked = metrics.log_mel_l1(audio[:n], blocked.cpu().numpy(), CFG)
    l1_whole = metrics.log_mel_l1(audio[:n], whole.cpu().numpy(), CFG)
    assert l1_blocked <= 1.25 * l1_whole


def test_cli_invert_with_device_cuda(audio: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "m.npy", mi.mel_spectrogram(audio, CFG))
    rc = cli_main(
        [
            "invert",
            str(tmp_path / "m.npy"),
            "-o",
            str(tmp_path / "o.wav"),
            "--preset",
            CFG.name,
            "--device",
            "cuda",
        ]
    )
    assert rc == 0
    y, sr = sf.read(tmp_path / "o.wav")
    assert sr == CFG.sample_rate and abs(len(y) - len(audio)) < CFG.hop_length


@pytest.mark.parametrize("kind", ["refiner", "degli", "cnn_vocoder"])
def test_training_on_cuda_then_inverting_with_the_model(kind: str, audio: np.ndarray, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        sf.write(
            corpus / f"c{i}.wav", speech_like(CFG.sample_rate, seconds=1.0, seed=10 + i), CFG.sample_rate
        )
    small = {
        "refiner": {"channels": 16, "dilations": [1, 2], "fine_channels": 4, "fine_dilations": [1]},
        "degli": {"channels": 4, "layers": 1},
        "cnn_vocoder": {"channels": 16, "min_channels": 4, "pre_blocks": 1, "post_blocks": 1},
    }[kind]
    result = train(
        kind,
        [corpus],
        CFG,
        tmp_path / "run",
        hparams=small,
        steps=6,
        batch_size=2,
        crop_frames=16,
        val_every=3,
        val_n_iter=2,
        device="cuda",
        progress=False,
        seed=0,
    )
    assert result.status == "done" and result.step == 6 and result.best is not None
    method = {"refiner": "refiner+pghi+fgla", "degli": "nnls+pghi+degli", "cnn_vocoder": "cnn_vocoder"}[kind]
    mel = mi.mel_spectrogram(audio, CFG)
    out = mi.invert(mel, CFG, method=method, n_iter=2, model=tmp_path / "run", device="cuda")
    assert np.isfinite(out).all() and abs(len(out) - len(audio)) < CFG.hop_length

"""Stage-3 optimisers (melinvert.optimize): each lowers its loss, the interrupt returns the best
estimate, batches equal stacked singles, held samples stay put, float32 agrees with float64,
the mel loss's gradient is right, and every error path. All on synthesised signals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import plain_methods

import melinvert
from melinvert import MelConfig, MelinvertError, metrics, optimize, pipeline
from melinvert.dsp import FrameOps
from melinvert.magnitude import decode_mel
from melinvert.optimize import joint, lbfgs, mel_loss, stft_gd, wave_lbfgs

OPTIMIZERS = plain_methods()[3]

pytestmark = pytest.mark.usefixtures("one_thread")

#: small and fast: 8 kHz, 128-point frames, 20 mels, magnitude mel (joint needs power 1)
TINY = MelConfig(sample_rate=8000, n_fft=128, hop_length=32, n_mels=20, power=1.0)
START_BASED = ("wave_lbfgs", "stft_gd", "joint")


def signal(seconds: float = 0.25, *, seed: int = 0, f0: float = 180.0, sr: int = 8000) -> np.ndarray:
    """Harmonics of ``f0`` with random phases, an amplitude swell and a little noise; float64."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sr * seconds)) / sr
    y = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    y = y * (0.3 + np.sin(np.pi * t / seconds)) + 0.02 * rng.standard_normal(t.size)
    return 0.5 * y / np.abs(y).max()


def case(
    config: MelConfig = TINY, seeds=(0,), dtype=torch.float64, start_iter: int = 4
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target linear mel (B, n_mels, T), a Griffin-Lim start (B, samples)), in ``dtype``."""
    y = np.stack([signal(seed=s, f0=150.0 + 40 * s, sr=config.sample_rate) for s in seeds])
    mel = melinvert.mel_spectrogram(torch.from_numpy(y).to(dtype), config)
    start = melinvert.invert(mel, config, method="pinv+random+gla", n_iter=start_iter, seed=0)
    lin = decode_mel(mel, config)
    if config.drop_last_frame:
        lin = lin  # the mel already lacks the dropped frame
    return lin, start


def run(name: str, lin: torch.Tensor, start: torch.Tensor, n_iter: int, **kw):
    """Run optimiser ``name``, recording every (iteration, estimate, loss) the callback sees."""
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def cb(i, x, loss):
        seen.append((i, x.clone(), loss.clone()))
        return False

    out = OPTIMIZERS[name](
        lin, TINY if "config" not in kw else kw.pop("config"), start, n_iter=n_iter, callback=cb, **kw
    )
    return out, seen


# ---------------------------------------------------------------------- the losses fall


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_optimiser_lowers_its_loss(name: str) -> None:
    lin, start = case()
    out, seen = run(name, lin, start, 15)
    losses = torch.stack([loss for _, _, loss in seen])  # (iterations + 1, B)
    assert seen[0][0] == 0 and len(seen) == 16
    assert float(losses[1:].min()) < 0.9 * float(losses[0])
    assert out.shape == start.shape and torch.isfinite(out).all()


def test_stft_gd_beats_griffin_lim_on_its_own_loss() -> None:
    lin, start = case(start_iter=32)  # a converged-ish Griffin-Lim result
    out, seen = run("stft_gd", lin, start, 60)
    start_loss = float(seen[0][2])
    best = min(float(loss) for _, _, loss in seen)
    assert best < 0.8 * start_loss
    # the estimate returned is the best one seen, and its own waveform mel fits better too
    assert mel_loss(out, lin, TINY) < mel_loss(start, lin, TINY)


def test_wave_lbfgs_lowers_the_mel_loss_from_noise_and_is_seeded() -> None:
    lin, start = case()
    a = wave_lbfgs(lin, TINY, start, n_iter=30, init="noise", seed=3)
    b = wave_lbfgs(lin, TINY, start, n_iter=30, init="noise", seed=3)
    noise = torch.randn(start.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1e-6
    assert torch.equal(a, b)
    assert mel_loss(a, lin, TINY) < 0.5 * mel_loss(noise, lin, TINY)


def test_wave_lbfgs_with_the_papers_loss_lowers_it() -> None:
    lin, start = case()
    _, seen = run("wave_lbfgs", lin, start, 10, loss="log1p")
    assert float(seen[-1][2]) < 0.9 * float(seen[0][2])


def test_lbfgs_solves_a_batched_quadratic_per_item() -> None:
    """An ill-conditioned quadratic per item, at scales 1 and 1000: each converges on its own."""
    d = torch.logspace(0, 2, 20, dtype=torch.float64)
    scale = torch.tensor([[1.0], [1000.0]], dtype=torch.float64)

    def fun(x, s=scale):
        return 0.5 * (s * d * (x - 1.0) ** 2).sum(1), s * d * (x - 1.0)

    x = lbfgs(fun, torch.zeros(2, 20, dtype=torch.float64), n_iter=60)
    assert torch.allclose(x, torch.ones_like(x), atol=1e-6)
    single = lbfgs(lambda v: fun(v, scale[1:]), torch.zeros(1, 20, dtype=torch.float64), n_iter=60)
    assert torch.allclose(single, x[1:], atol=1e-12)


def test_n_iter_zero_returns_the_start() -> None:
    lin, start = case()
    for name in START_BASED:
        out, seen = run(name, lin, start, 0)
        assert torch.equal(out, start), name
        assert len(seen) == 1 and seen[0][0] == 0


# ---------------------------------------------------------------------- gradients


def test_mel_loss_gradcheck() -> None:
    cfg = MelConfig(sample_rate=800, n_fft=16, hop_length=4, n_mels=8, power=1.0, mag_eps=1e-6)
    rng = np.random.default_rng(0)
    target = torch.from_numpy(rng.standard_normal((2, 64)))
    mel = decode_mel(melinvert.mel_spectrogram(target, cfg), cfg)
    x = torch.from_numpy(rng.standard_normal((2, 64))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: mel_loss(a, mel, cfg), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("power", [1.0, 2.0])
def test_mel_loss_gradcheck_without_epsilon_and_with_power(power: float) -> None:
    cfg = MelConfig(sample_rate=800, n_fft=16, hop_length=4, n_mels=8, power=power, padding="none")
    rng = np.random.default_rng(1)
    mel = decode_mel(melinvert.mel_spectrogram(torch.from_numpy(rng.standard_normal((1, 64))), cfg), cfg)
    x = torch.from_numpy(rng.standard_normal((1, 64))).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: mel_loss(a, mel, cfg, floor=1e-2), (x,), eps=1e-6, atol=1e-5)


def test_mel_loss_is_zero_at_the_truth_and_matches_its_formula() -> None:
    y = torch.from_numpy(signal())[None]
    lin = decode_mel(melinvert.mel_spectrogram(y, TINY), TINY)
    assert float(mel_loss(y, lin, TINY)) < 1e-12
    other = torch.from_numpy(signal(seed=5))[None]
    m = dsp_mel(other)
    d = optimize.DEFAULT_FLOOR * lin.amax()
    expected = ((torch.log(m + d) - torch.log(lin + d)) ** 2).mean()
    assert torch.allclose(mel_loss(other, lin, TINY), expected[None], rtol=1e-6)


def dsp_mel(x: torch.Tensor) -> torch.Tensor:
    from melinvert.dsp import linear_mel

    return linear_mel(x, TINY)


# ---------------------------------------------------------------------- interrupt: best, not last


def test_callback_stop_returns_the_best_estimate_not_the_last() -> None:
    lin, start = case(start_iter=32)
    # a far too large rate makes Adam's first steps worse than the start
    out, seen = run("stft_gd", lin, start, 20, lr=2.0, warmup=1)
    assert float(seen[-1][2]) > float(seen[0][2])
    assert torch.equal(out, seen[0][1])

    stop_at = 3
    seen2: list = []

    def cb(i, x, loss):
        seen2.append((x.clone(), loss.clone()))
        return i == stop_at

    out2 = stft_gd(lin, TINY, start, n_iter=50, callback=cb, lr=0.05, warmup=1)
    assert len(seen2) == stop_at + 1
    best = min(range(len(seen2)), key=lambda j: float(seen2[j][1]))
    assert torch.equal(out2, seen2[best][0])


@pytest.mark.parametrize("name", START_BASED)
def test_best_is_kept_per_item(name: str) -> None:
    lin, start = case(seeds=(0, 1))
    out, seen = run(name, lin, start, 6)
    losses = torch.stack([loss for _, _, loss in seen])
    for b in range(2):
        j = int(torch.argmin(losses[:, b]))
        assert torch.equal(out[b], seen[j][1][b])


def test_pipeline_keeps_the_best_by_loss_on_interrupt() -> None:
    """Ctrl-C in the optimiser stage: the stream's partial() is the lowest-loss estimate seen."""
    y = signal(0.5)
    mel = melinvert.mel_spectrogram(y, TINY)
    seen: list = []

    def cb(i, x, loss):
        seen.append((x.clone(), float(loss.mean())))
        if i == 8:
            raise KeyboardInterrupt

    stream = melinvert.invert_blocks(
        mel, TINY, method="pinv+random+gla+stft_gd", n_iter=50, seed=0, callback=cb
    )
    with pytest.raises(KeyboardInterrupt):
        list(stream)
    best = min(range(len(seen)), key=lambda j: seen[j][1])
    assert torch.equal(stream.partial(), seen[best][0])


# ---------------------------------------------------------------------- batches, dtypes, held samples


@pytest.mark.parametrize("name", START_BASED)
def test_batch_equals_stacked_singles(name: str) -> None:
    lin, start = case(seeds=(0, 1, 2))
    batch, _ = run(name, lin, start, 8)
    singles = torch.cat([run(name, lin[b : b + 1], start[b : b + 1], 8)[0] for b in range(3)])
    assert torch.allclose(batch, singles, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", START_BASED)
def test_float32_and_float64_agree(name: str) -> None:
    lin, start = case()
    out64, seen64 = run(name, lin, start, 5)
    out32, seen32 = run(name, lin.float(), start.float(), 5)
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    loss64 = torch.stack([loss for _, _, loss in seen64])
    loss32 = torch.stack([loss for _, _, loss in seen32]).double()
    assert torch.allclose(loss32, loss64, rtol=2e-2, atol=0)
    # Adam's steps are nearly sign(gradient) sized, so rounding moves coordinates whose gradient
    # is ~0 by a full step: stft_gd agrees to 1% of the peak, the others to 0.2%
    tol = 1e-2 if name == "stft_gd" else 2e-3
    err = float((out32.double() - out64).abs().max())
    assert err < tol * float(out64.abs().max())


@pytest.mark.parametrize("name", START_BASED)
def test_known_prefix_stays_fixed(name: str) -> None:
    """Held as FrameOps.synthesis holds them: fixed, then a cross-fade over the last ramp."""
    lin, start = case(seeds=(0, 1))
    k = 300
    ramp = FrameOps.KNOWN_RAMP_HOPS * TINY.hop_length
    known = (0.9 * start[:, :k]).clone()
    out, seen = run(name, lin, start, 6, known=known)
    assert torch.equal(out[:, : k - ramp], known[:, : k - ramp])
    assert all(torch.equal(x[:, : k - ramp], known[:, : k - ramp]) for _, x, _ in seen)
    # the fade starts at the held samples and hands over smoothly: no jump where it begins
    step = (out[:, k - ramp] - known[:, k - ramp - 1]).abs().max()
    assert float(step) <= 2 * float((known[:, 1:] - known[:, :-1]).abs().max())
    assert not torch.equal(out[:, k:], start[:, k:])  # the rest did move


def test_held_samples_get_no_gradient() -> None:
    lin, start = case()
    known = start[:, :300].clone()
    out = wave_lbfgs(lin, TINY, start + 0.01, n_iter=5, known=known)
    ramp = FrameOps.KNOWN_RAMP_HOPS * TINY.hop_length
    assert torch.equal(out[:, : 300 - ramp], known[:, : 300 - ramp])


@pytest.mark.parametrize("method", ["wave_lbfgs", "stft_gd", "joint"])
def test_long_input_in_blocks_joins_like_one_piece(method: str) -> None:
    """The pipeline hands each block the previous one's samples (``known``): the blocked output
    fits the mel about as well as the output made in one piece."""
    y = signal(1.5)
    mel = melinvert.mel_spectrogram(y, TINY)
    chunks = list(melinvert.invert_blocks(mel, TINY, method=method, n_iter=8, block_frames=64))
    blocked = torch.cat(chunks, dim=-1)[0].numpy()
    whole = melinvert.invert(mel, TINY, method=method, n_iter=8)
    assert len(chunks) >= 4 and blocked.shape == whole.shape and np.isfinite(blocked).all()
    n = len(whole)
    assert metrics.log_mel_l1(y[:n], blocked, TINY) <= 1.25 * metrics.log_mel_l1(y[:n], whole, TINY)


@pytest.mark.parametrize("name", ["wave_lbfgs", "stft_gd"])
@pytest.mark.parametrize("preset", ["whisper-16k-80", "librosa-default", "hifigan-22k-80"])
def test_optimisers_follow_the_config(name: str, preset: str) -> None:
    """Power-2 mels, Whisper's dropped frame, HiFi-GAN's padding: the loss still falls."""
    c = melinvert.get_preset(preset)
    y = torch.from_numpy(signal(0.3, sr=c.sample_rate))[None]
    mel = melinvert.mel_spectrogram(y, c)
    lin = decode_mel(mel, c)
    start = melinvert.invert(mel, c, method="pinv+random+gla", n_iter=2, seed=0)
    out, seen = run(name, lin, start, 4, config=c)
    assert out.shape == start.shape
    assert float(seen[-1][2]) < float(seen[0][2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", START_BASED)
def test_on_cuda_matches_cpu(name: str) -> None:
    lin, start = case()
    cpu, _ = run(name, lin, start, 3)
    gpu, _ = run(name, lin.cuda(), start.cuda(), 3)
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)


# ---------------------------------------------------------------------- the pipeline names


@pytest.mark.parametrize("method", ["stft_gd", "wave_lbfgs", "joint", "quality", "nnls+pghi+fgla+wave_lbfgs"])
def test_pipeline_methods_invert(method: str) -> None:
    y = signal(0.3)
    mel = melinvert.mel_spectrogram(y, TINY)
    out = melinvert.invert(mel, TINY, method=method, n_iter=3)
    assert out.shape == y.shape and np.isfinite(out).all()
    plan = pipeline.parse_method(method, 3)
    assert plan.steps[-1].stage.kind == "refine" and plan.steps[-1].stage.name in OPTIMIZERS
    assert [s.params["iters"] for s in plan.steps if s.stage.kind == "phase"] == [3]  # n_iter: stage 2


def test_pipeline_optimiser_plans_start_from_default() -> None:
    default = pipeline.parse_method("default")
    for name in ("stft_gd", "wave_lbfgs", "joint"):
        plan = pipeline.parse_method(name)
        assert plan.steps[-1].stage.name == name and plan.steps[-1].params["iters"] > 0
        assert plan.steps[:-1] == default.steps
    quality = pipeline.parse_method("quality")
    assert quality.steps[-1].stage.name in OPTIMIZERS and quality.steps[-1].params["iters"] > 0


def test_optimisers_are_listed() -> None:
    listed = melinvert.list_methods()
    for name in OPTIMIZERS:
        assert f"{name} (stage 3)" in listed
    assert "quality" in listed


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_iter": -1}, "n_iter=-1 must be an integer >= 0"),
        ({"n_iter": 2.5}, "n_iter=2.5 must be an integer"),
        ({"n_iter": True}, "n_iter=True must be an integer"),
    ],
)
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_bad_n_iter(name: str, kwargs: dict, match: str) -> None:
    lin, start = case()
    with pytest.raises(MelinvertError, match=match):
        OPTIMIZERS[name](lin, TINY, start, **kwargs)


def test_shape_errors() -> None:
    lin, start = case()
    with pytest.raises(MelinvertError, match="start must be a floating-point tensor shaped"):
        wave_lbfgs(lin, TINY, start[0], n_iter=1)
    with pytest.raises(MelinvertError, match=r"which give .* frames, but the mel has"):
        wave_lbfgs(lin, TINY, start[:, :-100], n_iter=1)
    with pytest.raises(MelinvertError, match="mel must be shaped"):
        stft_gd(lin[:, :-1], TINY, start, n_iter=1)
    with pytest.raises(MelinvertError, match="mel batch 1 and start batch 2 differ"):
        joint(lin, TINY, torch.cat([start, start]), n_iter=1)
    with pytest.raises(MelinvertError, match="known must be shaped"):
        wave_lbfgs(lin, TINY, start, n_iter=1, known=start)
    with pytest.raises(MelinvertError, match="start contains NaN"):
        wave_lbfgs(lin, TINY, start * float("nan"), n_iter=1)
    with pytest.raises(MelinvertError, match="mel must be finite and non-negative"):
        wave_lbfgs(-lin, TINY, start, n_iter=1)


def test_option_errors() -> None:
    lin, start = case()
    with pytest.raises(MelinvertError, match="init='zeros' must be 'start' or 'noise'"):
        wave_lbfgs(lin, TINY, start, n_iter=1, init="zeros")
    with pytest.raises(MelinvertError, match="loss='l2' must be 'log' or 'log1p'"):
        wave_lbfgs(lin, TINY, start, n_iter=1, loss="l2")
    with pytest.raises(MelinvertError, match=r"floor=0 must be a number in \(0, 1\)"):
        wave_lbfgs(lin, TINY, start, n_iter=1, floor=0)
    with pytest.raises(MelinvertError, match="lr=-1 must be a number > 0"):
        stft_gd(lin, TINY, start, n_iter=1, lr=-1)
    with pytest.raises(MelinvertError, match="warmup=0 must be an integer >= 1"):
        stft_gd(lin, TINY, start, n_iter=1, warmup=0)
    with pytest.raises(MelinvertError, match=r"weights=.* must be two numbers"):
        stft_gd(lin, TINY, start, n_iter=1, weights=(0, 0))
    with pytest.raises(MelinvertError, match="mel_domain='db' must be 'log' or 'linear'"):
        stft_gd(lin, TINY, start, n_iter=1, mel_domain="db")
    with pytest.raises(MelinvertError, match="rho=0 must be a number > 0"):
        joint(lin, TINY, start, n_iter=1, rho=0)
    power2 = TINY.replace(power=2.0)
    lin2, start2 = case(power2)
    with pytest.raises(MelinvertError, match="joint needs a magnitude mel"):
        joint(lin2, power2, start2, n_iter=1)


def test_module_names_its_default_floor() -> None:
    assert 0 < optimize.DEFAULT_FLOOR < 1

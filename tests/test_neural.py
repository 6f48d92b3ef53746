"""Learned stages: models, training, checkpoints, the shipped refiner and the pipeline hooks."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import SHARED_SPEECH

import melinvert as mi
from melinvert.errors import MelinvertError
from melinvert.neural import Checkpoint, build_model, load_checkpoint, save_checkpoint, shipped_path
from melinvert.neural.models import hop_factors
from melinvert.neural.tasks import TASKS, model_mel, step_generator
from melinvert.neural.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


CFG = mi.get_preset("hifigan-22k-80")
TINY = {
    "refiner": {"channels": 16, "dilations": [1, 2], "fine_channels": 4, "fine_dilations": [1]},
    "degli": {"channels": 4, "layers": 1},
    "cnn_vocoder": {"channels": 16, "min_channels": 4, "pre_blocks": 1, "post_blocks": 1},
}
FAST = {"batch_size": 2, "crop_frames": 16, "val_every": 1000, "val_n_iter": 2}


def _voice(sr: int, seconds: float, f0: float, seed: int) -> np.ndarray:
    """A harmonic voice-like signal with vibrato and a little noise (float32)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    phase = 2 * np.pi * f0 * (t + 0.02 * np.sin(2 * np.pi * 3 * t))
    y = sum(np.sin(k * phase + 0.1 * k) * np.exp(-k / 8) for k in range(1, 25))
    y = 0.3 * y / np.abs(y).max() + 0.002 * rng.standard_normal(t.shape)
    return y.astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthesised clips (two at 22.05 kHz, two at 16 kHz) and one validation clip."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for i, (sr, f0) in enumerate([(22050, 110.0), (16000, 150.0), (22050, 210.0), (16000, 95.0)]):
        sf.write(root / "train" / f"c{i}.wav", _voice(sr, 1.0, f0, i), sr)
    sf.write(root / "val" / "v.wav", _voice(22050, 0.8, 130.0, 9), 22050)
    return root


def _train(kind: str, corpus: Path, run: Path, steps: int, **kw):
    args = {**FAST, **kw}
    return train(
        kind,
        [corpus / "train"],
        CFG,
        run,
        val=[corpus / "val"],
        hparams=TINY[kind],
        steps=steps,
        progress=False,
        **args,
    )


# ---------------------------------------------------------------------- models


@pytest.mark.parametrize("preset", ["hifigan-22k-80", "vocos-24k-100", "whisper-16k-80"])
def test_model_sizes_come_from_the_config(preset: str) -> None:
    cfg = mi.get_preset(preset)
    ref = build_model("refiner", cfg, TINY["refiner"])
    assert ref.enc.in_channels == cfg.n_mels and ref.dec.out_channels == cfg.n_freqs
    voc = build_model("cnn_vocoder", cfg, TINY["cnn_vocoder"])
    assert voc.enc.in_channels == cfg.n_mels and int(np.prod(voc.factors)) == cfg.hop_length
    mel = torch.rand(2, cfg.n_mels, 7)
    assert ref(mel).shape == (2, cfg.n_freqs, 7)
    prior = torch.randn(2, 6 * cfg.hop_length + 5)  # any length: samples past the last hop too
    assert voc(mel, prior).shape == prior.shape


def test_hop_factors() -> None:
    assert hop_factors(256) == [4, 4, 4, 4]
    assert hop_factors(300) == [5, 5, 4, 3]
    assert hop_factors(160) == [5, 4, 4, 2]
    assert hop_factors(7) == [7]


def test_untrained_refiner_is_the_pseudo_inverse() -> None:
    model = build_model("refiner", CFG, TINY["refiner"])
    mel = torch.rand(1, CFG.n_mels, 9) + 0.1
    prior = model.prior(mel)
    out = torch.exp(model(mel))
    keep = prior > model.mag_floor
    torch.testing.assert_close(out[keep], prior[keep])


def test_unknown_hyperparameter_is_named() -> None:
    with pytest.raises(MelinvertError, match=r"unknown refiner hyperparameter.*width"):
        build_model("refiner", CFG, {"width": 3})


# ---------------------------------------------------------------------- training


def _fixed_batch(corpus: Path, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    from melinvert.neural.data import Crops, load_clips

    clips = load_clips(sorted((corpus / "train").glob("*.wav")), CFG)
    rng, _ = step_generator(123, 0)
    return Crops(clips, CFG, 24).batch(rng, n)


@pytest.mark.parametrize("kind", ["refiner", "degli", "cnn_vocoder"])
def test_a_few_steps_lower_the_loss(kind: str, corpus: Path, tmp_path: Path) -> None:
    lr = {"refiner": 3e-3, "degli": 1e-2, "cnn_vocoder": 3e-3}[kind]
    result = _train(kind, corpus, tmp_path / "run", steps=25, lr=lr)
    assert result.status == "done" and result.step == 25
    trained = load_checkpoint(tmp_path / "run" / "last.safetensors", config=CFG, kind=kind).model
    torch.manual_seed(0)
    fresh = build_model(kind, CFG, TINY[kind])
    fresh.inp.load_state_dict(trained.inp.state_dict()) if hasattr(fresh, "inp") else None
    audio, nyq = _fixed_batch(corpus)
    task = TASKS[kind]
    with torch.no_grad():
        before, _ = task.loss(fresh, audio, nyq, CFG, torch.Generator().manual_seed(1))
        after, _ = task.loss(trained, audio, nyq, CFG, torch.Generator().manual_seed(1))
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["step"] == 25 and np.isfinite(last["val_loss"]) and np.isfinite(last["log_mel_l1"])
    if kind == "degli":  # each step draws its own rollout length: see the fixed-batch test below
        assert np.isfinite(float(after))
        return
    if kind == "cnn_vocoder":  # it corrects `default`, which leaves little on synthetic harmonics
        assert np.isfinite(float(after))  # (progress on real speech: the fixed-batch test below)
        return
    assert float(after) < 0.98 * float(before)


def _fixed_batch_losses(
    kind: str, speech_file: Path, *, frames: int, items: int, lr: float, steps: int
) -> tuple[float, float]:
    """A fresh tiny ``kind`` trained by Adam on one batch of real speech (``items`` crops of
    ``frames`` frames): its task loss on that batch before and after ``steps`` steps."""
    from melinvert.neural.data import Crops, load_clips

    crops = Crops(load_clips([speech_file], CFG), CFG, frames)
    audio, nyq = crops.batch(step_generator(123, 0)[0], items)
    torch.manual_seed(0)
    model = build_model(kind, CFG, TINY[kind])
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def loss() -> torch.Tensor:
        return TASKS[kind].loss(model, audio, nyq, CFG, torch.Generator().manual_seed(1))[0]

    with torch.no_grad():
        before = float(loss())
    for _ in range(steps):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    return before, after


def test_degli_steps_lower_its_loss_on_a_fixed_batch(speech_file: Path, monkeypatch) -> None:
    """Each DeGLI step trains on a state after a random number of its own iterations, so fresh
    batches show progress only after many steps; from the first state of one batch of real speech
    (no rollout) its loss, the distance to where 4 plain iterations land, must fall through its
    gradients. (Synthetic harmonics converge in a few iterations and leave nothing to learn.)"""
    import melinvert.neural.tasks as tasks

    monkeypatch.setattr(tasks, "DEGLI_ROLLOUT", 1)
    before, after = _fixed_batch_losses("degli", speech_file, frames=64, items=4, lr=1e-2, steps=40)
    assert after < 0.97 * before


def test_cnn_vocoder_steps_lower_its_loss_on_a_fixed_batch(speech_file: Path) -> None:
    """The CNN vocoder corrects `default`'s waveform; on synthetic harmonics `default` leaves
    almost nothing to correct (25 steps moved the loss by 1e-4 either way), so its gradients are
    checked on one batch of real speech: its loss (log-mel L1 + spectral convergence) must fall.
    From a zero output layer a tiny model moves it slowly (-0.12% in 30 steps here; float32
    rounding is ~1e-7 of it), so the bar is a fall, not a size."""
    before, after = _fixed_batch_losses("cnn_vocoder", speech_file, frames=32, items=2, lr=3e-4, steps=30)
    assert after < 0.9995 * before


def test_resume_continues_exactly(corpus: Path, tmp_path: Path) -> None:
    straight = _train("refiner", corpus, tmp_path / "a", steps=6)
    assert straight.step == 6

    def interrupt(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    first = train(
        "refiner",
        [corpus / "train"],
        CFG,
        tmp_path / "b",
        val=[corpus / "val"],
        hparams=TINY["refiner"],
        steps=6,
        progress=False,
        on_step=interrupt,
        **FAST,
    )
    assert first.status == "interrupted" and first.step == 3
    assert json.loads((tmp_path / "b" / "last.json").read_text())["train"]["step"] == 3
    seen: list[int] = []
    second = train(
        "refiner",
        [corpus / "train"],
        CFG,
        tmp_path / "b",
        val=[corpus / "val"],
        resume=True,
        progress=False,
        on_step=lambda s, _: seen.append(s),
    )
    assert second.status == "done" and seen[0] == 4 and second.step == 6
    a = load_checkpoint(tmp_path / "a" / "last.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "b" / "last.safetensors").model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_refuses_other_data_and_fresh_run_refuses_existing(corpus: Path, tmp_path: Path) -> None:
    _train("refiner", corpus, tmp_path / "r", steps=2)
    with pytest.raises(MelinvertError, match="already holds a run"):
        _train("refiner", corpus, tmp_path / "r", steps=2)
    with pytest.raises(MelinvertError, match="train audio differs"):
        train(
            "refiner",
            [corpus / "train" / "c0.wav", corpus / "train" / "c1.wav"],
            CFG,
            tmp_path / "r",
            val=[corpus / "val"],
            resume=True,
            progress=False,
        )
    with pytest.raises(MelinvertError, match="nothing to resume"):
        _train("refiner", corpus, tmp_path / "none", steps=2, resume=True)


def test_cli_train_interrupt_exits_130_and_resumes(
    corpus: Path, tmp_path: Path, run_cli, monkeypatch
) -> None:
    import melinvert.neural.train as tm

    real = tm.lr_at

    def lr_and_interrupt(step: int, steps: int, lr: float) -> float:
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(step, steps, lr)

    monkeypatch.setattr(tm, "lr_at", lr_and_interrupt)
    base = [
        "train",
        "refiner",
        corpus / "train",
        "--val",
        corpus / "val",
        "--preset",
        "hifigan-22k-80",
        "-o",
        tmp_path / "run",
        "--quiet",
    ]
    status, _, err = run_cli(
        *base,
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--crop-frames",
        "16",
        "--hparam",
        "channels=8",
        "--hparam",
        "dilations=[1]",
        "--hparam",
        "fine_hz=0",
        "--val-n-iter",
        "2",
    )
    assert status == 130 and "interrupted at step 2" in err
    monkeypatch.setattr(tm, "lr_at", real)
    status, out, err = run_cli(*base, "--resume")
    assert status == 0, err
    assert "4 steps" in out
    status, _, err = run_cli(*base, "--resume", "--batch-size", "3")
    assert status == 2 and "batch_size=3 differs" in err


# ---------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model("refiner", CFG, TINY["refiner"])
    for p in model.parameters():
        p.data.normal_()
    model.inp.mean.normal_()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(1, CFG.n_mels, 5)).sum().backward()
    opt.step()
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        model,
        kind="refiner",
        config=CFG,
        hparams=TINY["refiner"],
        train={"step": 1},
        optimizer=opt.state_dict(),
    )
    ck = load_checkpoint(path, config=CFG, kind="refiner", with_optimizer=True)
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v), k
    opt2 = torch.optim.Adam(ck.model.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizer)
    for (i, a), (j, b) in zip(opt.state_dict()["state"].items(), opt2.state_dict()["state"].items()):
        assert i == j and all(torch.equal(a[n], b[n]) for n in a)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["kind"] == "refiner" and mi.MelConfig.from_dict(record["config"]) == CFG
    mel = torch.rand(1, CFG.n_mels, 6)
    assert torch.equal(model(mel), ck.model(mel))


def test_mismatched_config_is_refused(tmp_path: Path) -> None:
    model = build_model("refiner", CFG, TINY["refiner"])
    path = save_checkpoint(
        tmp_path / "m.safetensors", model, kind="refiner", config=CFG, hparams=TINY["refiner"], train={}
    )
    other = CFG.replace(fmax=11025.0, n_fft=2048)
    with pytest.raises(
        MelinvertError, match=r"another mel config: n_fft \(1024 in the model, 2048 asked\), fmax"
    ):
        load_checkpoint(path, config=other)
    mel = mi.mel_spectrogram(_voice(22050, 0.3, 120.0, 0), other)
    with pytest.raises(MelinvertError, match="another mel config: n_fft"):
        mi.invert(mel, other, method="refiner+fgla", model=path)
    with pytest.raises(MelinvertError, match="holds a 'refiner' model, not a 'degli'"):
        load_checkpoint(path, kind="degli")
    with pytest.raises(MelinvertError, match="has no refiner stage"):
        mi.invert(mi.mel_spectrogram(_voice(22050, 0.3, 120.0, 0), CFG), CFG, method="nnls+fgla", model=path)


def test_pickled_files_are_refused(tmp_path: Path) -> None:
    model = build_model("refiner", CFG, TINY["refiner"])
    for name in ("evil.safetensors", "evil.pt"):
        torch.save(model.state_dict(), tmp_path / name)
        with pytest.raises(MelinvertError, match="pickled"):
            load_checkpoint(tmp_path / name)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(MelinvertError, match="not a readable safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")
    (tmp_path / "short.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(MelinvertError, match="not a melinvert checkpoint"):
        load_checkpoint(tmp_path / "short.safetensors")


def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path: Path) -> None:
    """A safetensors file opens with its header's length (little-endian u64): for one length in
    256 its first byte is 0x80, a pickle's first byte. Such a checkpoint must load."""
    model = build_model("refiner", CFG, TINY["refiner"])
    for pad in range(300):  # the record's length moves the header's length one byte at a time
        path = save_checkpoint(
            tmp_path / "m.safetensors",
            model,
            kind="refiner",
            config=CFG,
            hparams=TINY["refiner"],
            train={"note": "x" * pad},
        )
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("no padding gave a header length ending in 0x80")
    ck = load_checkpoint(path, config=CFG, kind="refiner")
    assert ck.train["note"] == "x" * pad


# ---------------------------------------------------------------------- the pipeline and shipped weights


def test_refiner_stage_batch_equals_stacked_singles(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("refiner", CFG, TINY["refiner"])
    torch.nn.init.normal_(model.dec.weight, std=0.01)
    ck = Checkpoint("refiner", CFG, TINY["refiner"], {}, model)
    y = np.stack([_voice(22050, 0.5, 120.0, 0), _voice(22050, 0.5, 180.0, 1)])
    mel = mi.mel_spectrogram(y, CFG)
    both = mi.invert(mel, CFG, method="refiner+pghi+fgla", n_iter=4, model=ck)
    one = mi.invert(mel[1], CFG, method="refiner+pghi+fgla", n_iter=4, model=ck)
    np.testing.assert_allclose(both[1], one, atol=1e-4)


def test_no_weights_for_other_configs_is_a_clear_error() -> None:
    cfg = mi.get_preset("vocos-24k-100")
    mel = mi.mel_spectrogram(_voice(24000, 0.3, 120.0, 0), cfg)
    with pytest.raises(MelinvertError, match="no refiner weights for this mel config"):
        mi.invert(mel, cfg, method="refiner+fgla")


def test_shipped_models_run_in_the_pipeline_and_have_cards() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "models"
    for kind in ("refiner", "degli", "cnn_vocoder"):
        path = shipped_path(kind, CFG)
        assert path is not None and path.stat().st_size < 10e6, kind
        assert (docs / f"{kind}-hifigan-22k-80.md").is_file(), kind
    y = _voice(22050, 1.0, 140.0, 2)
    mel = mi.mel_spectrogram(y, CFG)
    for method in ("refiner+fgla", "learned", "nnls+pghi+degli", "cnn_vocoder"):
        out = mi.invert(mel, CFG, method=method, n_iter=4, length=len(y))
        assert out.shape == y.shape and np.isfinite(out).all()
        assert 0.1 < np.std(out) / np.std(y) < 10


def test_shipped_refiner_beats_pinv_on_development_clips() -> None:
    files = sorted(SHARED_SPEECH.glob("*.wav"))[:4] if SHARED_SPEECH.is_dir() else []
    if not files:
        pytest.skip(f"optional real speech not available: {SHARED_SPEECH} is absent")
    from melinvert.io import load_audio
    from melinvert.magnitude import pinv
    from melinvert.neural import refiner_magnitude

    def lsd(ref: torch.Tensor, est: torch.Tensor) -> float:
        floor = 1e-10 * 256.0**2
        d = 10 * torch.log10(ref.square().clamp_min(floor) / est.square().clamp_min(floor))
        return float(d.square().mean(dim=-2).sqrt().mean())

    wins = []
    for f in files:
        y, _, _ = load_audio(f, CFG.sample_rate)
        x = torch.from_numpy(y)[None]
        lin, spec = model_mel(x, CFG)
        true = spec.abs().transpose(1, 2)
        wins.append(lsd(true, refiner_magnitude(lin, CFG)) < lsd(true, pinv(lin, CFG)))
    assert all(wins)


def test_degli_and_cnn_vocoder_run_in_the_pipeline_and_in_blocks() -> None:
    torch.manual_seed(1)
    y = _voice(22050, 2.0, 140.0, 3)
    mel = mi.mel_spectrogram(y, CFG)
    degli = Checkpoint("degli", CFG, TINY["degli"], {}, build_model("degli", CFG, TINY["degli"]))
    # untrained (output layer zero): exactly the mel-refitted fast Griffin-Lim it corrects
    plain = mi.invert(mel, CFG, method="nnls+pghi+degli", n_iter=4, model=degli, length=len(y))
    mfgla = mi.invert(mel, CFG, method="nnls+pghi+mfgla", n_iter=4, length=len(y))
    np.testing.assert_allclose(plain, mfgla, atol=1e-5)
    torch.nn.init.normal_(degli.model.out.weight, std=0.01)
    out = mi.invert(mel, CFG, method="nnls+pghi+degli", n_iter=2, model=degli, length=len(y))
    assert out.shape == y.shape and np.isfinite(out).all()
    voc = Checkpoint(
        "cnn_vocoder", CFG, TINY["cnn_vocoder"], {}, build_model("cnn_vocoder", CFG, TINY["cnn_vocoder"])
    )
    # untrained: exactly its prior (default), whole and block by block
    for kw in ({}, {"block_frames": 60}):
        fresh = mi.invert(mel, CFG, method="cnn_vocoder", model=voc, length=len(y), **kw)
        np.testing.assert_array_equal(fresh, mi.invert(mel, CFG, method="default", length=len(y), **kw))
    torch.nn.init.normal_(voc.model.out.weight, std=0.01)
    whole = mi.invert(mel, CFG, method="cnn_vocoder", model=voc, length=len(y))
    blocks = mi.invert(mel, CFG, method="cnn_vocoder", model=voc, length=len(y), block_frames=60)
    change = np.abs(whole - mi.invert(mel, CFG, method="default", length=len(y))).max()
    prior = mi.invert(mel, CFG, method="default", length=len(y), block_frames=60)
    assert whole.shape == blocks.shape == y.shape and np.isfinite(blocks).all() and change > 1e-4
    # in blocks the correction is of the same size (it fades in after each block's held samples)
    assert 0.1 * change < np.abs(blocks - prior).max() < 10 * change
    other = mi.get_preset("vocos-24k-100")
    for method in ("cnn_vocoder", "nnls+pghi+degli"):  # shipped for hifigan-22k-80 only
        with pytest.raises(MelinvertError, match=r"no (cnn_vocoder|degli) weights for this mel config"):
            mi.invert(np.zeros((other.n_mels, 20), np.float32) - 5, other, method=method)


def test_cli_invert_takes_a_model(tmp_path: Path, run_cli) -> None:
    model = build_model("refiner", CFG, TINY["refiner"])
    save_checkpoint(
        tmp_path / "run" / "best.safetensors",
        model,
        kind="refiner",
        config=CFG,
        hparams=TINY["refiner"],
        train={},
    )
    sf.write(tmp_path / "a.wav", _voice(22050, 0.5, 120.0, 4), 22050)
    status, _, err = run_cli(
        "mel", tmp_path / "a.wav", "-o", tmp_path / "a.npy", "--preset", "hifigan-22k-80"
    )
    assert status == 0, err
    args = ["invert", tmp_path / "a.npy", "-o", tmp_path / "b.wav", "--preset", "hifigan-22k-80", "--quiet"]
    status, _, err = run_cli(
        *args, "--method", "refiner+pghi+fgla", "--iters", "2", "--model", tmp_path / "run"
    )
    assert status == 0, err
    b, sr = sf.read(tmp_path / "b.wav")
    assert sr == 22050 and b.shape[0] > 0
    other = tmp_path / "other"
    save_checkpoint(
        other / "best.safetensors",
        model,
        kind="refiner",
        config=CFG.replace(fmax=11025.0),
        hparams=TINY["refiner"],
        train={},
    )
    status, _, err = run_cli(*args, "--overwrite", "--method", "refiner+fgla", "--model", other)
    assert status == 2 and "another mel config: fmax" in err

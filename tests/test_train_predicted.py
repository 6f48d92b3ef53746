"""Training on predicted mels: augmentation of the training mels (``--augment``) and
audio/mel pairs (``--mels``)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import melinvert as mi
from melinvert.degrade import smooth_time
from melinvert.demo import speech_like
from melinvert.errors import MelinvertError
from melinvert.neural import load_checkpoint, read_record
from melinvert.neural.augment import parse_augment
from melinvert.neural.data import Clip, Crops, load_clips
from melinvert.neural.pairs import load_pairs
from melinvert.neural.tasks import compressed_mel, decoded_mel, model_mel
from melinvert.neural.train import train, training_batch

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = mi.get_preset("hifigan-22k-80")
TINY = {"channels": 16, "dilations": [1, 2], "fine_channels": 4, "fine_dilations": [1]}
FAST = {"batch_size": 2, "crop_frames": 16, "val_every": 1000, "val_n_iter": 2}
SPEC = "smooth_t=0.5:1.5,smooth_f=0:1,noise=0.05:0.3,level=-6:6,mask=0.5,mask_snr=0:10"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speech-like clips in nested folders (``train/a/x.wav``, ...) and one validation clip."""
    root = tmp_path_factory.mktemp("speech")
    names = ["a/x.wav", "a/y.wav", "b/x.wav", "z.wav"]
    for i, name in enumerate(names):
        p = root / "train" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, speech_like(22050, 0.9, seed=i), 22050)
    (root / "val").mkdir()
    sf.write(root / "val" / "v.wav", speech_like(22050, 0.7, seed=9), 22050)
    return root


def _mels_dir(corpus: Path, out: Path, *, extra: dict[str, int] | None = None) -> Path:
    """Teacher-forced-style mels: each file's mel over-smoothed in time (sigma 1 frame), saved
    as ``out/REL.npy``; ``extra`` adds frames (negative: removes) to the named files."""
    extra = extra or {}
    for folder in ("train", "val"):
        for wav in sorted((corpus / folder).rglob("*.wav")):
            rel = wav.relative_to(corpus / folder)
            y, _ = sf.read(wav, dtype="float32")
            mel = smooth_time(mi.mel_spectrogram(y, CFG), CFG, 1.0)
            k = extra.get(rel.as_posix(), 0)
            if k > 0:
                mel = np.concatenate([mel, mel[:, -k:]], axis=1)
            elif k < 0:
                mel = mel[:, :k]
            dest = out / rel.with_suffix(".npy")
            dest.parent.mkdir(parents=True, exist_ok=True)
            np.save(dest, mel.astype(np.float32))
    return out


def _train(corpus: Path, run: Path, steps: int, **kw):
    args = {**FAST, **kw}
    return train(
        "refiner",
        [corpus / "train"],
        CFG,
        run,
        val=[corpus / "val"],
        hparams=TINY,
        steps=steps,
        progress=False,
        **args,
    )


def _interrupt_at(n: int):
    def hook(step: int, loss: float) -> None:
        if step == n:
            os.kill(os.getpid(), signal.SIGINT)

    return hook


def _same_weights(a: Path, b: Path) -> None:
    wa = load_checkpoint(a / "last.safetensors").model.state_dict()
    wb = load_checkpoint(b / "last.safetensors").model.state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ---------------------------------------------------------------------- the SPEC


def test_spec_parses_to_ranges_and_back() -> None:
    aug = parse_augment("noise=0:0.3, smooth_t=0:1.5,level=-6:6,mask=0.3,smooth_f=1")
    assert aug is not None
    assert aug.smooth_t == (0.0, 1.5) and aug.smooth_f == (1.0, 1.0) and aug.level == (-6.0, 6.0)
    assert aug.noise == (0.0, 0.3) and aug.mask == 0.3 and aug.mask_snr == (0.0, 20.0)
    assert aug.spec == "level=-6:6,smooth_t=0:1.5,smooth_f=1:1,noise=0:0.3,mask=0.3,mask_snr=0:20"
    assert parse_augment(aug.spec) == aug
    assert parse_augment(None) is None and parse_augment("none") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("blur=0:1", r"unknown family 'blur'; known: level, smooth_t"),
        ("smooth_t=2:1", r"smooth_t=2:1: bad range, LO must not exceed HI"),
        ("noise=-0.1:0.2", r"noise=-0.1:0.2: bad range, strengths must be >= 0"),
        ("level=a:3", r"level=a:3: 'a' is not a number"),
        ("mask=1.5", r"mask=1.5: a probability must be in \[0, 1\]"),
        ("clean=-0.1", r"clean=-0.1: a probability must be in \[0, 1\]"),
        ("smooth_t", r"item 'smooth_t' must be NAME=VALUE"),
        ("noise=0:1,noise=0:2", r"noise is given twice"),
        ("clean=0.5", r"degrades nothing"),
        ("level=inf", r"must be finite"),
    ],
)
def test_spec_errors_are_one_line(spec: str, message: str) -> None:
    with pytest.raises(MelinvertError, match=message) as e:
        parse_augment(spec)
    assert "\n" not in str(e.value)


def test_cli_refuses_a_bad_spec_in_one_line(corpus: Path, tmp_path: Path, run_cli) -> None:
    argv = ["train", "refiner", corpus / "train", "--preset", "hifigan-22k-80", "-o", tmp_path / "r"]
    status, _, err = run_cli(*argv, "--augment", "smooth_t=0:1,wobble=2", "--quiet")
    assert status == 2 and "unknown family 'wobble'" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------- augmentation


def test_augmentation_changes_the_mels_not_the_targets(corpus: Path) -> None:
    clips = load_clips(sorted((corpus / "train").rglob("*.wav")), CFG)
    crops = Crops(clips, CFG, 24, gain_db=6.0)
    aug = parse_augment(SPEC)
    plain = training_batch(crops, CFG, 3, 5, 8)
    b = training_batch(crops, CFG, 3, 5, 8, aug)
    assert plain.mel is None and not plain.draws
    torch.testing.assert_close(b.audio, plain.audio, rtol=0, atol=0)  # the same crops, unchanged
    torch.testing.assert_close(b.nyquist, plain.nyquist, rtol=0, atol=0)
    clean, _ = model_mel(b.audio, CFG)
    assert b.mel is not None and b.mel.shape == clean.shape
    assert len(b.draws) == 8
    for i, d in enumerate(b.draws):
        g = d.degradation
        assert 0.5 <= g.time_sigma <= 1.5 and 0 <= g.freq_sigma <= 1 and 0.05 <= g.noise_std <= 0.3
        assert -6 <= g.level_db <= 6
        assert d.mask_snr_db is None or 0 <= d.mask_snr_db <= 10
        assert not torch.allclose(b.mel[i], clean[i], rtol=1e-3, atol=1e-6), i
    assert {d.mask_snr_db is None for d in b.draws} == {True, False}  # p = 0.5, 8 crops: both
    again = training_batch(crops, CFG, 3, 5, 8, aug)  # seeded: a pure function of (seed, step)
    assert torch.equal(again.mel, b.mel) and again.draws == b.draws
    other = training_batch(crops, CFG, 3, 6, 8, aug)
    assert other.draws != b.draws


def test_an_unmasked_draw_is_the_degradation_of_the_clean_mel(corpus: Path) -> None:
    """Without noise or mask each crop's mel is exactly degrade.apply of its clean mel."""
    from melinvert.degrade import apply

    clips = load_clips(sorted((corpus / "train").rglob("*.wav")), CFG)
    crops = Crops(clips, CFG, 24)
    b = training_batch(crops, CFG, 0, 0, 3, parse_augment("smooth_t=0.5:1,level=-3:3"))
    comp = compressed_mel(b.audio, CFG)
    for i, d in enumerate(b.draws):
        ref = decoded_mel(apply(comp[i], CFG, d.degradation), CFG)
        torch.testing.assert_close(b.mel[i], ref, rtol=1e-5, atol=1e-7)


def test_augmented_run_resumes_exactly_and_is_recorded(corpus: Path, tmp_path: Path) -> None:
    straight = _train(corpus, tmp_path / "a", steps=4, augment=SPEC)
    assert straight.status == "done"
    first = _train(corpus, tmp_path / "b", steps=4, augment=SPEC, on_step=_interrupt_at(2))
    assert first.status == "interrupted" and first.step == 2
    second = train(
        "refiner", [corpus / "train"], CFG, tmp_path / "b", val=[corpus / "val"], resume=True, progress=False
    )
    assert second.status == "done" and second.step == 4
    _same_weights(tmp_path / "a", tmp_path / "b")
    rec = read_record(tmp_path / "b")
    canonical = parse_augment(SPEC).spec
    assert rec["train"]["args"]["augment"] == canonical
    assert rec["train"]["augment"] == {
        "level": [-6.0, 6.0],
        "smooth_t": [0.5, 1.5],
        "smooth_f": [0.0, 1.0],
        "noise": [0.05, 0.3],
        "mask": 0.5,
        "mask_snr": [0.0, 10.0],
    }
    last = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])
    clean, degraded = last["val_loss_clean"], last["val_loss_degraded"]
    assert np.isfinite(clean) and np.isfinite(degraded) and clean != degraded
    assert last["val_loss"] == pytest.approx((clean + degraded) / 2, rel=1e-12)
    with pytest.raises(MelinvertError, match=r"augment='noise=0:0.1' differs"):
        _train(corpus, tmp_path / "b", steps=6, augment="noise=0:0.1", resume=True)


def test_augmentation_off_leaves_runs_as_they_were(corpus: Path, tmp_path: Path) -> None:
    _train(corpus, tmp_path / "r", steps=1)
    rec = read_record(tmp_path / "r")
    assert rec["train"]["augment"] is None and "augment" not in rec["train"]["args"]
    last = json.loads((tmp_path / "r" / "log.jsonl").read_text().splitlines()[-1])
    assert not any(k.startswith("val_loss_") for k in last)


def test_degli_takes_neither_augmentation_nor_pairs(corpus: Path, tmp_path: Path) -> None:
    for kw, what in (({"augment": "noise=0:0.1"}, "--augment"), ({"mels": tmp_path}, "--mels")):
        with pytest.raises(MelinvertError, match=f"{what} applies to the models that read the mel"):
            train("degli", [corpus / "train"], CFG, tmp_path / "d", steps=1, progress=False, **kw)


# ---------------------------------------------------------------------- pairs


def _audio_files(corpus: Path) -> tuple[dict[Path, str], dict[Path, int]]:
    from melinvert.neural.pairs import audio_keys

    keys = audio_keys([corpus / "train"])
    frames = {p: CFG.n_frames(sf.info(p).frames) for p in keys}
    return keys, frames


def test_pairs_match_by_relative_path_and_stem_and_reconcile_two_frames(corpus: Path, tmp_path: Path) -> None:
    mels = _mels_dir(corpus, tmp_path / "m", extra={"a/x.wav": 2, "b/x.wav": -1})
    np.savez(tmp_path / "m" / "z.npz", mel=np.load(tmp_path / "m" / "z.npy"))  # another format...
    (tmp_path / "m" / "z.npy").unlink()  # ...of the same key
    (tmp_path / "m" / "v.npy").unlink()  # the validation clip's (not among these inputs)
    keys, frames = _audio_files(corpus)
    assert sorted(keys.values()) == ["a/x", "a/y", "b/x", "z"]
    notes: list[str] = []
    got, fixed = load_pairs(keys, frames, mels, CFG, say=notes.append)
    assert fixed == 2 and notes == ["--mels: 2 of 4 mel(s) cut or padded by up to 2 frames to their audio"]
    for p, m in got.items():
        assert m.shape == (CFG.n_mels, frames[p]) and m.dtype == np.float32
        rel = keys[p]
        src = np.load(mels / f"{rel}.npy") if rel != "z" else np.load(mels / "z.npz")["mel"]
        n = min(src.shape[1], frames[p])
        np.testing.assert_array_equal(m[:, :n], src[:, :n])
        if src.shape[1] < frames[p]:  # padded with the log floor
            np.testing.assert_array_equal(m[:, n:], np.float32(np.log(CFG.compression.floor)))


def test_pairs_refusals_list_every_file(corpus: Path, tmp_path: Path) -> None:
    mels = _mels_dir(corpus, tmp_path / "m", extra={"a/y.wav": -3, "z.wav": -5})
    (tmp_path / "m" / "a" / "x.npy").unlink()
    np.save(tmp_path / "m" / "extra.npy", np.load(mels / "v.npy"))
    keys, frames = _audio_files(corpus)
    with pytest.raises(MelinvertError) as e:
        load_pairs(keys, frames, mels, CFG)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"--mels {str(mels)!r} does not pair with the audio: ")
    assert f"1 audio file(s) without a mel ({corpus / 'train' / 'a' / 'x.wav'})" in msg
    assert f"2 mel file(s) without audio ({mels / 'extra.npy'}, {mels / 'v.npy'})" in msg
    ay, z = corpus / "train" / "a" / "y.wav", corpus / "train" / "z.wav"
    assert (
        f"2 length(s) more than 2 frames apart ({ay}: audio {frames[ay]} frames, mel {frames[ay] - 3}, "
        f"{z}: audio {frames[z]} frames, mel {frames[z] - 5})"
    ) in msg
    with pytest.raises(MelinvertError, match=r"is not a folder"):
        load_pairs(keys, frames, mels / "z.npy", CFG)


def test_paired_crops_cut_mel_and_audio_at_the_same_place() -> None:
    """A mel whose frame t holds the value t shows where each crop started."""
    y = speech_like(22050, 1.0, seed=4)
    frames = CFG.n_frames(y.shape[0])
    ramp = np.log(CFG.compression.floor) + 0.01 * np.arange(frames, dtype=np.float32)
    clip = Clip("c", y, 22050, 22050, mel=np.repeat(ramp[None], CFG.n_mels, axis=0).astype(np.float32))
    crops = Crops([clip], CFG, 16)
    b = training_batch(crops, CFG, 0, 7, 4)
    assert b.mel is not None and b.mel.shape == (4, CFG.n_mels, 16)
    for i in range(4):
        comp = CFG.compression.encode(b.mel[i])
        f0 = round(float((comp[0, 0] - np.log(CFG.compression.floor)) / 0.01))
        assert 0 <= f0 <= frames - 16
        np.testing.assert_allclose(comp[0].numpy(), ramp[f0 : f0 + 16], atol=1e-5)
        start = f0 * CFG.hop_length
        np.testing.assert_array_equal(b.audio[i].numpy(), y[start : start + crops.samples])


def test_a_pairs_run_trains_on_the_given_mels_resumes_and_inverts(corpus: Path, tmp_path: Path) -> None:
    mels = _mels_dir(corpus, tmp_path / "m", extra={"a/x.wav": 1})
    notes: list[str] = []
    straight = _train(corpus, tmp_path / "a", steps=4, mels=mels, log=notes.append)
    assert straight.status == "done"
    assert any("1 of 5 mel(s) cut or padded" in n for n in notes)
    first = _train(corpus, tmp_path / "b", steps=4, mels=mels, on_step=_interrupt_at(2))
    assert first.status == "interrupted"
    with pytest.raises(MelinvertError, match="needs the same --mels DIR"):
        train(
            "refiner",
            [corpus / "train"],
            CFG,
            tmp_path / "b",
            val=[corpus / "val"],
            resume=True,
            progress=False,
        )
    train(
        "refiner",
        [corpus / "train"],
        CFG,
        tmp_path / "b",
        val=[corpus / "val"],
        mels=mels,
        resume=True,
        progress=False,
    )
    _same_weights(tmp_path / "a", tmp_path / "b")
    rec = read_record(tmp_path / "b")["train"]["data"]["mels"]
    assert rec["dir"] == str(mels.resolve()) and rec["files"] == 5 and rec["reconciled"] == 1
    log = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(log["val_loss_pairs"]) and np.isfinite(log["val_loss_clean"])
    mel = np.load(mels / "v.npy")
    out = mi.invert(mel, CFG, method="refiner+pghi+fgla", model=tmp_path / "b", n_iter=4)
    assert out.shape == (CFG.n_samples(mel.shape[1]),) and np.isfinite(out).all()


def test_pairs_change_what_the_model_learns(corpus: Path, tmp_path: Path) -> None:
    """Mels of OTHER audio as the pairs: the first steps' updates differ from recomputed mels'."""
    other = tmp_path / "m"
    for i, rel in enumerate(["a/x", "a/y", "b/x", "z"]):
        wav = corpus / "train" / f"{rel}.wav"
        n = sf.info(wav).frames
        mel = mi.mel_spectrogram(speech_like(22050, n / 22050, seed=100 + i)[:n], CFG)
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(other / f"{rel}.npy", mel)
    y, _ = sf.read(corpus / "val" / "v.wav", dtype="float32")
    np.save(other / "v.npy", mi.mel_spectrogram(y, CFG))
    _train(corpus, tmp_path / "own", steps=2)
    _train(corpus, tmp_path / "pairs", steps=2, mels=other)
    a = load_checkpoint(tmp_path / "own" / "last.safetensors").model.state_dict()
    b = load_checkpoint(tmp_path / "pairs" / "last.safetensors").model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # the audio's own mels as pairs: the batch the model sees is the crops' mel (inside the
    # crop; its edge frames see the crop's padding, not the neighbouring audio)
    clips = load_clips(sorted((corpus / "train").rglob("*.wav")), CFG)
    paired = [
        Clip(c.name, c.audio, c.source_rate, c.rate, mel=mi.mel_spectrogram(c.audio, CFG)) for c in clips
    ]
    b = training_batch(Crops(paired, CFG, 16), CFG, 0, 0, 2)
    clean, _ = model_mel(b.audio, CFG)
    torch.testing.assert_close(b.mel[..., 3:-3], clean[..., 3:-3], rtol=1e-4, atol=1e-6)

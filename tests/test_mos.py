"""melinvert.metrics.mos: no-reference MOS (DistillMOS, DNSMOS) on real speech and obvious cases."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr
from helpers import SHARED_SPEECH, harmonic_noise

from melinvert import MelinvertError
from melinvert import metrics as M

STATUS = M.mos_status()
needs_mos = pytest.mark.skipif(
    any(v is not None for v in STATUS.values()),
    reason=f"MOS models not installed: {M.MOS_INSTALL_HINT}",
)
CLIPS = ["LJ001-0004.wav", "cmu_arctic_us_aew_a0001.wav"]


def real_clip(name: str) -> tuple[np.ndarray, int]:
    path = SHARED_SPEECH / name
    if not path.is_file():
        pytest.skip(f"real speech not available ({path} is absent)")
    y, sr = sf.read(str(path), dtype="float64")
    return y, sr


@needs_mos
@pytest.mark.parametrize("clip", CLIPS)
def test_ranks_the_obvious_cases_on_real_speech(clip):
    y, sr = real_clip(clip)
    y = soxr.resample(y, sr, 22050, "VHQ") if sr != 22050 else y
    mel = librosa.feature.melspectrogram(y=y.astype(np.float32), sr=22050)
    # librosa's mel_to_audio with its defaults, its random initial phases seeded
    griffin = librosa.griffinlim(
        librosa.feature.inverse.mel_to_stft(mel, sr=22050), n_iter=32, random_state=0
    )
    griffin = griffin[: y.size].astype(np.float64)
    rng = np.random.default_rng(0)
    noise = 0.1 * rng.standard_normal(y.size)
    quiet = 1e-4 * rng.standard_normal(y.size)
    s = {
        name: M.mos(x, 22050)
        for name, x in (("orig", y), ("gl", griffin), ("noise", noise), ("quiet", quiet))
    }
    # the overall measures rank Griffin-Lim's phase artefacts below the recording by a wide margin
    # (DistillMOS by >= 0.9, DNSMOS OVRL and BAK by >= 0.4 on these clips); DNSMOS SIG and P.808
    # barely see them (within 0.1 on the ARCTIC clip), so they are only asked to beat noise
    for key in ("distillmos", "dnsmos_ovrl", "dnsmos_bak"):
        assert s["orig"][key] > s["gl"][key] + 0.2, (key, s)
    for key in M.MOS_KEYS:
        assert min(s["orig"][key], s["gl"][key]) > s["noise"][key], (key, s)
        if key != "dnsmos_bak":  # near-silence has a clean background: BAK rightly rates it high
            assert min(s["orig"][key], s["gl"][key]) > s["quiet"][key], (key, s)
    assert s["orig"]["distillmos"] > 3.8 and s["orig"]["dnsmos_ovrl"] > 3.0, s["orig"]
    for bad in ("noise", "quiet"):
        assert s[bad]["distillmos"] < 2.0 and s[bad]["dnsmos_ovrl"] < 2.5, (bad, s[bad])
    assert s["noise"]["dnsmos_bak"] < 1.5  # a noisy background is what BAK measures


@needs_mos
def test_batch_rate_and_level():
    y = harmonic_noise(22050, 1.2, seed=0)
    one = M.mos(y, 22050)
    assert list(one) == list(M.MOS_KEYS) and all(
        isinstance(v, float) and 1.0 <= v <= 5.0 for v in one.values()
    )
    both = M.mos(np.stack([y, 0.5 * y]), 22050)
    for k in M.MOS_KEYS:
        assert both[k].shape == (2,)
        assert both[k][0] == pytest.approx(one[k], abs=1e-6)
    # DistillMOS scales to peak 1 itself: blind to the level
    assert both["distillmos"][1] == pytest.approx(one["distillmos"], abs=1e-4)
    # at another rate: the same as resampling to 16 kHz first (soxr VHQ)
    y16 = soxr.resample(y, 22050, 16000, "VHQ")
    at16 = M.mos(y16, 16000)
    for k in M.MOS_KEYS:
        assert at16[k] == pytest.approx(one[k], abs=1e-6)
    only = M.mos(y, 22050, models=["distillmos"])
    assert only["distillmos"] == pytest.approx(one["distillmos"], abs=1e-6) and only["dnsmos_ovrl"] is None


@needs_mos
def test_score_adds_mos_only_when_asked():
    y = harmonic_noise(16000, 1.0, seed=1)
    est = y + 0.01 * np.random.default_rng(0).standard_normal(y.size)
    plain = M.score(y, est, 16000, extras=False)
    assert not set(M.MOS_KEYS) & set(plain)
    with_mos = M.score(y, est, 16000, extras=False, mos=True)
    assert list(with_mos)[: len(plain)] == list(plain)
    assert with_mos["distillmos"] == pytest.approx(M.mos(est, 16000)["distillmos"], abs=1e-6)
    # beyond +-1: DNSMOS sees the clipped audio instead of refusing it
    loud = M.mos(4.0 * y, 16000, models=["dnsmos"])
    clipped = M.mos(np.clip(4.0 * y, -1, 1), 16000, models=["dnsmos"])
    assert loud["dnsmos_ovrl"] == pytest.approx(clipped["dnsmos_ovrl"], abs=1e-6)


def test_not_installed_reports_instead_of_failing(monkeypatch):
    for name in ("speechmos", "speechmos.dnsmos", "distillmos", "distillmos.sqa"):
        monkeypatch.setitem(sys.modules, name, None)  # import of these now raises ImportError
    M._distillmos_model.cache_clear()
    M._dnsmos_model.cache_clear()
    try:
        status = M.mos_status()
        for model in ("distillmos", "dnsmos"):
            assert status[model].startswith("not installed") and M.MOS_INSTALL_HINT in status[model]
        y = harmonic_noise(16000, 1.0)
        assert M.mos(y, 16000) == dict.fromkeys(M.MOS_KEYS)
        s = M.score(y, y, 16000, extras=False, mos=True)
        assert all(s[k] is None for k in M.MOS_KEYS) and s["log_mel_l1"] == 0.0
    finally:
        M._distillmos_model.cache_clear()
        M._dnsmos_model.cache_clear()


@needs_mos
def test_offline_weights_only_and_no_torchaudio_left_behind():
    # a fresh process: the network is cut, torch.load is watched, torchaudio is not installed
    code = textwrap.dedent(
        """
        import importlib.util, socket, sys
        import numpy as np, torch
        def refuse(*a, **k):
            raise AssertionError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        calls = []
        real_load = torch.load
        def watched(*a, **k):
            calls.append(k.get("weights_only"))
            return real_load(*a, **k)
        torch.load = watched
        has_ta = importlib.util.find_spec("torchaudio") is not None
        from melinvert import metrics as M
        assert M.mos_status() == {"distillmos": None, "dnsmos": None}
        y = np.sin(2 * np.pi * 200 * np.arange(16000) / 16000) * 0.3
        r = M.mos(y, 16000)
        assert all(1.0 <= v <= 5.0 for v in r.values()), r
        assert calls == [True], calls
        if not has_ta:
            assert "torchaudio" not in sys.modules
            try:
                import torchaudio  # noqa: F401
            except ImportError:
                pass
            else:
                raise AssertionError("the torchaudio stand-in stayed importable")
            sqa = sys.modules["distillmos.sqa"]
            try:
                sqa.torchaudio.load("x.wav")
            except ImportError as e:
                assert "never needs it" in str(e)
            else:
                raise AssertionError("the stand-in did something")
        print("ok", has_ta)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_errors():
    y = harmonic_noise(16000, 1.0)
    with pytest.raises(M.UnscorableError, match=r"at least 0.25 s"):
        M.mos(y[:3000], 16000)
    with pytest.raises(MelinvertError, match="unknown MOS model"):
        M.mos(y, 16000, models=["pesq"])
    with pytest.raises(MelinvertError, match="NaN or Inf"):
        M.mos(np.full(16000, np.nan), 16000)
    with pytest.raises(MelinvertError, match="sample_rate"):
        M.mos(y, 16000.5)
    with pytest.raises(MelinvertError, match="floating-point"):
        M.mos((y * 32767).astype(np.int16), 16000)

"""Research table for issue 12 item 3: inverting mels that no waveform made.

Each development clip's ``hifigan-22k-80`` log-mel is degraded the ways predicted mels are:

``clean``      the recording's own mel (nothing may get worse here)
``smooth``     Gaussian blur of the log-mel along time (sigma ``--sigma-t`` frames) and along
               mel bins (sigma ``--sigma-f`` bins): a TTS decoder's over-smoothing
``noisy``      log-domain Gaussian noise (std ``--noise``)
``tts``        smoothing and half the noise together
``masked``     an oracle-masked two-talker mixture: the mixture's linear mel times the
               Wiener-like mask ``S^2 / (S^2 + I^2)`` from the clean and interferer mels (0 dB,
               the interferer another clip of the set)

Every method inverts every degraded mel; its output is scored against the ORIGINAL recording
(PESQ-WB, STOI at 16 kHz via :func:`melinvert.metrics.score`) and by two no-reference MOS
predictors (DistillMOS, DNSMOS P.835 OVRL; ``pip install speechmos onnxruntime`` and
``pip install --no-deps distillmos xls-r-sqa``). Time is the sum of the inversion wall times
over the clips as a ratio to ``default``'s in the same process.

Usage::

    python benchmarks/predicted_research.py --clips tune --methods default,fast,adaptive
    python benchmarks/predicted_research.py --clips check --methods default,adaptive

``--clips tune`` is the 4 clips used for tuning, ``check`` the other 6 of the 10 development
clips; results are cached per (method, degradation, clip) in ``--cache`` so that methods can
be added run by run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from scipy.ndimage import gaussian_filter1d

import melinvert as mi
from melinvert import metrics, predicted
from melinvert.magnitude import decode_mel

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "data" / "speech"
TRAIN = ROOT.parent / "shared" / "data" / "train"
PRESET = "hifigan-22k-80"
TUNE = ["LJ001-0001", "LJ001-0004", "LJ001-0006", "cmu_arctic_us_aew_a0001"]
CHECK = ["LJ001-0002", "LJ001-0003", "LJ001-0005", "LJ001-0007", "LJ001-0008", "cmu_arctic_us_aew_a0002"]
DEGRADATIONS = ("clean", "smooth", "noisy", "tts", "masked")
#: Held-out clips of the corpus in ``shared/data/train`` (never tuned on): LJ Speech,
#: LibriSpeech (16 kHz), LibriTTS (24 kHz) and a CMU ARCTIC speaker, first ``MAX_SECONDS`` s.
HELDOUT = [
    "ljspeech_LJ001-0010",
    "ljspeech_LJ002-0035",
    "ljspeech_LJ050-0131",
    "librispeech_103-1240-0000",
    "librispeech_332-128985-0000",
    "librispeech_7226-86964-0000",
    "libritts_8463_294825_000043_000000",
    "cmuarctic_spkU1_a0010",
]
MAX_SECONDS = 10.0


# ---------------------------------------------------------------------- MOS predictors


@functools.lru_cache(maxsize=1)
def _distillmos() -> torch.nn.Module:
    if "torchaudio" not in sys.modules:  # distillmos imports torchaudio only to read files
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    with contextlib.redirect_stdout(io.StringIO()):
        from distillmos import ConvTransformerSQAModel

        model = ConvTransformerSQAModel()
    return model.eval()


def distillmos(y16: np.ndarray) -> float:
    with torch.no_grad():
        return float(_distillmos()(torch.as_tensor(y16, dtype=torch.float32)[None]).item())


def dnsmos_ovrl(y16: np.ndarray) -> float:
    from speechmos import dnsmos

    return float(dnsmos.run(np.clip(y16, -1, 1).astype(np.float32), 16000)["ovrl_mos"])


# ---------------------------------------------------------------------- data


def load_clip(name: str, sr: int) -> np.ndarray:
    """A development clip (``speech/NAME.wav``) or a corpus clip (``train/NAME.flac``), mono at
    ``sr``, at most :data:`MAX_SECONDS` long."""
    path = SPEECH / f"{name}.wav"
    if not path.exists():
        path = TRAIN / f"{name}.flac"
    y, file_sr = sf.read(path, dtype="float64", always_2d=True)
    y = y.mean(axis=1)[: int(MAX_SECONDS * file_sr)]
    return soxr.resample(y, file_sr, sr, quality="VHQ") if file_sr != sr else y


def degrade(
    kind: str, logmel: np.ndarray, other: np.ndarray, y: np.ndarray, args: argparse.Namespace, seed: int
):
    """The degraded log-mel ``(n_mels, T)`` of one clip (``other`` = the interferer's audio)."""
    rng = np.random.default_rng(seed)
    if kind == "clean":
        return logmel
    if kind in ("smooth", "tts"):
        out = gaussian_filter1d(logmel, args.sigma_t, axis=1, mode="nearest")
        out = gaussian_filter1d(out, args.sigma_f, axis=0, mode="nearest")
        if kind == "tts":
            out = out + rng.normal(0, args.noise / 2, out.shape)
        return out
    if kind == "noisy":
        return logmel + rng.normal(0, args.noise, logmel.shape)
    if kind == "masked":
        n = len(y)
        i = np.resize(other, n)
        i = i * np.sqrt(np.mean(y**2) / max(np.mean(i**2), 1e-12))
        mel = lambda a: np.exp(mi.mel_spectrogram(a, PRESET))  # noqa: E731
        s_m, i_m, x_m = mel(y), mel(i), mel(y + i)
        mask = s_m**2 / (s_m**2 + i_m**2 + 1e-12)
        return np.log(np.maximum(x_m * mask, 1e-5))
    raise ValueError(kind)


# ---------------------------------------------------------------------- methods


def builtin(name: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """A registered pipeline or any method string (``sharpen+nnls+pghi+magla(iters=12)``)."""
    return lambda logmel, n: mi.invert(logmel, PRESET, method=name, length=n)


def research(**kw) -> Callable[[np.ndarray, int], np.ndarray]:
    def run(logmel: np.ndarray, n: int) -> np.ndarray:
        cfg = mi.get_preset(PRESET)
        lin = decode_mel(torch.as_tensor(logmel, dtype=torch.float32)[None], cfg)
        with torch.no_grad():
            return predicted.invert_linear(lin, cfg, length=n, **kw)[0].numpy()

    return run


METHODS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "default": builtin("default"),
    "fast": builtin("fast"),
    "quality": builtin("quality"),
    "cascade": research(
        sharpen=False
    ),  # predicted.invert_linear with today's default settings: must equal default
}


def add_variants() -> None:
    """Variants under study (name -> invert_linear keywords)."""
    for spec in VARIANTS:
        name, kw = spec
        METHODS[name] = research(**kw)
    for name, method in PIPELINES.items():
        METHODS[name] = builtin(method)


VARIANTS: list[tuple[str, dict]] = [
    ("tol0.1", {"sharpen": False, "tolerance": 0.1}),
    ("tol0.2", {"sharpen": False, "tolerance": 0.2}),
    ("rho0.5", {"sharpen": False, "refit_exponent": 0.5}),
    ("asharp", {"sharpen": True}),
    ("asharp+tol0.1", {"sharpen": True, "tolerance": 0.1}),
    ("asharp1.0/1.6", {"sharpen": True, "sharpen_kw": {"targets": (1.0, 1.6)}}),
    ("asharp1.1/1.7", {"sharpen": True, "sharpen_kw": {"targets": (1.1, 1.7)}}),
    ("asharp0.8/1.3", {"sharpen": True, "sharpen_kw": {"targets": (0.8, 1.3)}}),
    ("asharp0.7/1.2", {"sharpen": True, "sharpen_kw": {"targets": (0.7, 1.2)}}),
    ("cascade-sharp", {"sharpen": True}),
    ("max4", {"sharpen": True, "sharpen_kw": {"max_amount": 4.0}}),
    ("max3", {"sharpen": True, "sharpen_kw": {"max_amount": 3.0}}),
    ("max8", {"sharpen": True, "sharpen_kw": {"max_amount": 8.0}}),
    ("max5", {"sharpen": True, "sharpen_kw": {"max_amount": 5.0}}),
]

#: Variants written as method strings (name -> method), 2026-12-05.
PIPELINES: dict[str, str] = {
    "nnls10+m18": "sharpen+nnls(iters=10)+pghi+magla(iters=18)",
    "m18": "sharpen+nnls(iters=20)+pghi+magla(iters=18)",
    "m12": "sharpen+nnls(iters=20)+pghi+magla(iters=12)",
    "m8": "sharpen+nnls(iters=20)+pghi+magla(iters=8)",
    "m24": "sharpen+nnls(iters=20)+pghi+magla(iters=24)",
    "m32": "sharpen+nnls(iters=20)+pghi+magla(iters=32)",
    "a.9": "sharpen+nnls(iters=20)+pghi+magla(iters=16,alpha=0.9)",
    "b1.3": "sharpen+nnls(iters=20)+pghi+magla(iters=16,beta=1.3)",
    "b.9": "sharpen+nnls(iters=20)+pghi+magla(iters=16,beta=0.9)",
    "g1.4": "sharpen+nnls(iters=20)+pghi+magla(iters=16,gamma=1.4)",
    "g1.0": "sharpen+nnls(iters=20)+pghi+magla(iters=16,gamma=1.0)",
    "mfgla16": "sharpen+nnls(iters=20)+pghi+mfgla(iters=16)",
    "n30": "sharpen+nnls(iters=30)+pghi+magla(iters=16)",
    "n40m14": "sharpen+nnls(iters=40)+pghi+magla(iters=14)",
    "n60m12": "sharpen+nnls(iters=60)+pghi+magla(iters=12)",
    "b.8": "sharpen+nnls(iters=20)+pghi+magla(iters=16,beta=0.8)",
    "a.9b.9": "sharpen+nnls(iters=20)+pghi+magla(iters=16,alpha=0.9,beta=0.9)",
    "a.95": "sharpen+nnls(iters=20)+pghi+magla(iters=16,alpha=0.95)",
    "g1.1": "sharpen+nnls(iters=20)+pghi+magla(iters=16,gamma=1.1)",
    "sharp6": "sharpen(max_amount=6.0)+nnls(iters=20)+pghi+magla(iters=16)",
    "sharp4": "sharpen(max_amount=4.0)+nnls(iters=20)+pghi+magla(iters=16)",
    "f1.3": "sharpen(targets=(0.9,1.3))+nnls(iters=20)+pghi+magla(iters=16)",
    "f1.6": "sharpen(targets=(0.9,1.6))+nnls(iters=20)+pghi+magla(iters=16)",
    "t1.0": "sharpen(targets=(1.0,1.45))+nnls(iters=20)+pghi+magla(iters=16)",
    "sharp4ab": "sharpen(max_amount=4.0)+nnls(iters=20)+pghi+magla(iters=16,alpha=0.9,beta=0.9)",
    # `fast` before session 6 (stage 1: 10 NNLS iterations; now the pseudo-inverse)
    "fast-nnls10": "sharpen+nnls(iters=10)+pghi+magla(iters=6)",
}


# ---------------------------------------------------------------------- run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default="tune", help="tune, check, all or comma-separated clip names")
    ap.add_argument("--methods", default="default,fast")
    ap.add_argument("--degradations", default=",".join(DEGRADATIONS))
    ap.add_argument("--sigma-t", type=float, default=1.0)
    ap.add_argument("--sigma-f", type=float, default=0.7)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--no-mos", action="store_true")
    ap.add_argument("--cache", default=str(ROOT / "scratch" / "research_cache.json"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    add_variants()
    clips = {"tune": TUNE, "check": CHECK, "all": TUNE + CHECK, "heldout": HELDOUT}.get(
        args.clips, args.clips.split(",")
    )
    cfg = mi.get_preset(PRESET)
    sr = cfg.sample_rate
    tag = f"t{args.sigma_t}_f{args.sigma_f}_n{args.noise}"
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    audio = {c: load_clip(c, sr) for c in clips}
    all_names = TUNE + CHECK if all(c in TUNE + CHECK for c in clips) else list(clips)
    methods = args.methods.split(",")
    degr = args.degradations.split(",")
    secs: dict[tuple[str, str], float] = {}
    for ci, clip in enumerate(clips):
        y = audio[clip]
        other = load_clip(all_names[(all_names.index(clip) + 3) % len(all_names)], sr)
        logmel = mi.mel_spectrogram(y, PRESET)
        for d in degr:
            dm = np.maximum(degrade(d, logmel, other, y, args, seed=ci), np.log(1e-5)).astype(np.float32)
            for m in ["default", *[m for m in methods if m != "default"]]:
                t0 = time.perf_counter()
                out = METHODS[m](dm, len(y))
                secs[(m, d)] = secs.get((m, d), 0.0) + time.perf_counter() - t0
                key = f"{tag}|{m}|{d}|{clip}"
                if key in cache and (args.no_mos or cache[key].get("distillmos") is not None):
                    continue
                s = metrics.score(y, out, sr, config=cfg)
                rms = float(np.sqrt(np.mean(np.square(out)) / max(np.mean(np.square(y)), 1e-20)))
                rec = {
                    "pesq": s["pesq_wb"],
                    "stoi": s["stoi"],
                    "rms": rms,
                    "distillmos": None,
                    "dnsmos": None,
                }
                if not args.no_mos:
                    o16 = soxr.resample(np.asarray(out, dtype=np.float64), sr, 16000, quality="VHQ")
                    rec["distillmos"], rec["dnsmos"] = distillmos(o16), dnsmos_ovrl(o16)
                cache[key] = rec
                cache_path.parent.mkdir(exist_ok=True)
                cache_path.write_text(json.dumps(cache, indent=0))
            print(f"{clip} {d} done", file=sys.stderr, flush=True)
    # reference rows: the original recording's MOS
    print(f"\nclips: {', '.join(clips)}; {tag}\n")
    print("| method | degradation | PESQ-WB | STOI | DistillMOS | DNSMOS OVRL | RMS ratio | time / default |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for d in degr:
        for m in ["default", *[m for m in methods if m != "default"]]:
            recs = [cache[f"{tag}|{m}|{d}|{c}"] for c in clips]

            def mean(k: str, recs: list = recs) -> str:
                v = [r[k] for r in recs if r.get(k) is not None]
                return f"{np.mean(v):.3f}" if v else "-"

            ratio = secs[(m, d)] / secs[("default", d)]
            print(
                f"| {m} | {d} | {mean('pesq')} | {mean('stoi')} | {mean('distillmos')} | {mean('dnsmos')} "
                f"| {mean('rms')} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()

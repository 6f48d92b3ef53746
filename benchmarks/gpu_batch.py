"""Batched inversion on a CUDA device, against the CPU and librosa in the same process run.

For each method and batch size, a batch of ``B`` different speech-like clips of ``--seconds``
each (synthesised: :func:`melinvert.demo.speech_like`) is inverted on the GPU in one call;
the table gives the seconds of audio made per second (RTF), the peak GPU memory, and the
ratios to melinvert on this machine's CPU (batch 1, all its cores) and to librosa's
``mel_to_audio`` (its own default mel of the same audio, on the CPU) measured in the same run.
Every output is checked: its log-mel L1 against the audio the mel was made from, and for the
batch-1 row the GPU and CPU outputs' L1 side by side.

Usage::

    python benchmarks/gpu_batch.py [--methods default,fast,quality,learned] [--batches 1,8,32]
        [--seconds 10] [--repeat 3] [--out gpu_batch.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

import melinvert as mi
from melinvert import metrics
from melinvert.demo import speech_like


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeat: int, device: str):
    """(result, best wall seconds over ``repeat`` runs), the device synchronised."""
    best, out = float("inf"), None
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="hifigan-22k-80")
    p.add_argument("--methods", default="default,fast,quality,learned")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-librosa", action="store_true")
    p.add_argument("--out", default="")
    args = p.parse_args()

    cfg = mi.get_preset(args.preset)
    sr = cfg.sample_rate
    batches = [int(b) for b in args.batches.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    clips = np.stack([speech_like(sr, seconds=args.seconds, seed=s) for s in range(max(batches))])
    mels = mi.mel_spectrogram(torch.from_numpy(clips), cfg)  # (Bmax, n_mels, T), CPU float32
    audio_s = args.seconds

    def l1(est: torch.Tensor, i: int) -> float:
        e = est.detach().cpu().numpy()
        return metrics.log_mel_l1(clips[i][: len(e)], e, cfg)

    head = [
        f"Command: `python benchmarks/gpu_batch.py {' '.join(sys.argv[1:])}`  ",
        f"Device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else args.device}; "
        f"CPU: {os.cpu_count()} cores ({platform.machine()}), {torch.get_num_threads()} torch threads; "
        f"torch {torch.__version__}; preset `{cfg.name}`; clips of {audio_s:.0f} s (speech-like, "
        f"synthesised); wall clock, best of {args.repeat}, after a warm-up.",
        "",
    ]
    lib_rtf = None
    if not args.no_librosa:
        try:
            import librosa
        except ImportError:
            head.append("(librosa not installed: no librosa column)\n")
        else:
            y = clips[0] if sr == 22050 else librosa.resample(clips[0], orig_sr=sr, target_sr=22050)
            m_lr = librosa.feature.melspectrogram(y=y, sr=22050)
            librosa.feature.inverse.mel_to_audio(m_lr[:, :20], sr=22050)
            _, sec = timed(lambda: librosa.feature.inverse.mel_to_audio(m_lr, sr=22050), args.repeat, "cpu")
            lib_rtf = len(y) / 22050 / sec
            head.append(f"librosa {librosa.__version__} mel_to_audio on the CPU: RTF {lib_rtf:.2f}\n")
    rows = [
        "| method | batch | RTF (audio s per s) | x CPU batch 1 | x librosa | ms per 10 s clip | peak GPU MB | log-mel L1 GPU (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in methods:
        mi.invert(mels[:1, :, :60], cfg, method=m, seed=0)  # warm-up on the CPU
        cpu_out, cpu_sec = timed(lambda m=m: mi.invert(mels[:1], cfg, method=m, seed=0), 1, "cpu")
        cpu_rtf = audio_s / cpu_sec
        cpu_l1 = l1(cpu_out[0], 0)
        rows.append(
            f"| {m} | 1 (CPU) | {cpu_rtf:.1f} | 1.0 | {cpu_rtf / lib_rtf if lib_rtf else float('nan'):.1f} | "
            f"{1e4 * cpu_sec / audio_s:.0f} | - | {cpu_l1:.3f} |"
        )
        for b in batches:
            mb = mels[:b].to(args.device)
            mi.invert(mb[..., :60], cfg, method=m, seed=0)  # warm-up (kernels, caches)
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            out, sec = timed(
                lambda mb=mb, m=m: mi.invert(mb, cfg, method=m, seed=0), args.repeat, args.device
            )
            peak = (
                torch.cuda.max_memory_allocated() / 2**20 if args.device.startswith("cuda") else float("nan")
            )
            rtf = b * audio_s / sec
            l1s = [l1(out[i], i) for i in range(b)]
            cmp = f"{np.mean(l1s):.3f}" + (f" ({cpu_l1:.3f})" if b == 1 else "")
            rows.append(
                f"| {m} | {b} | {rtf:.1f} | {rtf / cpu_rtf:.1f} | "
                f"{rtf / lib_rtf if lib_rtf else float('nan'):.1f} | {1e4 * sec / (b * audio_s):.1f} | "
                f"{peak:.0f} | {cmp} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join(head + rows) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()

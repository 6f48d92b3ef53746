"""Micro-benchmarks: one Griffin-Lim iteration against the FFT floor, and NNLS against librosa.

1. One iteration of ``fgla`` (and of the mel-refitted ``mfgla``/``magla``) on 10 s of 22.05 kHz
   audio (hifigan-22k-80: 862 frames, n_fft 1024), from the difference of a 60- and a
   10-iteration run (so set-up is not counted), against the FFT floor: ``rfft`` + ``irfft``
   of the same frames.
2. Stage 1 on the same mel: melinvert's ``nnls`` (FISTA) against ``librosa.feature.inverse.
   mel_to_stft`` (its NNLS) and the clipped pseudo-inverse: seconds and the objective
   ``||fb @ P - mel||^2`` relative to the clipped pseudo-inverse's.

Both clocks are reported: the wall clock with the given threads, and the process's CPU time
(robust to other load on a shared machine). Best of ``--repeat``.

Usage: ``python benchmarks/micro.py [--threads 2] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import melinvert as mi
from melinvert import dsp, magnitude, phase
from melinvert.demo import speech_like
from melinvert.dsp import FrameOps, linear_mel, mel_basis_np


def best(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) of ``fn()`` over ``repeat`` runs."""
    walls, cpus = [], []
    fn()
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    dsp.keep_freed_memory()  # as every CPU inversion does (MELINVERT_KEEP_MEMORY=0: malloc's defaults)
    cfg = mi.get_preset("hifigan-22k-80")
    y = speech_like(cfg.sample_rate, seconds=862 * 256 / 22050, seed=0)
    x = torch.from_numpy(y)
    lin = linear_mel(x, cfg)[None]  # (1, 80, T)
    length = cfg.n_samples(lin.shape[-1])
    ops = FrameOps(cfg, length, dtype=torch.float32, device="cpu")
    mag = magnitude.nnls(lin, cfg).transpose(-1, -2).contiguous()
    ang = phase.init_pghi(mag, cfg)
    frames = torch.nn.functional.pad(x[None, :length], (ops.pad, ops.pad), mode="reflect").unfold(
        -1, cfg.n_fft, cfg.hop_length
    )
    floor = best(
        lambda: torch.fft.irfft(torch.fft.rfft(frames, dim=-1), n=cfg.n_fft, dim=-1), args.repeat * 4
    )
    rows = [("FFT floor (rfft + irfft of the frames)", floor)]
    refit = phase.MelRefit(lin.transpose(-1, -2).contiguous(), cfg)
    for name, fn, kw in (
        ("gla", phase.gla, {}),
        ("fgla", phase.fgla, {}),
        ("agla", phase.agla, {}),
        ("mfgla (with mel refit)", phase.fgla, {"refit": refit}),
        ("magla (with mel refit)", phase.agla, {"refit": refit}),
    ):
        t60 = best(lambda fn=fn, kw=kw: fn(mag, ops, ang, n_iter=60, **kw), args.repeat)
        t10 = best(lambda fn=fn, kw=kw: fn(mag, ops, ang, n_iter=10, **kw), args.repeat)
        per = ((t60[0] - t10[0]) / 50, (t60[1] - t10[1]) / 50)
        rows.append((f"one {name} iteration", per))
    print(
        f"10 s of audio at 22.05 kHz ({lin.shape[-1]} frames, n_fft {cfg.n_fft}); torch {torch.__version__}, {args.threads} threads\n"
    )
    print("| operation | wall ms | CPU ms | x FFT floor (wall) | x FFT floor (CPU) |")
    print("|---|---|---|---|---|")
    for name, (w, c) in rows:
        print(f"| {name} | {w * 1000:.2f} | {c * 1000:.2f} | {w / floor[0]:.2f} | {c / floor[1]:.2f} |")

    # ---- stage 1: NNLS
    import librosa

    m_np = lin[0].double().numpy()
    fb = mel_basis_np(cfg)

    def objective(p_: np.ndarray) -> float:
        return float(((fb @ p_ - m_np) ** 2).sum())

    pinv_p = np.maximum(np.linalg.pinv(fb) @ m_np, 0.0)
    base = objective(pinv_p)
    out = []
    lr_t = best(
        lambda: librosa.feature.inverse.mel_to_stft(
            m_np.astype(np.float32), sr=cfg.sample_rate, n_fft=cfg.n_fft, power=1.0, fmax=8000.0
        ),
        max(1, args.repeat // 2),
    )
    lr_p = librosa.feature.inverse.mel_to_stft(
        m_np.astype(np.float32), sr=cfg.sample_rate, n_fft=cfg.n_fft, power=1.0, fmax=8000.0
    )
    out.append(("librosa mel_to_stft (its NNLS)", lr_t, objective(lr_p.astype(np.float64)) / base))
    out.append(("clipped pseudo-inverse (pinv)", best(lambda: magnitude.pinv(lin, cfg), args.repeat), 1.0))
    for n in (20, 32, 36, 60):
        t = best(lambda n=n: magnitude.nnls(lin, cfg, n_iter=n), args.repeat)
        pn = magnitude.nnls(lin, cfg, n_iter=n)[0].double().numpy()
        out.append(
            (
                f"melinvert nnls, {n} iterations" + (" (the stage's default)" if n == 36 else ""),
                t,
                objective(pn) / base,
            )
        )
    print("\n| stage 1 on the same mel | wall ms | CPU ms | objective / clipped pinv's |")
    print("|---|---|---|---|")
    for name, (w, c), rel in out:
        print(f"| {name} | {w * 1000:.1f} | {c * 1000:.1f} | {rel:.2e} |")


if __name__ == "__main__":
    main()

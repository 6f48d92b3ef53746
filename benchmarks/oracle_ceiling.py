"""How far a better magnitude can take the phase stages: the true |STFT| as stage 1.

Stage 1 of every cascade estimates the STFT magnitude from the mel; a learned stage 1 (the
refiner) can at best return the true one. This runs the phase stages of melinvert's
pipelines from the TRUE magnitude of each clip (an oracle no method has) and from the
magnitudes the methods do have (NNLS, the shipped refiner), with the same PGHI start,
iterations and waveform L-BFGS polish, so the ceiling of any learned magnitude is measured,
not guessed. Scores as in ``vs_librosa.py`` (PESQ-WB, STOI, log-mel L1, level, lag); RTF on
the wall clock, stage 1 included (the oracle's is one STFT).

Usage::

    python benchmarks/oracle_ceiling.py [--clips DIR] [--specs oracle:fgla:600:20,refiner:mfgla:300:20]

A spec is ``MAGNITUDE:PHASE:ITERATIONS:LBFGS_ITERATIONS`` with MAGNITUDE one of ``oracle``,
``nnls``, ``refiner``; a phase method starting with ``m`` re-fits to the mel every iteration.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soxr
import torch

import melinvert as mi
import melinvert.neural  # registers the refiner stage
from melinvert import magnitude, optimize, phase
from melinvert.dsp import FrameOps

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vs_librosa import DEFAULT_CLIPS, load_clips, score, summarise  # noqa: E402

SPECS = (
    "oracle:fgla:32:0,oracle:fgla:150:0,oracle:fgla:600:0,oracle:fgla:600:20,"
    "nnls:mfgla:300:20,refiner:mfgla:300:20"
)


def run_spec(spec: str, clips: list, cfg: mi.MelConfig) -> dict:
    mag_name, alg, n_iter, n_opt = spec.split(":")
    rows, seconds, audio_s = [], 0.0, 0.0
    for _, y, _ in clips:
        x = torch.from_numpy(y)
        mel = mi.mel_spectrogram(x, cfg)
        length = cfg.n_samples(mel.shape[-1])
        lin = magnitude.decode_mel(mel, cfg)[None]
        ops = FrameOps(cfg, length, dtype=torch.float32, device="cpu")
        with torch.no_grad():
            t0 = time.perf_counter()
            if mag_name == "oracle":
                xp = torch.nn.functional.pad(x, (0, max(0, length - len(x))))[None, :length]
                mag = ops.analysis(xp).abs()
            else:
                mag = magnitude.MAGNITUDE_METHODS[mag_name][0](lin, cfg).transpose(-1, -2).contiguous()
            angles = phase.INIT_METHODS["pghi"][0](mag, cfg)
            refit = phase.MelRefit(lin.transpose(-1, -2).contiguous(), cfg) if alg.startswith("m") else None
            out = phase.PHASE_METHODS[alg][0](mag, ops, angles, n_iter=int(n_iter), refit=refit)
            if int(n_opt):
                out = optimize.OPTIMIZERS["wave_lbfgs"][0](lin, cfg, out, n_iter=int(n_opt))
            seconds += time.perf_counter() - t0
        audio_s += len(y) / cfg.sample_rate
        rows.append(score(y, out[0].numpy(), cfg.sample_rate, cfg))
    return {**summarise(rows), "rtf": audio_s / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", default=str(DEFAULT_CLIPS))
    p.add_argument("--preset", default="hifigan-22k-80")
    p.add_argument("--specs", default=SPECS)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = mi.get_preset(args.preset)
    clips = []
    for name, y, sr in load_clips(Path(args.clips)):
        y = soxr.resample(y, sr, cfg.sample_rate, "VHQ") if sr != cfg.sample_rate else y
        clips.append((name, y.astype(np.float32), cfg.sample_rate))
    if not clips:
        sys.exit(f"no clips in {args.clips}")
    lines = [
        f"Command: `python benchmarks/oracle_ceiling.py {' '.join(sys.argv[1:])}`  ",
        f"{len(clips)} clips from `{args.clips}`; preset `{cfg.name}`; {args.threads} threads; wall clock.",
        "",
        "| stage 1 | phase stage | iterations | L-BFGS | PESQ-WB | STOI | log-mel L1 | RMS ratio dB | max abs lag | RTF |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in args.specs.split(","):
        a = run_spec(spec, clips, cfg)
        m, alg, n, o = spec.split(":")
        lines.append(
            f"| {m} | pghi + {alg} | {n} | {o} | {a['pesq_wb']:.3f} | {a['stoi']:.4f} | {a['log_mel_l1']:.3f} | "
            f"{a['rms_ratio_db']:+.2f} | {a['max_abs_lag']} | {a['rtf']:.1f} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Seconds each no-reference MOS model of ``melinvert.metrics.mos`` takes per 10 s of audio.

The dev clips (16 kHz after resampling) are scored one by one with each model alone, after a
warm-up that loads it; wall and process CPU time (the CPU time, summed over threads, is what
other load on a shared machine inflates least).

Usage::

    python benchmarks/mos_speed.py [--clips 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from melinvert import metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_librosa import DEFAULT_CLIPS, load_clips


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clips = load_clips(Path(DEFAULT_CLIPS))[: args.clips]
    seconds = sum(y.size / sr for _, y, sr in clips)
    print(f"{len(clips)} clips, {seconds:.1f} s, torch threads {args.threads}")
    print("| model | wall s per 10 s | CPU s per 10 s |\n|---|---|---|")
    for model in metrics.MOS_MODELS:
        _, y, sr = clips[0]
        metrics.mos(y, sr, models=[model])  # load and warm up
        w0, c0 = time.perf_counter(), time.process_time()
        for _, y, sr in clips:
            metrics.mos(y, sr, models=[model])
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(f"| {model} | {10 * wall / seconds:.2f} | {10 * cpu / seconds:.2f} |")


if __name__ == "__main__":
    main()

"""Threads on an idle and on a busy machine: ``default`` on a 5 s clip.

In one process, ``melinvert.invert(mel, cfg, method="default")`` of a 5 s clip (the first
speech clip of ../shared/data/speech, else the project's speech-like signal) is timed with
``torch.set_num_threads(n)`` for n = 1, 2, torch's own default and the CLI's default
(:func:`melinvert.commands.common.default_threads`, evaluated at that moment), first as the
machine is, then with ``--busy`` (default 2) extra CPU-bound processes
(``python -c "while True: pass"``) that the script starts and kills. Each figure is the median
of ``--repeats`` runs after one warm-up; the report gives ratios to the idle one-thread time.

Usage: ``python benchmarks/threads.py [--busy 2] [--repeats 3] [--seconds 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

SPEECH = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "speech"


def clip(cfg, seconds: float) -> tuple[np.ndarray, str]:
    from melinvert.demo import speech_like
    from melinvert.io import load_audio

    files = sorted(SPEECH.glob("*.wav")) if SPEECH.is_dir() else []
    for f in files:
        y, _, _ = load_audio(f, cfg.sample_rate)
        if y.shape[0] >= seconds * cfg.sample_rate:
            return y[: int(seconds * cfg.sample_rate)], f.name
    return speech_like(cfg.sample_rate, seconds=seconds, seed=0), "speech_like(seed=0)"


def timed(mel, cfg, threads: int, repeats: int) -> tuple[float, float]:
    import melinvert as mi

    torch.set_num_threads(threads)
    mi.invert(mel[:, :40], cfg, method="default")  # warm-up at this thread count
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mi.invert(mel, cfg, method="default")
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def measure(mel, cfg, counts: dict[str, int | None], repeats: int) -> dict[str, tuple[int, float, float]]:
    from melinvert.commands.common import default_threads

    out = {}
    for label, n in counts.items():
        k = default_threads() if n is None else n
        out[label] = (k, *timed(mel, cfg, k, repeats))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", type=int, default=2, help="extra CPU-bound processes for the busy case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    import melinvert as mi

    cfg = mi.get_preset("hifigan-22k-80")
    y, name = clip(cfg, args.seconds)
    mel = mi.mel_spectrogram(y, cfg)
    torch_default = torch.get_num_threads()
    counts: dict[str, int | None] = {"1": 1}
    if torch_default != 2:
        counts["2"] = 2
    counts[f"torch default ({torch_default})"] = torch_default
    counts["CLI default"] = None
    cores = len(os.sched_getaffinity(0))
    print(
        f"clip {name}, {args.seconds:g} s, hifigan-22k-80, method default; {cores} cores; torch {torch.__version__}"
    )
    load0 = os.getloadavg()[0]
    idle = measure(mel, cfg, counts, args.repeats)
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        time.sleep(2.0)
        load1 = os.getloadavg()[0]
        busy = measure(mel, cfg, counts, args.repeats)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    base = idle["1"][1]
    print(
        f"load average (1 min) at the start: idle {load0:.1f}, busy {load1:.1f}; median (min) of {args.repeats}"
    )
    print(
        f"| threads | as is: s | / as-is 1 thread | +{args.busy} busy: s | / as-is 1 thread | busy / as is |"
    )
    print("|---|---|---|---|---|---|")
    for label in counts:
        (ki, ti, mi), (kb, tb, mb) = idle[label], busy[label]
        threads = label if label[0].isdigit() else f"{label}: {ki} as is, {kb} busy"
        print(
            f"| {threads} | {ti:.2f} ({mi:.2f}) | {ti / base:.2f} | {tb:.2f} ({mb:.2f}) | {tb / base:.2f} "
            f"| {tb / ti:.2f} ({mb / mi:.2f}) |"
        )


if __name__ == "__main__":
    main()

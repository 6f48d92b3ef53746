"""Peak memory of ``melinvert invert`` on 1 minute and on 60 minutes of audio.

The mel of one minute of the project's speech-like signal (hifigan-22k-80) is tiled to 60
minutes and saved as ``.npy``; each file is inverted by the CLI in a fresh process, which
reports its own peak resident set size (``ru_maxrss``). The target: 60 minutes peak no more
than 200 MB above 1 minute, since the CLI reads the mel memory-mapped and writes the WAV block
by block.

Usage: ``python benchmarks/long_audio.py [--minutes 60] [--method fast]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from melinvert.cli import main
t0 = time.perf_counter()
status = main(sys.argv[1:])
print(json.dumps({"status": status, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(mel_path: Path, out: Path, method: str) -> dict:
    cmd = [sys.executable, "-c", CHILD, "invert", str(mel_path), "-o", str(out), "--preset", "hifigan-22k-80",
           "--method", method, "--quiet", "--overwrite"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--method", default="fast")
    args = p.parse_args()
    import melinvert as mi
    from melinvert.demo import speech_like

    cfg = mi.get_preset("hifigan-22k-80")
    one = mi.mel_spectrogram(speech_like(cfg.sample_rate, seconds=60.0, seed=0), cfg)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        short, long_ = d / "one_minute.npy", d / f"{args.minutes}_minutes.npy"
        np.save(short, one)
        np.save(long_, np.tile(one, (1, args.minutes)))
        del one
        rows = []
        for path in (short, long_):
            t0 = time.perf_counter()
            r = run(path, path.with_suffix(".wav"), args.method)
            audio_s = (
                mi.get_preset("hifigan-22k-80").n_samples(np.load(path, mmap_mode="r").shape[-1])
                / cfg.sample_rate
            )
            rows.append(
                (path.name, path.stat().st_size / 2**20, audio_s, r["peak_rss_mb"], time.perf_counter() - t0)
            )
    print(f"`python benchmarks/long_audio.py --minutes {args.minutes} --method {args.method}`\n")
    print("| mel file | mel MB | audio min | peak RSS MB | wall s |")
    print("|---|---|---|---|---|")
    for name, mb, audio_s, rss, wall in rows:
        print(f"| {name} | {mb:.1f} | {audio_s / 60:.1f} | {rss:.0f} | {wall:.0f} |")
    print(f"\nPeak RSS difference: {rows[1][3] - rows[0][3]:.0f} MB (target <= 200 MB).")


if __name__ == "__main__":
    main()

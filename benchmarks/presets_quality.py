"""One method on every preset's mel of the same clips: does quality hold across conventions?

Each clip is resampled (soxr VHQ) to the preset's rate, its mel computed exactly as the
preset's project does, inverted with ``--method``, and scored against the resampled clip
(PESQ-WB, STOI at 16 kHz, log-mel L1 in the preset's config, RMS ratio, largest lag).

Usage::

    python benchmarks/presets_quality.py [--method default] [--presets hifigan-22k-80,whisper-16k-80]
        [--clips DIR] [--threads 2]

To compare two versions of melinvert, run it from each checkout (``git worktree add``) with
``PYTHONPATH=<checkout>/src``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soxr
import torch

import melinvert as mi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from vs_librosa import DEFAULT_CLIPS, load_clips, score, summarise  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="default")
    p.add_argument("--presets", default=",".join(mi.list_presets()))
    p.add_argument("--clips", default=str(DEFAULT_CLIPS))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clips = load_clips(Path(args.clips))
    if not clips:
        sys.exit(f"no clips in {args.clips}")
    lines = [
        f"`python benchmarks/presets_quality.py {' '.join(sys.argv[1:])}` "
        f"(melinvert from `{Path(mi.__file__).parent}`; {len(clips)} clips)",
        "",
        "| preset | PESQ-WB | STOI | log-mel L1 | RMS ratio dB | max abs lag |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in args.presets.split(","):
        cfg = mi.get_preset(name)
        rows = []
        for _, y, sr in clips:
            y = soxr.resample(y, sr, cfg.sample_rate, "VHQ") if sr != cfg.sample_rate else y
            y = y.astype(np.float32)
            est = mi.invert(mi.mel_spectrogram(y, cfg), cfg, method=args.method, seed=0)
            rows.append(score(y, est, cfg.sample_rate, cfg))
        a = summarise(rows)
        lines.append(
            f"| {name} | {a['pesq_wb']:.3f} | {a['stoi']:.4f} | {a['log_mel_l1']:.3f} | "
            f"{a['rms_ratio_db']:+.2f} | {a['max_abs_lag']} |"
        )
        print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""melinvert's methods against librosa's ``mel_to_audio``, side by side in one process.

For each clip, librosa runs as a librosa user would: ``librosa.load`` at 22.05 kHz,
``librosa.feature.melspectrogram`` with its defaults, ``librosa.feature.inverse.mel_to_audio``
with its defaults (NNLS + 32 fast Griffin-Lim iterations). Each melinvert method inverts the
preset's mel of the same clip. Every output is scored against the audio its mel was made
from: PESQ-WB and STOI (16 kHz), log-mel L1 in the preset's config, RMS ratio, peak and the
estimated lag (a shifted output would show here, not hide behind PESQ).

Timing: seconds of the inversion alone (the mel is given), after one warm-up, on the wall
clock or (``--clock cpu``, with ``--threads 1``) the process's CPU time, which other load on
a shared machine does not inflate; the real-
time factor RTF = audio seconds / wall seconds; ``x librosa`` = method RTF / librosa RTF over
the same clips in the same run, which is what the targets compare (absolute times on shared
machines are noise).

Usage::

    python benchmarks/vs_librosa.py [--clips DIR] [--preset hifigan-22k-80]
        [--methods default,fast,nnls+fgla] [--threads 2] [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

import melinvert as mi
from melinvert import metrics

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "speech"


def synth_clips(sr: int = 22050) -> list[tuple[str, np.ndarray, int]]:
    """Speech-like test signals when no real clips are at hand (see ``melinvert demo``)."""
    from melinvert.demo import speech_like

    return [(f"synth{i}", speech_like(sr, seconds=4.0, seed=i), sr) for i in range(3)]


def load_clips(folder: Path) -> list[tuple[str, np.ndarray, int]]:
    out = []
    for fn in sorted(glob.glob(str(folder / "*.wav")) + glob.glob(str(folder / "*.flac"))):
        y, sr = sf.read(fn, dtype="float64", always_2d=True)
        out.append((Path(fn).stem, y.mean(axis=1), sr))
    return out


CLOCK = time.perf_counter


def timed(fn, repeat: int):
    """(result, best seconds over ``repeat`` runs) on the chosen clock."""
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = CLOCK()
        out = fn()
        best = min(best, CLOCK() - t0)
    return out, best


def score(ref: np.ndarray, est: np.ndarray, sr: int, cfg: mi.MelConfig) -> dict:
    s = metrics.score(ref, est, sr, config=cfg)
    return {k: s[k] for k in ("pesq_wb", "stoi", "log_mel_l1", "rms_ratio_db", "peak", "lag_samples")}


def summarise(rows: list[dict]) -> dict:
    """Means of PESQ-WB, STOI, log-mel L1 and RMS ratio over clips (PESQ's unscorable ones
    left out), the largest peak and the largest absolute lag."""
    mean = {
        k: float(np.mean([r[k] for r in rows if r[k] is not None]))
        for k in ("pesq_wb", "stoi", "log_mel_l1", "rms_ratio_db")
    }
    return {
        **mean,
        "peak": max(r["peak"] for r in rows),
        "max_abs_lag": max(abs(r["lag_samples"]) for r in rows),
    }


def models_for(method: str, models: list[str] | None) -> list[str] | None:
    """The ``--model`` checkpoints whose kind the method uses (others would be refused)."""
    if not models:
        return None
    from melinvert.neural import read_record
    from melinvert.pipeline import parse_method

    kinds = parse_method(method).models
    return [m for m in models if read_record(m)["kind"] in kinds] or None


def run(args: argparse.Namespace) -> str:
    import librosa

    global CLOCK
    torch.set_num_threads(args.threads)
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = mi.get_preset(args.preset)
    folder = Path(args.clips)
    clips = load_clips(folder) if folder.is_dir() else synth_clips()
    if args.limit:
        clips = clips[: args.limit]
    methods = [m for m in args.methods.split(",") if m]
    models = getattr(args, "model", None) or None
    rows: dict[str, list[dict]] = {"librosa mel_to_audio": []}
    for m in methods:
        rows[m] = []
    for name, y, sr in clips:
        # librosa, as its users run it
        y_lr = librosa.resample(y, orig_sr=sr, target_sr=22050, res_type="soxr_vhq") if sr != 22050 else y
        y_lr = y_lr.astype(np.float32)
        m_lr = librosa.feature.melspectrogram(y=y_lr, sr=22050)
        librosa.feature.inverse.mel_to_audio(m_lr[:, :20], sr=22050)  # warm-up
        est, sec = timed(lambda m_lr=m_lr: librosa.feature.inverse.mel_to_audio(m_lr, sr=22050), args.repeat)
        rows["librosa mel_to_audio"].append(
            {
                "clip": name,
                "seconds": sec,
                "audio_s": len(y_lr) / 22050,
                **score(
                    y_lr, est, 22050, cfg if cfg.sample_rate == 22050 else mi.metrics.analysis_config(22050)
                ),
            }
        )
        # melinvert, on the preset's mel of the same clip
        y_mi = soxr.resample(y, sr, cfg.sample_rate, "VHQ") if sr != cfg.sample_rate else y
        y_mi = y_mi.astype(np.float32)
        mel = mi.mel_spectrogram(y_mi, cfg)
        for m in methods:
            method, _, it = m.partition(":")
            use = models_for(method, models)

            def inv(
                mel: np.ndarray, method: str = method, n_iter: int | None = int(it) if it else None, use=use
            ):
                return mi.invert(mel, cfg, method=method, n_iter=n_iter, seed=0, model=use)

            inv(mel[:, : max(cfg.min_frames, 40)])  # warm-up
            est, sec = timed(lambda inv=inv, mel=mel: inv(mel), args.repeat)
            rows[m].append(
                {
                    "clip": name,
                    "seconds": sec,
                    "audio_s": len(y_mi) / cfg.sample_rate,
                    **score(y_mi, est, cfg.sample_rate, cfg),
                }
            )
        print(f"{name}: done", file=sys.stderr, flush=True)

    def agg(rs: list[dict]) -> dict:
        audio = sum(r["audio_s"] for r in rs)
        wall = sum(r["seconds"] for r in rs)
        return {**summarise(rs), "rtf": audio / wall, "ms_per_10s": 1000 * wall / audio * 10}

    base = agg(rows["librosa mel_to_audio"])
    lines = [
        f"Command: `python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`  ",
        f"Clips: {len(clips)} from `{folder if folder.is_dir() else 'synthesised'}` "
        f"({sum(r['audio_s'] for r in rows['librosa mel_to_audio']):.1f} s); preset `{cfg.name}`; "
        f"torch {torch.__version__}, librosa {librosa.__version__}, {args.threads} threads on "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}); best of {args.repeat}; "
        f"clock: {'CPU time of this process (robust to other load on the machine)' if args.clock == 'cpu' else 'wall time'}.",
        "",
        "| method | PESQ-WB | STOI | log-mel L1 | RMS ratio dB | peak | max abs lag | ms per 10 s | RTF | x librosa RTF | PESQ - librosa |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, rs in rows.items():
        a = agg(rs)
        lines.append(
            f"| {m} | {a['pesq_wb']:.3f} | {a['stoi']:.4f} | {a['log_mel_l1']:.3f} | {a['rms_ratio_db']:+.2f} | "
            f"{a['peak']:.2f} | {a['max_abs_lag']} | {a['ms_per_10s']:.0f} | {a['rtf']:.1f} | "
            f"{a['rtf'] / base['rtf']:.1f} | {a['pesq_wb'] - base['pesq_wb']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", default=str(DEFAULT_CLIPS))
    p.add_argument("--preset", default="hifigan-22k-80")
    p.add_argument(
        "--methods", default="default,fast", help="comma-separated; METHOD:N runs it with n_iter=N"
    )
    p.add_argument(
        "--model", action="append", help="checkpoint or run folder for learned stages (repeatable)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or the process's CPU time (use with --threads 1 on a busy machine)",
    )
    p.add_argument("--write", default="", help="append the table to this markdown file")
    args = p.parse_args()
    table = run(args)
    print(table)
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + table)


if __name__ == "__main__":
    main()

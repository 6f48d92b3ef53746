"""Stage-3 optimisers (``stft_gd``, ``wave_lbfgs``, ``joint``) against the cascade, on real speech.

Two parts, both written to ``benchmarks/optimizers.md`` (and the curves to
``benchmarks/optimizers.png``):

``curves``
    For each curve spec and clip, the estimate at every checkpoint iteration is scored (PESQ-WB,
    STOI, log-mel L1, RMS ratio, lag) and the clock read (excluding the scoring), so that
    quality can be read against iterations and against time. A spec is either a cascade,
    e.g. ``nnls+pghi+magla`` (its own stage-2 iterations are the curve), or
    ``START>OPTIMISER[:key=value;...]``: the optimiser started from ``invert(mel,
    method=START)`` (``START`` may end in ``@N`` for N stage-2 iterations; a bare
    ``OPTIMISER`` means ``default>OPTIMISER``). Keyword values are Python literals, e.g.
    ``default>stft_gd:lr=0.05;warmup=30``.
``table``
    ``melinvert.invert`` with each named method on every clip, librosa's ``mel_to_audio`` (its
    own default mel, then its defaults, as librosa users run it) in the same process run,
    scored the same way; time is the best of ``--repeat`` runs on the chosen clock, and ``x
    librosa RTF`` is the ratio of real-time factors over the same clips.

Usage::

    python benchmarks/optimizers.py curves --limit 4
    python benchmarks/optimizers.py table --methods default,stft_gd,wave_lbfgs,joint,quality
    python benchmarks/optimizers.py all --threads 1 --clock cpu

With ``--clock cpu --threads 1`` time is the process's CPU time with one torch thread (what
``benchmarks/RESULTS.md`` reports: other jobs on a shared machine inflate wall time but not
this); ``--clock wall`` is wall time with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import ast
import glob
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch

import melinvert as mi
from melinvert import metrics
from melinvert.magnitude import decode_mel
from melinvert.optimize import OPTIMIZERS

ROOT = Path(__file__).resolve().parent
DEFAULT_CLIPS = ROOT.parent.parent / "shared" / "data" / "speech"
SCORE_KEYS = ("pesq_wb", "stoi", "log_mel_l1", "rms_ratio_db", "lag_samples")
DEFAULT_CURVES = (
    "nnls+pghi+magla",
    "nnls+pghi+mfgla",
    "default>stft_gd",
    "default>wave_lbfgs",
    "default>joint",
)
DEFAULT_CHECKPOINTS = "0,5,10,20,40,80,160,320"


# ---------------------------------------------------------------------- clips, clocks, scores


def load_clips(folder: Path, limit: int, sr: int, only: str = "") -> list[tuple[str, np.ndarray]]:
    """``(name, float32 audio at sr)`` for each WAV/FLAC in ``folder`` (soxr VHQ resampling)."""
    out = []
    files = sorted(glob.glob(str(folder / "*.wav")) + glob.glob(str(folder / "*.flac")))
    if only:
        files = [f for f in files if Path(f).stem in only.split(",")]
    for fn in files[:limit] if limit else files:
        y, rate = sf.read(fn, dtype="float64", always_2d=True)
        y = y.mean(axis=1)
        if rate != sr:
            y = soxr.resample(y, rate, sr, quality="VHQ")
        out.append((Path(fn).stem, y.astype(np.float32)))
    return out


def score(ref: np.ndarray, est: Any, cfg: mi.MelConfig) -> dict[str, float]:
    """PESQ-WB, STOI, log-mel L1 (in ``cfg``), RMS ratio (dB) and lag (samples) of one estimate."""
    est = np.asarray(est, dtype=np.float64).reshape(-1)
    s = metrics.score(ref, est, cfg.sample_rate, config=cfg)
    return {k: s[k] for k in SCORE_KEYS}


def parse_spec(spec: str) -> tuple[str, int | None, str | None, dict[str, Any]]:
    """``START[@N]>OPT[:k=v;...]`` or a cascade -> (start method, its n_iter, optimiser, kwargs)."""
    if ">" not in spec and spec.split(":")[0] in OPTIMIZERS:
        spec = "default>" + spec
    if ">" not in spec:
        return spec, None, None, {}
    start, opt = spec.split(">", 1)
    n_start = None
    if "@" in start:
        start, n = start.split("@")
        n_start = int(n)
    kwargs: dict[str, Any] = {}
    if ":" in opt:
        opt, kv = opt.split(":", 1)
        for item in kv.split(";"):
            k, v = item.split("=", 1)
            kwargs[k.strip()] = ast.literal_eval(v.strip())
    if opt not in OPTIMIZERS:
        raise SystemExit(f"unknown optimiser {opt!r} in {spec!r}; known: {', '.join(OPTIMIZERS)}")
    return start, n_start, opt, kwargs


# ---------------------------------------------------------------------- curves


def split_top(text: str) -> list[str]:
    """Split at commas outside brackets: ``a,b:w=(1,2)`` -> ``["a", "b:w=(1,2)"]``."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [s for s in [*out, cur] if s]


def curve_one(
    spec: str, y: np.ndarray, mel: np.ndarray, cfg: mi.MelConfig, checkpoints: list[int], clock: Callable
) -> list[dict[str, float]]:
    """Scores and elapsed seconds at each checkpoint of one spec on one clip."""
    start, n_start, opt, kwargs = parse_spec(spec)
    last = max(checkpoints)
    snaps: dict[int, tuple[np.ndarray, float]] = {}
    paused = [0.0]  # seconds spent in the callback's own bookkeeping

    def grab(t0: float, offset: int) -> Callable:
        def cb(i: int, x: torch.Tensor, loss: torch.Tensor) -> bool:
            c0 = clock()
            i += offset
            if i in checkpoints:
                snaps[i] = (x.detach().reshape(-1).double().numpy().copy(), c0 - t0 - paused[0])
            paused[0] += clock() - c0
            return False

        return cb

    t0 = clock()
    if opt is None:  # a cascade: its own stage-2 iterations are the curve (callback i = i+1 done)
        mi.invert(mel, cfg, method=start, n_iter=last, callback=grab(t0, 1))
    else:
        x0 = mi.invert(mel, cfg, method=start, n_iter=n_start)
        lin = decode_mel(torch.from_numpy(mel)[None], cfg)
        OPTIMIZERS[opt][0](lin, cfg, torch.from_numpy(x0)[None], n_iter=last, callback=grab(t0, 0), **kwargs)
    rows = []
    for i in checkpoints:
        if i in snaps:
            est, sec = snaps[i]
            rows.append({"iter": i, "seconds": sec, **score(y, est, cfg)})
    return rows


def run_curves(args: argparse.Namespace, clips, cfg, clock) -> tuple[str, dict]:
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",")})
    specs = split_top(args.curves)
    audio_s = sum(len(y) for _, y in clips) / cfg.sample_rate
    curves: dict[str, dict[int, dict[str, float]]] = {}
    for spec in specs:  # warm-up (lazy initialisations, caches) on 1 s, not timed
        y0 = clips[0][1][: cfg.sample_rate]
        curve_one(spec, y0, mi.mel_spectrogram(y0, cfg), cfg, [0, 2], clock)
    for spec in specs:
        per_clip = []
        for name, y in clips:
            mel = mi.mel_spectrogram(y, cfg)
            per_clip.append(curve_one(spec, y, mel, cfg, checkpoints, clock))
            print(f"curve {spec} {name}: done", file=sys.stderr, flush=True)
        table: dict[int, dict[str, float]] = {}
        for i in checkpoints:
            rs = [r for rows in per_clip for r in rows if r["iter"] == i]
            if len(rs) != len(per_clip):
                continue
            agg = {k: float(np.mean([r[k] for r in rs if r[k] is not None])) for k in SCORE_KEYS}
            agg["max_abs_lag"] = max(abs(r["lag_samples"]) for r in rs)
            agg["ms_per_10s"] = 1e4 * sum(r["seconds"] for r in rs) / audio_s
            # the clip that lost most PESQ against its own first checkpoint (the start)
            agg["worst_gain"] = min(r["pesq_wb"] - rows[0]["pesq_wb"] for r, rows in zip(rs, per_clip))
            table[i] = agg
        curves[spec] = table
    lines = [
        f"Curves on {len(clips)} clips ({audio_s:.1f} s): mean over clips at each iteration; "
        'time (ms per 10 s of audio) includes the start; "worst clip\'s PESQ change" is the '
        "smallest per-clip change against the spec's first checkpoint (for an optimiser, its start).",
        "",
        "| spec | iter | PESQ-WB | worst clip's PESQ change | STOI | log-mel L1 | RMS ratio dB | max abs lag | ms per 10 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, table in curves.items():
        for i, a in table.items():
            lines.append(
                f"| {spec} | {i} | {a['pesq_wb']:.3f} | {a['worst_gain']:+.3f} | {a['stoi']:.4f} | {a['log_mel_l1']:.4f} | "
                f"{a['rms_ratio_db']:+.2f} | {a['max_abs_lag']} | {a['ms_per_10s']:.0f} |"
            )
    return "\n".join(lines) + "\n", curves


def plot_curves(curves: dict, path: Path, librosa_ms: float | None, title: str) -> None:
    """Four panels: PESQ-WB vs iteration (all, and zoomed on the top), log-mel L1 vs iteration,
    PESQ-WB vs time (zoomed), one line per spec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter

    fig, axes = plt.subplots(1, 4, figsize=(20, 5))
    tops = []
    for spec, table in curves.items():
        its = list(table)
        xs = [max(i, 0.7) for i in its]  # iteration 0 on a log axis
        pesq = [table[i]["pesq_wb"] for i in its]
        tops += pesq
        l1 = [table[i]["log_mel_l1"] for i in its]
        ms = [table[i]["ms_per_10s"] for i in its]
        for ax in axes[:2]:
            ax.plot(xs, pesq, marker="o", ms=3, label=spec)
        axes[2].plot(xs, l1, marker="o", ms=3, label=spec)
        axes[3].plot(ms, pesq, marker="o", ms=3, label=spec)
    it_label = "iteration (0 drawn at 0.7)"
    axes[0].set(xscale="log", xlabel=it_label, ylabel="PESQ-WB", title="PESQ-WB vs iteration")
    hi = max(tops) + 0.05
    axes[1].set(xscale="log", xlabel=it_label, ylabel="PESQ-WB", title="the same, top", ylim=(hi - 0.75, hi))
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel=it_label,
        ylabel="log-mel L1 (nepers)",
        title="log-mel L1 vs iteration",
    )
    axes[3].set(
        xscale="log",
        xlabel="time per 10 s of audio (ms)",
        ylabel="PESQ-WB",
        title="PESQ-WB vs time (top)",
        ylim=(hi - 1.0, hi),
    )
    axes[3].xaxis.set_minor_formatter(NullFormatter())
    axes[3].xaxis.set_major_locator(LogLocator(base=10))
    if librosa_ms:
        axes[3].axvline(librosa_ms, color="k", ls="--", lw=1, label="librosa mel_to_audio's time")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[3].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------- table


def librosa_invert(y: np.ndarray, sr: int) -> Callable[[], np.ndarray]:
    """librosa as its users call it: its default mel, then ``mel_to_audio`` with defaults."""
    import librosa

    mel = librosa.feature.melspectrogram(y=y, sr=sr)
    return lambda: np.asarray(librosa.feature.inverse.mel_to_audio(mel, sr=sr), dtype=np.float32)


def timed(fn: Callable[[], Any], repeat: int, clock: Callable) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = clock()
        out = fn()
        best = min(best, clock() - t0)
    return out, best


def run_table(args: argparse.Namespace, clips, cfg, clock) -> tuple[str, float]:
    methods = [m for m in args.methods.split(",") if m]
    rows: dict[str, list[dict]] = {"librosa mel_to_audio": [], **{m: [] for m in methods}}
    for name, y in clips:
        mel = mi.mel_spectrogram(y, cfg)
        mi.invert(mel[:, : max(cfg.min_frames, 40)], cfg)  # warm-up
        # interleave the methods and librosa so that a burst of load hits them alike
        for rep in range(args.repeat):
            fn = librosa_invert(y, cfg.sample_rate)
            est, sec = timed(fn, 1, clock)
            if rep == 0:
                rows["librosa mel_to_audio"].append(
                    {
                        "clip": name,
                        "seconds": sec,
                        "audio_s": len(y) / cfg.sample_rate,
                        **score(
                            y,
                            est[: len(y)] if len(est) >= len(y) else np.pad(est, (0, len(y) - len(est))),
                            cfg,
                        ),
                    }
                )
            else:
                r = rows["librosa mel_to_audio"][-1]
                r["seconds"] = min(r["seconds"], sec)
            for m in methods:
                est, sec = timed(lambda m=m, mel=mel: mi.invert(mel, cfg, method=m, seed=0), 1, clock)
                if rep == 0:
                    rows[m].append(
                        {
                            "clip": name,
                            "seconds": sec,
                            "audio_s": len(y) / cfg.sample_rate,
                            **score(y, est, cfg),
                        }
                    )
                else:
                    rows[m][-1]["seconds"] = min(rows[m][-1]["seconds"], sec)
        print(f"table {name}: done", file=sys.stderr, flush=True)

    def agg(rs: list[dict]) -> dict:
        audio = sum(r["audio_s"] for r in rs)
        wall = sum(r["seconds"] for r in rs)
        mean = {k: float(np.mean([r[k] for r in rs if r[k] is not None])) for k in SCORE_KEYS}
        return {
            **mean,
            "max_abs_lag": max(abs(r["lag_samples"]) for r in rs),
            "rtf": audio / wall,
            "ms_per_10s": 1e4 * wall / audio,
        }

    base = agg(rows["librosa mel_to_audio"])
    ref = agg(rows["default"]) if "default" in rows else None
    lines = [
        "| method | PESQ-WB | STOI | log-mel L1 | RMS ratio dB | max abs lag | ms per 10 s | RTF | x librosa RTF | PESQ - librosa | PESQ - default |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, rs in rows.items():
        a = agg(rs)
        vs_def = f"{a['pesq_wb'] - ref['pesq_wb']:+.3f}" if ref else "-"
        lines.append(
            f"| {m} | {a['pesq_wb']:.3f} | {a['stoi']:.4f} | {a['log_mel_l1']:.4f} | {a['rms_ratio_db']:+.2f} | "
            f"{a['max_abs_lag']} | {a['ms_per_10s']:.0f} | {a['rtf']:.2f} | {a['rtf'] / base['rtf']:.2f} | "
            f"{a['pesq_wb'] - base['pesq_wb']:+.3f} | {vs_def} |"
        )
    per_clip = [
        "",
        "Per clip PESQ-WB:",
        "",
        "| clip | " + " | ".join(rows) + " |",
        "|---" * (len(rows) + 1) + "|",
    ]
    for j, (name, _) in enumerate(clips):
        per_clip.append(f"| {name} | " + " | ".join(f"{rows[m][j]['pesq_wb']:.3f}" for m in rows) + " |")
    return "\n".join(lines + per_clip) + "\n", base["ms_per_10s"]


# ---------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=("curves", "table", "all"))
    p.add_argument("--clips", default=str(DEFAULT_CLIPS))
    p.add_argument("--limit", type=int, default=0, help="first N clips only (0: all)")
    p.add_argument("--only", default="", help="comma-separated clip names (file stems) to use")
    p.add_argument("--preset", default="hifigan-22k-80")
    p.add_argument("--curves", default=",".join(DEFAULT_CURVES), help="comma-separated curve specs")
    p.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS)
    p.add_argument("--methods", default="default,stft_gd,wave_lbfgs,joint,quality")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=("cpu", "wall"), default="wall")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "optimizers.md"))
    p.add_argument("--png", default=str(ROOT / "optimizers.png"), help="'' to draw no figure")
    p.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    cfg = mi.get_preset(args.preset)
    clips = load_clips(Path(args.clips), args.limit, cfg.sample_rate, args.only)
    audio_s = sum(len(y) for _, y in clips) / cfg.sample_rate
    import librosa

    head = [
        f"Command: `python benchmarks/optimizers.py {' '.join(sys.argv[1:])}`  ",
        f"Clips: {len(clips)} from `{args.clips}` ({audio_s:.1f} s); preset `{cfg.name}`; torch "
        f"{torch.__version__}, librosa {librosa.__version__}, {args.threads} torch thread(s) on "
        f"{os.cpu_count()} cores ({platform.machine()}); clock: "
        f"{'CPU time of this process' if args.clock == 'cpu' else 'wall time'}; best of {args.repeat}.",
        "",
    ]
    body = []
    librosa_ms = None
    if args.part in ("table", "all"):
        table, librosa_ms = run_table(args, clips, cfg, clock)
        body += ["### Table", "", table]
    if args.part in ("curves", "all"):
        text, curves = run_curves(args, clips, cfg, clock)
        body += ["### Curves", "", text]
        if args.png:
            plot_curves(curves, Path(args.png), librosa_ms, " ".join(head[1:2])[:200])
    out = "\n".join(head + body)
    print(out)
    with open(args.out, "a" if args.append else "w") as fh:
        fh.write(("\n" if args.append else "") + out)


if __name__ == "__main__":
    main()

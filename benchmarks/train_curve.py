"""Learned stages: validation metrics against training minutes, and the methods side by side.

Curves (read from the ``log.jsonl`` that ``melinvert train`` writes in each run folder)::

    python benchmarks/train_curve.py RUN_DIR [RUN_DIR ...] [--write docs/models/curve.md]

prints one markdown table per run: step, training minutes, training loss (a moving average),
validation loss, log-mel L1, spectral convergence and PESQ-WB of the validation method
(``val_method`` in the run's ``last.json``), the best row marked.

Comparison with librosa in one process (same clips, same machine, same moment)::

    python benchmarks/train_curve.py --compare --methods default,learned,nnls+pghi+mfgla:100,cnn_vocoder \\
        --model runs/degli --model runs/cnn_vocoder [--clips DIR] [--threads 2]

(``METHOD:N`` runs the method with ``n_iter=N``.)

librosa runs as ``benchmarks/vs_librosa.py`` runs it (as its users would: its own mel
defaults, ``mel_to_audio`` with NNLS and 32 fast Griffin-Lim iterations); each melinvert
method inverts the preset's mel of the same clip, with the checkpoints given by ``--model``
(learned stages without one use the shipped weights). Scores: PESQ-WB, STOI, log-mel L1 in
the preset's config, RMS ratio, the largest lag; RTF = audio seconds / wall seconds of the
inversion alone (or the process's CPU time with ``--clock cpu``), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def curve(run: Path) -> str:
    """Markdown table of one run's validations."""
    log = run / "log.jsonl"
    if not log.is_file():
        raise SystemExit(f"{log} does not exist: is {run} a 'melinvert train' run folder?")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    record = json.loads((run / "last.json").read_text()) if (run / "last.json").is_file() else {}
    train = record.get("train", {})
    args = train.get("args", {})
    best = min(rows, key=lambda r: r["val_loss"]) if rows else None
    head = [
        f"### {run.name}: {record.get('kind', '?')}, {train.get('parameters', '?'):,} parameters"
        if isinstance(train.get("parameters"), int)
        else f"### {run.name}",
        "",
        f"Validation: `{args.get('val_method', '?')}` ({args.get('val_n_iter', '?')} iterations), "
        f"batch {args.get('batch_size', '?')} x {args.get('crop_frames', '?')} frames, lr {args.get('lr', '?')}, "
        f"{train.get('data', {}).get('train', {}).get('minutes', '?')} min of training audio.",
        "",
        "| step | minutes | train loss | val loss | log-mel L1 | spectral conv. | PESQ-WB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mark = " **best**" if r is best else ""
        pesq = f"{r['pesq_wb']:.3f}" if r.get("pesq_wb") is not None else "n/a"
        head.append(
            f"| {r['step']}{mark} | {r['minutes']:.1f} | {r['train_loss']:.4f} | {r['val_loss']:.4f} | "
            f"{r['log_mel_l1']:.4f} | {r['spectral_convergence']:.4f} | {pesq} |"
        )
    return "\n".join(head) + "\n"


def compare(args: argparse.Namespace) -> str:
    """The methods and librosa on the same clips, as one markdown table."""
    import librosa
    import soxr
    import torch

    import melinvert as mi

    sys.path.insert(0, str(HERE))
    import vs_librosa
    from vs_librosa import load_clips, score, synth_clips, timed

    vs_librosa.CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter

    torch.set_num_threads(args.threads)
    cfg = mi.get_preset(args.preset)
    folder = Path(args.clips)
    clips = load_clips(folder) if folder.is_dir() else synth_clips()
    if args.limit:
        clips = clips[: args.limit]
    methods = [m for m in args.methods.split(",") if m]
    models = args.model or None
    rows: dict[str, list[dict]] = {"librosa mel_to_audio": [], **{m: [] for m in methods}}
    for name, y, sr in clips:
        y_lr = librosa.resample(y, orig_sr=sr, target_sr=22050, res_type="soxr_vhq") if sr != 22050 else y
        y_lr = y_lr.astype(np.float32)
        m_lr = librosa.feature.melspectrogram(y=y_lr, sr=22050)
        librosa.feature.inverse.mel_to_audio(m_lr[:, :20], sr=22050)
        est, sec = timed(lambda m_lr=m_lr: librosa.feature.inverse.mel_to_audio(m_lr, sr=22050), args.repeat)
        ref_cfg = cfg if cfg.sample_rate == 22050 else mi.metrics.analysis_config(22050)
        rows["librosa mel_to_audio"].append(
            {"clip": name, "seconds": sec, "audio_s": len(y_lr) / 22050, **score(y_lr, est, 22050, ref_cfg)}
        )
        y_mi = soxr.resample(y, sr, cfg.sample_rate, "VHQ") if sr != cfg.sample_rate else y
        y_mi = y_mi.astype(np.float32)
        mel = mi.mel_spectrogram(y_mi, cfg)
        for m in methods:
            method, _, it = m.partition(":")
            n_iter = int(it) if it else None
            use = _models_for(method, models)

            def run(
                mel: np.ndarray, method: str = method, n_iter: int | None = n_iter, use: list | None = use
            ):
                return mi.invert(mel, cfg, method=method, n_iter=n_iter, seed=0, model=use)

            run(mel[:, : max(cfg.min_frames, 40)])
            est, sec = timed(lambda run=run, mel=mel: run(mel), args.repeat)
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
        keys = ("pesq_wb", "stoi", "log_mel_l1", "rms_ratio_db")
        out = {k: float(np.mean([r[k] for r in rs if r[k] is not None])) for k in keys}
        return {**out, "lag": max(abs(r["lag_samples"]) for r in rs), "rtf": audio / wall}

    base = agg(rows["librosa mel_to_audio"])
    lines = [
        f"Command: `python benchmarks/train_curve.py {' '.join(sys.argv[1:])}`  ",
        f"Clips: {len(clips)} from `{folder if folder.is_dir() else 'synthesised'}` "
        f"({sum(r['audio_s'] for r in rows['librosa mel_to_audio']):.1f} s); preset `{cfg.name}`; "
        f"torch {torch.__version__}, librosa {librosa.__version__}, {args.threads} threads on "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}); best of {args.repeat}; "
        f"clock: {'CPU time of this process' if args.clock == 'cpu' else 'wall time'}.",
        "",
        "| method | PESQ-WB | STOI | log-mel L1 | RMS ratio dB | max abs lag | RTF | x librosa RTF | PESQ - librosa |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, rs in rows.items():
        a = agg(rs)
        lines.append(
            f"| {m} | {a['pesq_wb']:.3f} | {a['stoi']:.4f} | {a['log_mel_l1']:.3f} | {a['rms_ratio_db']:+.2f} | "
            f"{a['lag']} | {a['rtf']:.1f} | {a['rtf'] / base['rtf']:.2f} | {a['pesq_wb'] - base['pesq_wb']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


def _models_for(method: str, models: list[str] | None) -> list[str] | None:
    """The ``--model`` checkpoints whose kind the method uses (others would be refused)."""
    if not models:
        return None
    from melinvert.neural import read_record
    from melinvert.neural.stages import kinds_used
    from melinvert.pipeline import parse_method

    kinds = kinds_used(parse_method(method))
    use = [m for m in models if read_record(m)["kind"] in kinds]
    return use or None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run folders of 'melinvert train'")
    p.add_argument("--compare", action="store_true", help="run the methods and librosa on the clips")
    p.add_argument("--methods", default="default,learned")
    p.add_argument(
        "--model", action="append", help="checkpoint or run folder for learned stages (repeatable)"
    )
    p.add_argument("--clips", default=str(HERE.parent.parent / "shared" / "data" / "speech"))
    p.add_argument("--preset", default="hifigan-22k-80")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time the inversions on the wall clock or as this process's CPU time (robust to other "
        "load; use with --threads 1)",
    )
    p.add_argument("--write", default="", help="append the output to this markdown file")
    args = p.parse_args()
    parts = [curve(Path(r)) for r in args.runs]
    if args.compare:
        parts.append(compare(args))
    text = "\n".join(parts)
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()

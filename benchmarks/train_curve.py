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
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def curve(run: Path) -> str:
    """Markdown table of one run's validations."""
    log = run / "log.jsonl"
    if not log.is_file():
        raise SystemExit(f"{log} does not exist: is {run} a 'melinvert train' run folder?")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "val_loss" in r]  # validations (not the "stopped" lines)
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
    """The methods and librosa on the same clips, as one markdown table (``vs_librosa.run``)."""
    sys.path.insert(0, str(HERE))
    import vs_librosa

    return vs_librosa.run(args)


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

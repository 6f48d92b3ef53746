"""``melinvert demo``: a synthesised speech-like signal, its mel, its inversions and their scores,
with a page (``index.html``) and mel pictures to look at and listen to."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MelinvertError
from .common import (
    Command,
    Console,
    add_config_options,
    add_overwrite,
    add_threads,
    arg,
    config_from_args,
    note_missing_extras,
    positive_seconds,
    print_scores,
    seed_value,
    speed,
)

if TYPE_CHECKING:
    import numpy as np

    from ..config import MelConfig

#: The demo's page, beside its WAVs.
PAGE = "index.html"


def _figures(out: Path, y: np.ndarray, estimates: dict[str, np.ndarray], cfg: MelConfig) -> dict[str, str]:
    """``figures/original.png`` and ``figures/METHOD.png`` (mel beside its error against the
    original), drawn by :func:`melinvert.report.plot_mel`; relative paths by name."""
    from ..bench import _display_range, mel_db
    from ..report import plot_mel

    ref_db = mel_db(y, cfg)
    vmin, vmax = _display_range(ref_db)  # as bench's pictures
    seconds = len(y) / cfg.sample_rate
    paths = {"original": "figures/original.png"}
    plot_mel(out / paths["original"], ref_db, duration_s=seconds, title="original", vmin=vmin, vmax=vmax)
    for m, est in estimates.items():
        paths[m] = f"figures/{m}.png"
        est_db = mel_db(est[: len(y)], cfg)
        plot_mel(
            out / paths[m],
            est_db,
            duration_s=seconds,
            title=m,
            vmin=vmin,
            vmax=vmax,
            error_db=est_db - ref_db,
        )
    return paths


def _page(
    out: Path, cfg: MelConfig, seconds: float, rows: list[tuple[str, dict]], figures: dict[str, str]
) -> None:
    """The demo's ``index.html``: :func:`melinvert.report.render_page` with one clip."""
    from ..io import write_text
    from ..report import ClipView, PairView, render_page

    pairs = [PairView(m, f"{m}.wav", figures.get(m), sc) for m, sc in rows]
    clip = ClipView("demo", "speech-like signal (melinvert.demo.speech_like)", seconds, cfg.sample_rate,
                    "original.wav", figures.get("original"), pairs)  # fmt: skip
    html = render_page(
        title="melinvert demo",
        intro=[
            f"{cfg.name or 'custom config'}: {cfg.describe()}",
            f"{seconds:g} s synthesised speech-like signal",
        ],
        summary_columns=("method", "pesq_wb", "stoi", "log_mel_l1", "lsd", "rtf"),
        summary_rows=[{"method": m, **sc} for m, sc in rows],
        ranking_note="A synthesised signal: compare methods on real speech with 'melinvert bench'.",
        figures=[],
        clips=[clip],
    )
    write_text(out / PAGE, html, overwrite=True)


def cmd_demo(args: argparse.Namespace, ui: Console) -> int:
    """Synthesise a speech-like signal, write it, its mel and its inversions, score them, and
    write the page and its pictures."""
    import time

    from ..config import get_preset
    from ..demo import speech_like
    from ..dsp import mel_spectrogram
    from ..io import check_output, save_audio, save_mel
    from ..metrics import score
    from ..pipeline import invert
    from ..report import require_matplotlib

    cfg = config_from_args(args) or get_preset("hifigan-22k-80")
    out = Path(args.output)
    methods = [m for m in args.methods.split(",") if m]
    files = [out / "original.wav", out / "original.mel.npy", *(out / f"{m}.wav" for m in methods)]
    for f in [*files, out / PAGE]:
        check_output(f, overwrite=args.overwrite)
    y = speech_like(cfg.sample_rate, seconds=args.seconds, seed=args.seed)
    save_audio(files[0], y, cfg.sample_rate, overwrite=args.overwrite)
    mel = mel_spectrogram(y, cfg)
    save_mel(files[1], mel, cfg, overwrite=args.overwrite)
    ui.out(
        f"wrote {files[0]} ({args.seconds:g} s speech-like signal) and its {cfg.name or ''} mel {files[1]}"
    )
    rows: list[tuple[str, dict[str, Any]]] = []
    estimates = {}
    for m, f in zip(methods, files[2:]):
        t0 = time.perf_counter()
        est = invert(mel, cfg, method=m, seed=args.seed, length=len(y))
        wall = time.perf_counter() - t0
        save_audio(f, est, cfg.sample_rate, overwrite=args.overwrite)
        ui.out(f"wrote {f} ({m}: {wall:.2f} s, {speed(wall, len(y) / cfg.sample_rate)})")
        estimates[m] = est
        rows.append(
            (m, {**score(y, est, cfg.sample_rate, config=cfg), "rtf": wall * cfg.sample_rate / len(y)})
        )
    print_scores(ui, rows)
    note_missing_extras(ui, [sc for _, sc in rows], True)
    try:
        require_matplotlib()
        figures = _figures(out, y, estimates, cfg)
    except MelinvertError as e:  # no matplotlib: the page is still written, without pictures
        figures = {}
        ui.note(f"no pictures: {e}")
    _page(out, cfg, args.seconds, rows, figures)
    pictures = f" and {len(figures)} mel pictures in {out / 'figures'}" if figures else ""
    ui.out(f"wrote {out / PAGE}{pictures}: open it in a browser to listen and compare")
    ui.note(
        "a synthesised signal: its PESQ swings from one --seed to the next, so compare methods on "
        "real speech (melinvert bench) or see the figures in benchmarks/RESULTS.md"
    )
    return 0


COMMAND = Command(
    "demo",
    cmd_demo,
    "synthesise a speech-like signal, invert its mel with default and fast, score them, and write a page",
    options=(
        arg(
            "-o",
            "--output",
            default="melinvert-demo",
            metavar="DIR",
            help="output folder (default melinvert-demo)",
        ),
        add_config_options,
        arg("--methods", default="default,fast", help="comma-separated methods (default: default,fast)"),
        arg("--seconds", type=positive_seconds, default=4.0, help="length of the signal (default 4)"),
        arg("--seed", type=seed_value, default=0, help="seed of the signal and the inversion"),
        add_overwrite,
        add_threads,
    ),
    examples=("melinvert demo -o demo/",),
)

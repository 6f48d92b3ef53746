"""Plots, tables and the HTML listening page of ``melinvert bench``. No maths here.

Everything in this module takes results that are already computed -- rows of scores, means,
arrays in dB, relative paths -- and draws or formats them. Computing spectrograms, errors,
means or rankings is :mod:`melinvert.bench`'s job.

* Figures (matplotlib, drawn on an Agg canvas without touching pyplot's global state, written
  atomically as PNG): :func:`plot_mel` (a mel, optionally beside its error map),
  :func:`plot_method_bars` (one method's scores per clip), :func:`plot_quality_vs_rtf`.
* Text: :func:`write_csv`, :func:`markdown_table`.
* The page: :func:`render_page` builds one self-contained ``index.html`` (inline CSS, no
  script, relative links only) from :class:`ClipView` and :class:`PairView` records.

matplotlib is an optional extra (``pip install "melinvert[report]"``);
:func:`require_matplotlib` turns its absence into one :class:`~melinvert.errors.MelinvertError`
line.
"""

from __future__ import annotations

import csv
import html
import importlib.util
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import numpy as np

from .errors import MelinvertError, check
from .io import atomic_write

__all__ = [
    "LABELS",
    "ClipView",
    "PairView",
    "format_value",
    "markdown_table",
    "plot_mel",
    "plot_method_bars",
    "plot_quality_vs_rtf",
    "render_page",
    "require_matplotlib",
    "write_csv",
]

#: Column key -> heading used in tables and figures (arrows: which way is better).
LABELS: dict[str, str] = {
    "clip": "clip",
    "method": "method",
    "clips": "clips",
    "audio_s": "audio s",
    "wall_s": "wall s",
    "rtf": "RTF ↓",
    "pesq_wb": "PESQ-WB ↑",
    "stoi": "STOI ↑",
    "log_mel_l1": "log-mel L1 ↓",
    "spectral_convergence": "spectral conv. ↓",
    "lsd": "LSD dB ↓",
    "snr_db": "SNR dB",
    "lag_samples": "lag (samples)",
    "abs_lag_ms": "mean abs lag ms",
    "rms_ratio_db": "level dB",
    "peak": "peak",
    "rank": "rank",
    "notes": "notes",
}

#: Digits shown per column (significant digits for floats).
_DIGITS: dict[str, int] = {
    "audio_s": 3,
    "wall_s": 3,
    "rtf": 3,
    "pesq_wb": 3,
    "stoi": 3,
    "log_mel_l1": 3,
    "spectral_convergence": 3,
    "lsd": 3,
    "snr_db": 3,
    "abs_lag_ms": 3,
    "rms_ratio_db": 2,
    "peak": 3,
}


def require_matplotlib() -> None:
    """Raise a one-line :class:`MelinvertError` when matplotlib cannot be imported."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MelinvertError(
            "the bench report needs matplotlib, which is not installed: pip install 'melinvert[report]'"
        )


def format_value(key: str, value: Any) -> str:
    """A table cell: ``""`` for ``None``, ints as is, floats to the column's precision."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return str(v)
        if key in _DIGITS:
            return f"{v:.{_DIGITS[key]}f}" if abs(v) < 1000 else f"{v:.0f}"
        return f"{v:.6g}"
    return str(value)


# ---------------------------------------------------------------------- text


def write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``rows`` as CSV with a header of ``columns`` (atomically, replacing ``path``).

    Floats are written in full (``repr``), ``None`` as an empty cell, non-finite floats as
    ``inf``/``-inf``/``nan``.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if row.get(c) is None else _csv_cell(row.get(c)) for c in columns])
    data = buf.getvalue().encode("utf-8")
    return atomic_write(path, lambda f: f.write(data), overwrite=True)


#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(v: Any) -> str:
    """A cell's text: floats in full; text that a spreadsheet would run as a formula gets a
    leading ``'`` (numbers, ``-1.5`` included, stay numbers)."""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    text = str(v)
    if text.startswith(_FORMULA_STARTS) and not isinstance(v, (int, np.integer)):
        try:
            float(text)
        except ValueError:
            return "'" + text
    return text


def markdown_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub-flavoured Markdown table: headings from :data:`LABELS`, numbers right-aligned."""
    head = [LABELS.get(c, c) for c in columns]
    cells = [[_md_escape(format_value(c, r.get(c))) for c in columns] for r in rows]
    numeric = [c not in ("clip", "method", "notes") for c in columns]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(head)]

    def line(values: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric))
            + " |"
        )

    sep = (
        "|" + "|".join(("-" * (w + 1) + ":") if n else ("-" * (w + 2)) for w, n in zip(widths, numeric)) + "|"
    )
    return "\n".join([line(head), sep, *(line(r) for r in cells)])


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------- figures


def _figure(width_in: float, height_in: float, layout: str | None = "constrained") -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    return atomic_write(path, lambda f: f.write(data), overwrite=True)


def _colorbar(fig: Any, im: Any, ax: Any) -> None:
    cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    cb.set_label("dB", fontsize=8)
    cb.ax.tick_params(labelsize=7)


def plot_mel(
    path: str | os.PathLike,
    mel_db: np.ndarray,
    *,
    duration_s: float,
    title: str,
    vmin: float,
    vmax: float,
    error_db: np.ndarray | None = None,
    error_range_db: float = 20.0,
) -> Path:
    """A mel spectrogram in dB, and beside it (when given) its error map against the original.

    Parameters
    ----------
    path : path
        The PNG to write (replaced if it exists).
    mel_db : np.ndarray [shape=(n_mels, frames), dB]
    duration_s : float
        Seconds the frames span (the time axis).
    title : str
    vmin, vmax : float
        Colour range of the mel in dB (the same for every method of a clip).
    error_db : np.ndarray [shape=(n_mels, frames), dB], optional
        Estimate minus original, drawn on a diverging scale of ``+-error_range_db``.
    """
    check(mel_db.ndim == 2, f"mel_db must be 2-D (n_mels, frames), got shape {mel_db.shape}")
    panels = 1 if error_db is None else 2
    width, height = 4.6 * panels, 2.3
    fig = _figure(width, height, layout=None)  # fixed margins: many of these are drawn
    axes = fig.subplots(1, panels, squeeze=False)[0]
    fig.subplots_adjust(
        left=0.5 / width, right=1 - 0.55 / width, bottom=0.45 / height, top=1 - 0.3 / height, wspace=0.45
    )
    extent = (0.0, float(duration_s), 0.0, float(mel_db.shape[0]))
    im = axes[0].imshow(
        mel_db, origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=vmax, cmap="magma"
    )
    axes[0].set_title(title, fontsize=9)
    axes[0].set_xlabel("time (s)", fontsize=8)
    axes[0].set_ylabel("mel bin", fontsize=8)
    _colorbar(fig, im, axes[0])
    if error_db is not None:
        check(
            error_db.shape == mel_db.shape, f"error_db shape {error_db.shape} != mel_db shape {mel_db.shape}"
        )
        im2 = axes[1].imshow(
            error_db,
            origin="lower",
            aspect="auto",
            extent=extent,
            vmin=-error_range_db,
            vmax=error_range_db,
            cmap="RdBu_r",
        )
        axes[1].set_title("log-mel error (estimate - original)", fontsize=9)
        axes[1].set_xlabel("time (s)", fontsize=8)
        _colorbar(fig, im2, axes[1])
    for ax in axes:
        ax.tick_params(labelsize=7)
    return _save(fig, path)


def plot_method_bars(
    path: str | os.PathLike,
    method: str,
    clips: Sequence[str],
    columns: Mapping[str, Sequence[float | None]],
    *,
    means: Mapping[str, float | None] | None = None,
) -> Path:
    """One panel per measure, one bar per clip: how a method did on each clip.

    Parameters
    ----------
    path : path
        The PNG to write.
    method : str
    clips : sequence of str
        Bar labels.
    columns : mapping key -> values
        Per measure (keys of :data:`LABELS`), one value per clip; ``None`` leaves a gap.
    means : mapping key -> float, optional
        Drawn as a dashed line in each panel.
    """
    keys = list(columns)
    check(bool(keys), "no measures to plot")
    ncols = min(3, len(keys))
    nrows = -(-len(keys) // ncols)
    width, height = 3.4 * ncols, 2.7 * nrows + 0.6
    fig = _figure(width, height, layout=None)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    fig.subplots_adjust(
        left=0.5 / width,
        right=1 - 0.15 / width,
        bottom=1.0 / height,
        top=1 - 0.55 / height,
        wspace=0.3,
        hspace=0.9,
    )
    fig.suptitle(f"{method}: scores per clip", fontsize=10)
    x = np.arange(len(clips))
    for i, key in enumerate(keys):
        ax = axes[i // ncols][i % ncols]
        vals = [np.nan if v is None else float(v) for v in columns[key]]
        ax.bar(x, vals, color="#4c72b0")
        m = None if means is None else means.get(key)
        if m is not None and math.isfinite(m):
            ax.axhline(m, color="#c44e52", linestyle="--", linewidth=1, label=f"mean {format_value(key, m)}")
            ax.legend(fontsize=7, loc="best")
        ax.set_title(LABELS.get(key, key), fontsize=9)
        ax.set_xticks(x)
        ax.set_xticklabels([_short(c) for c in clips], rotation=60, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        if all(math.isnan(v) for v in vals):
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", fontsize=8)
    for j in range(len(keys), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    return _save(fig, path)


def _short(name: str, limit: int = 14) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def plot_quality_vs_rtf(
    path: str | os.PathLike,
    means: Sequence[tuple[str, float, float]],
    per_clip: Sequence[tuple[str, float, float]] = (),
    *,
    quality_label: str,
) -> Path:
    """Quality against real-time factor: one large point per method, small ones per clip.

    Parameters
    ----------
    path : path
        The PNG to write.
    means : sequence of (method, rtf, quality)
        The method's aggregate real-time factor and mean quality.
    per_clip : sequence of (method, rtf, quality)
        Individual clips, drawn faintly in the method's colour.
    quality_label : str
        The y axis, e.g. ``"PESQ-WB (higher is better)"``.
    """
    fig = _figure(5.6, 3.6, layout=None)
    ax = fig.subplots()
    fig.subplots_adjust(left=0.12, right=0.96, bottom=0.14, top=0.92)
    colours = {m: f"C{i % 10}" for i, (m, _, _) in enumerate(means)}
    for m, r, q in per_clip:
        if r > 0 and math.isfinite(q):
            ax.scatter([r], [q], s=12, color=colours.get(m, "grey"), alpha=0.35, linewidths=0)
    for m, r, q in means:
        if r > 0 and math.isfinite(q):
            ax.scatter(
                [r], [q], s=60, color=colours[m], edgecolors="black", linewidths=0.6, label=m, zorder=3
            )
            ax.annotate(m, (r, q), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.margins(x=0.2, y=0.15)
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("real-time factor (wall s / audio s, log scale; left is faster)", fontsize=8)
    ax.set_ylabel(quality_label, fontsize=8)
    ax.set_title("quality vs speed", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.tick_params(labelsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------------- the page


@dataclass(frozen=True)
class PairView:
    """One method's output of one clip, as the page shows it.

    Attributes
    ----------
    method : str
    audio : str
        Relative POSIX path of the WAV (from the page's folder).
    figure : str or None
        Relative path of its mel + error figure.
    scores : mapping
        Column key -> value (shown with :func:`format_value`).
    """

    method: str
    audio: str
    figure: str | None
    scores: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipView:
    """One clip: its original and every method's output.

    Attributes
    ----------
    clip : str
        The clip's name (its path relative to the input folder, without extension).
    source : str
        The file it came from.
    seconds : float
    sample_rate : int
        Hz of the WAVs on the page (the config's rate).
    audio : str
        Relative path of the original (as compared: resampled to the config's rate).
    figure : str or None
        Relative path of the original's mel figure.
    pairs : sequence of PairView
    """

    clip: str
    source: str
    seconds: float
    sample_rate: int
    audio: str
    figure: str | None
    pairs: Sequence[PairView] = ()


#: Scores shown beside each player, in order.
PAGE_SCORES = (
    "pesq_wb",
    "stoi",
    "log_mel_l1",
    "spectral_convergence",
    "lsd",
    "lag_samples",
    "rms_ratio_db",
    "rtf",
)

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto;
       max-width: 1280px; padding: 0 1em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 .2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { margin: 1.2em 0 .4em; } code, pre { font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; }
pre { background: #f5f5f7; padding: .6em .8em; overflow-x: auto; border-radius: 4px; }
table { border-collapse: collapse; margin: .5em 0; } th, td { padding: .25em .6em; border-bottom: 1px solid #e5e5e5; }
th { text-align: left; background: #f5f5f7; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.meta { color: #555; } .figs { display: flex; flex-wrap: wrap; gap: .5em 1.5em; }
.figs figure { margin: 0; max-width: 600px; } .figs img { max-width: 100%; border: 1px solid #eee; }
.pair { display: grid; grid-template-columns: 11em 300px 1fr; gap: .3em 1em; align-items: center;
        padding: .5em 0; border-bottom: 1px solid #eee; }
.pair img { width: 100%; } .pair img.half { width: 49%; } .pair audio { width: 300px; } .label { font-weight: 600; word-break: break-all; }
.scores { font-size: 12px; } .scores td { padding: .1em .5em; border: 0; }
.warn { color: #a33; } nav a { margin-right: 1em; }
"""


def _url(path: str) -> str:
    """A relative POSIX path as a safe href/src (percent-encoded, never absolute)."""
    p = PurePosixPath(path)
    check(not p.is_absolute() and ".." not in p.parts, f"page links must stay under the page: {path!r}")
    return html.escape(quote(p.as_posix()), quote=True)


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(LABELS.get(c, c))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            text = html.escape(format_value(c, r.get(c)))
            cls = "" if c in ("clip", "method", "notes") else ' class="num"'
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _scores(scores: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(LABELS.get(k, k))}</td><td class=num>{html.escape(format_value(k, scores.get(k)) or '–')}</td></tr>"
        for k in PAGE_SCORES
    )
    note = scores.get("notes")
    extra = f'<div class="meta">{html.escape(str(note))}</div>' if note else ""
    return f'<table class="scores">{rows}</table>{extra}'


def _audio(src: str, label: str) -> str:
    return f'<audio controls preload="metadata" src="{_url(src)}" aria-label="{html.escape(label, quote=True)}"></audio>'


def _img(src: str | None, alt: str, cls: str = "") -> str:
    if src is None:
        return '<span class="meta">(no figure)</span>'
    c = f' class="{cls}"' if cls else ""
    return f'<a href="{_url(src)}"><img{c} src="{_url(src)}" alt="{html.escape(alt, quote=True)}"></a>'


def _figures(figures: Sequence[tuple[str, str]]) -> str:
    items = "".join(
        f'<figure>{_img(p, cap)}<figcaption class="meta">{html.escape(cap)}</figcaption></figure>'
        for p, cap in figures
    )
    return f'<div class="figs">{items}</div>'


def render_page(
    *,
    title: str,
    intro: Sequence[str],
    summary_columns: Sequence[str],
    summary_rows: Sequence[Mapping[str, Any]],
    ranking_note: str,
    figures: Sequence[tuple[str, str]],
    clips: Sequence[ClipView],
    detail_figures: Sequence[tuple[str, str]] = (),
    skipped: Sequence[tuple[str, str]] = (),
    notes: Sequence[str] = (),
    machine: Sequence[str] = (),
    command: str = "",
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """The listening page as one HTML document (inline CSS, no script, relative links).

    Parameters
    ----------
    title : str
    intro : sequence of str
        Lines under the title (preset, clip count, ...).
    summary_columns, summary_rows
        The per-method table (keys of :data:`LABELS`).
    ranking_note : str
        How the rows are ranked.
    figures : sequence of (relative path, caption)
        Figures shown under the summary (quality vs RTF).
    clips : sequence of ClipView
    detail_figures : sequence of (relative path, caption)
        Figures shown after the clips (per-method bars).
    skipped : sequence of (source, reason)
        Clips that could not be used.
    notes : sequence of str
        Caveats (missing PESQ, how RTF is measured, ...).
    machine : sequence of str
    command : str
        The command line that produced the page.
    links : sequence of (relative path, text)
        Other outputs (results.csv, summary.md).

    Returns
    -------
    str
        The document. Every link it contains is one of the paths given.
    """
    e = html.escape
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',  # no favicon request: the page loads nothing but its files
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    out += [f'<p class="meta">{e(line)}</p>' for line in intro]
    if links:
        out.append("<nav>" + "".join(f'<a href="{_url(p)}">{e(t)}</a>' for p, t in links) + "</nav>")
    out.append("<h2>Summary</h2>")
    if summary_rows:
        out.append(_table(summary_columns, summary_rows))
    else:
        out.append('<p class="warn">No clip was finished.</p>')
    out.append(f'<p class="meta">{e(ranking_note)}</p>')
    if skipped:
        out.append(f'<h3 class="warn">Skipped ({len(skipped)})</h3><ul>')
        out += [f"<li><code>{e(src)}</code>: {e(reason)}</li>" for src, reason in skipped]
        out.append("</ul>")
    if notes:
        out.append("<h3>Notes</h3><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    if figures:
        out.append(_figures(figures))
    if clips:
        out.append("<h2>Listen</h2>")
        out.append(
            '<p class="meta">Each row: the audio, its mel spectrogram (and its log-mel error against the '
            "original, red = too loud, blue = too quiet) and its scores.</p>"
        )
    for i, c in enumerate(clips):
        out.append(f'<section id="clip-{i}"><h3>{e(c.clip)}</h3>')
        out.append(f'<p class="meta">{e(c.source)} · {c.seconds:.2f} s · played at {c.sample_rate} Hz</p>')
        out.append(
            f'<div class="pair"><div class="label">original</div>{_audio(c.audio, f"{c.clip}: original")}'
            f"<div>{_img(c.figure, f'{c.clip}: original mel', 'half')}</div></div>"
        )
        for p in c.pairs:
            out.append(
                f'<div class="pair"><div class="label">{e(p.method)}</div>'
                f"<div>{_audio(p.audio, f'{c.clip}: {p.method}')}{_scores(p.scores)}</div>"
                f"<div>{_img(p.figure, f'{c.clip}: {p.method} mel and error')}</div></div>"
            )
        out.append("</section>")
    if detail_figures:
        out.append("<h2>Per method</h2>")
        out.append(_figures(detail_figures))
    if machine:
        out.append("<h2>Machine</h2><ul>" + "".join(f"<li>{e(m)}</li>" for m in machine) + "</ul>")
    if command:
        out.append(f"<h2>Command</h2><pre>{e(command)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"

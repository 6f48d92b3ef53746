"""Make ``docs/bench_page.png``: a screenshot of the ``melinvert bench`` listening page.

Runs a small bench on synthesised speech-like clips (nothing is downloaded, no real
recordings), serves the output folder on 127.0.0.1 and screenshots ``index.html`` with headless
Chromium::

    python docs/make_screenshot.py            # writes docs/bench_page.png
    python docs/make_screenshot.py --keep DIR # also keep the bench output in DIR

Needs the ``report`` extra (matplotlib) and a ``chromium`` binary (``apt-get install chromium``);
``--with-librosa`` is added when librosa is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

HERE = Path(__file__).resolve().parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SAMPLE_RATE = 22050


def resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """A two-pole formant resonance at ``freq`` Hz with ``bandwidth`` Hz, unit gain at DC."""
    r = np.exp(-np.pi * bandwidth / sr)
    a = [1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r]
    return lfilter([sum(a)], a, x)


def speech_like(seconds: float, f0: float, vowels: list[tuple[float, float, float]], seed: int) -> np.ndarray:
    """Syllables of a glottal pulse train through three formants, with fricative noise between.

    Returns float32 ``(samples,)`` at :data:`SAMPLE_RATE`, peak 0.5.
    """
    sr = SAMPLE_RATE
    rng = np.random.default_rng(seed)
    n = round(seconds * sr)
    t = np.arange(n) / sr
    pitch = f0 * (1 + 0.12 * np.sin(2 * np.pi * 0.7 * t + seed) - 0.1 * t / seconds)
    phase = np.cumsum(pitch) / sr
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per period
    source = lfilter([1.0], [1.0, -0.97], pulses)  # glottal roll-off
    out = np.zeros(n)
    syllables = len(vowels)
    edges = np.linspace(0, n, syllables + 1).astype(int)
    for (f1, f2, f3), a, b in zip(vowels, edges[:-1], edges[1:]):
        seg = source[a:b]
        voiced = sum(resonator(seg, f, bw, sr) for f, bw in ((f1, 80), (f2, 100), (f3, 140)))
        env = np.sin(np.pi * np.linspace(0, 1, b - a)) ** 0.6
        fric = resonator(rng.standard_normal(b - a), 4500, 2500, sr) * np.exp(-np.linspace(0, 12, b - a))
        out[a:b] = voiced * env + 0.3 * fric
    out += 1e-3 * rng.standard_normal(n)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def make_clips(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    a, e, i, o, u = (
        (730, 1090, 2440),
        (530, 1840, 2480),
        (270, 2290, 3010),
        (570, 840, 2410),
        (300, 870, 2240),
    )
    sf.write(
        folder / "speaker1_a.wav", speech_like(1.6, 120.0, [a, i, o, e], 0), SAMPLE_RATE, subtype="PCM_16"
    )
    sf.write(folder / "speaker2_b.wav", speech_like(1.4, 210.0, [e, u, a], 1), SAMPLE_RATE, subtype="PCM_16")


def screenshot(browser: str, url: str, png: Path, size: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                "--virtual-time-budget=20000",
                f"--screenshot={png}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=str(HERE / "bench_page.png"), help="the PNG to write")
    parser.add_argument("--keep", metavar="DIR", help="also keep the bench output folder here")
    parser.add_argument("--size", default="1280x1700", help="browser window, WxH (default 1280x1700)")
    args = parser.parse_args()
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        print("make_screenshot: error: chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    width, height = (int(v) for v in args.size.lower().split("x"))
    png = Path(args.output).resolve()
    keep = Path(args.keep).resolve() if args.keep else None
    home = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # relative paths on the page and in its command line
        try:
            return _run(browser, png, keep, (width, height))
        finally:
            os.chdir(home)


def _run(browser: str, png: Path, keep: Path | None, size: tuple[int, int]) -> int:
    from melinvert import cli

    clips = Path("clips")
    out = keep if keep is not None else Path("bench")
    make_clips(clips)
    argv = ["bench", str(clips), "--preset", "hifigan-22k-80", "--methods", "default,fast", "-o", str(out)]
    try:
        import librosa  # noqa: F401

        argv.append("--with-librosa")
    except ImportError:
        pass
    if out.exists():
        argv.append("--overwrite")
    status = cli.main(argv)
    if status != 0:
        return status
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(out)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        screenshot(browser, f"http://127.0.0.1:{httpd.server_address[1]}/index.html", png, size)
    finally:
        httpd.shutdown()
        httpd.server_close()
    print(f"wrote {png}")
    return 0


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())

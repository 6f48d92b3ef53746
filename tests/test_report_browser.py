"""The bench listening page as a person sees it: rendered by headless Chromium.

Served over HTTP from 127.0.0.1 (a free port), the page is loaded in Chromium with a probe
injected into a copy of it; the probe records script errors, console errors and warnings, and
failed resource loads, waits for every ``<audio>`` to load its metadata, and writes what it saw
into the DOM, which ``--dump-dom`` returns. The test then checks that every ``<audio>`` decoded
(a duration, no error), every ``<img>`` has pixels, nothing was logged to the console (from the
probe and from Chromium's own console log), every request the server saw succeeded, and that a
screenshot of the real page is not blank.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from test_bench import PRESET, Links, make_clips

from melinvert import cli

pytest.importorskip("matplotlib", reason="bench draws with matplotlib (pip install 'melinvert[report]')")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM = next((b for b in BROWSERS if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless browser: install chromium (apt-get install chromium) to check the listening page",
)

FLAGS = (
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
    "--enable-logging=stderr",
    "--v=0",
)

#: Injected first into <head> of a copy of the page.
PROBE = """<script>
(function () {
  var problems = [];
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      problems.push('failed to load <' + t.tagName.toLowerCase() + '> ' + (t.currentSrc || t.src || t.href));
    } else {
      problems.push('script error: ' + e.message);
    }
  }, true);
  window.addEventListener('unhandledrejection', function (e) { problems.push('unhandled rejection: ' + e.reason); });
  ['error', 'warn'].forEach(function (level) {
    var original = console[level];
    console[level] = function () {
      problems.push('console.' + level + ': ' + Array.prototype.join.call(arguments, ' '));
      return original.apply(console, arguments);
    };
  });
  window.addEventListener('load', function () {
    var audios = Array.prototype.slice.call(document.querySelectorAll('audio'));
    var imgs = Array.prototype.slice.call(document.querySelectorAll('img'));
    Promise.all(audios.map(function (a) {
      return new Promise(function (done) {
        if (a.readyState >= 1 || a.error) { done(); return; }
        a.addEventListener('loadedmetadata', done);
        a.addEventListener('error', done);
        setTimeout(done, 20000);
      });
    })).then(function () {
      var seen = {
        problems: problems,
        audio: audios.map(function (a) {
          return {src: a.getAttribute('src'), ready: a.readyState, duration: a.duration,
                  error: a.error ? a.error.code : null};
        }),
        img: imgs.map(function (i) {
          return {src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
        })
      };
      var out = document.createElement('pre');
      out.id = 'melinvert-probe';
      out.textContent = JSON.stringify(seen);
      document.body.appendChild(out);
    });
  });
})();
</script>"""


class Server:
    """A static HTTP server on 127.0.0.1 (free port) that records every request's status."""

    def __init__(self, root: Path):
        self.requests: list[tuple[str, int]] = []
        record = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_request(self, code: object = "-", size: object = "-") -> None:
                record.append((self.path, int(code) if str(code).isdigit() else 0))

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chromium(tmp: Path, *args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    """A bench run on synthesised clips (one unreadable), served over HTTP."""
    root = tmp_path_factory.mktemp("page")
    clips = make_clips(root / "clips")
    out = root / "out"
    argv = ["bench", str(clips), "--preset", PRESET, "--methods", "fast,nnls", "-o", str(out), "--no-extras"]
    status = cli.main(argv)
    assert status == 0
    with Server(out) as server:
        yield out, server


def test_page_renders_in_chromium(page: tuple[Path, Server], tmp_path: Path) -> None:
    out, server = page
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "<head>" in text
    (out / "_probe.html").write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    links = Links()
    links.feed(text)
    audio_srcs = [v for t, v in links.links if t == "audio"]
    img_srcs = [v for t, v in links.links if t == "img"]
    assert len(audio_srcs) == 2 * 3 and len(img_srcs) == 2 * 3 + 1 + 2  # clips x (original + 2), figures

    proc = chromium(tmp_path, "--virtual-time-budget=30000", "--dump-dom", f"{server.url}/_probe.html")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r'<pre id="melinvert-probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the probe did not report; DOM tail: {proc.stdout[-1000:]!r}; stderr: {proc.stderr[-1000:]}"
    seen = json.loads(html.unescape(m.group(1)))

    assert seen["problems"] == []
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    assert [a["src"] for a in seen["audio"]] == audio_srcs
    for a in seen["audio"]:
        assert a["error"] is None and a["ready"] >= 1, a
        assert a["duration"] is not None and 0.4 < a["duration"] < 0.7, a
    assert [i["src"] for i in seen["img"]] == img_srcs
    for i in seen["img"]:
        assert i["complete"] and i["width"] > 100 and i["height"] > 100, i
    # Everything the page asked for was served; nothing else was asked for.
    asked = {p.split("?")[0] for p, _ in server.requests}
    failed = [(p, code) for p, code in server.requests if code != 200]
    assert failed == [], failed
    assert {f"/{s}" for s in audio_srcs + img_srcs} <= asked
    assert asked <= {f"/{v}" for _, v in links.links} | {"/_probe.html"}, asked


def test_page_screenshot_is_not_blank(page: tuple[Path, Server], tmp_path: Path) -> None:
    import matplotlib.image

    _, server = page
    shot = tmp_path / "page.png"
    proc = chromium(
        tmp_path,
        "--window-size=1280,1600",
        "--virtual-time-budget=10000",
        f"--screenshot={shot}",
        f"{server.url}/index.html",
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    px = matplotlib.image.imread(shot)[..., :3]
    assert px.shape[:2] == (1600, 1280)
    ink = np.mean(np.any(px < 0.9, axis=-1))  # share of pixels that are not (near) white
    assert ink > 0.05, f"the screenshot is nearly blank ({ink:.1%} ink)"
    assert float(px.std()) > 0.05
    colourful = np.mean(np.ptp(px, axis=-1) > 0.2)  # the spectrograms are in colour
    assert colourful > 0.01, f"no figure visible ({colourful:.1%} coloured pixels)"

"""``melinvert bench`` on synthesised clips: the CSV, the summary, the page, resume and refusals."""

from __future__ import annotations

import csv
import json
import os
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import soundfile as sf
import torch

from melinvert import bench, cli

pytest.importorskip("matplotlib", reason="bench draws with matplotlib (pip install 'melinvert[report]')")

PRESET = "hifigan-22k-80"


def synth(sample_rate: int, seconds: float, f0: float, seed: int) -> np.ndarray:
    """A voiced-like clip: 8 harmonics with vibrato under a slow envelope, plus faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / sample_rate
    y = sum(np.sin(k * phase) / k for k in range(1, 9)) * (0.3 + 0.7 * np.sin(np.pi * t / seconds))
    y = 0.5 * y / np.abs(y).max() + 0.005 * rng.standard_normal(t.size)
    return y.astype(np.float32)


def make_clips(folder: Path) -> Path:
    """Two readable clips (one at 16 kHz in a sub-folder) and one unreadable file."""
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", synth(22050, 0.6, 140.0, 0), 22050, subtype="PCM_16")
    sf.write(folder / "sub" / "b.wav", synth(16000, 0.5, 210.0, 1), 16000, subtype="PCM_16")
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" * 4)
    return folder


def run(*argv: object) -> int:
    return cli.main([str(a) for a in argv])


class Links(HTMLParser):
    """Every src and href of a page, by tag."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href") and v is not None:
                self.links.append((tag, v))


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, Path]:
    """One bench run shared by the read-only tests: (status, clips folder, OUT_DIR)."""
    root = tmp_path_factory.mktemp("bench")
    clips = make_clips(root / "clips")
    out = root / "out"
    status = run("bench", clips, "--preset", PRESET, "--methods", "fast", "-o", out)
    return status, clips, out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_csv_one_row_per_clip_and_method(bench_out: tuple[int, Path, Path]) -> None:
    status, _, out = bench_out
    assert status == 0
    rows = read_csv(out / "results.csv")
    assert list(rows[0]) == list(bench.CSV_COLUMNS)
    assert [(r["clip"], r["method"]) for r in rows] == [("a", "fast"), ("sub/b", "fast")]
    for r in rows:
        for key in ("audio_s", "wall_s", "rtf", "log_mel_l1", "spectral_convergence", "lsd", "rms_ratio_db"):
            assert np.isfinite(float(r[key])), (key, r[key])
        assert float(r["rtf"]) == pytest.approx(float(r["wall_s"]) / float(r["audio_s"]))
        assert int(r["lag_samples"]) == float(r["lag_samples"])
        assert abs(float(r["rms_ratio_db"])) < 3.0
        assert int(r["sample_rate"]) == 22050
        for key in ("pesq_wb", "stoi"):  # a real number or an empty cell with its reason
            assert (r[key] != "" and np.isfinite(float(r[key]))) or key in r["notes"], r
    assert float(rows[0]["audio_s"]) == pytest.approx(0.6, abs=1e-3)
    assert float(rows[1]["audio_s"]) == pytest.approx(0.5, abs=1e-3)


def test_outputs_written(bench_out: tuple[int, Path, Path]) -> None:
    _, _, out = bench_out
    for name in ("results.csv", "summary.md", "index.html", "results.jsonl", "bench.json"):
        assert (out / name).is_file(), name
    for rel in (
        "audio/a/original.wav",
        "audio/a/fast.wav",
        "audio/sub/b/original.wav",
        "audio/sub/b/fast.wav",
        "figures/a/original.png",
        "figures/a/fast.png",
        "figures/sub/b/fast.png",
        "figures/method_fast.png",
        "figures/quality_vs_rtf.png",
    ):
        path = out / rel
        assert path.is_file() and path.stat().st_size > 1000, rel
    y, sr = sf.read(out / "audio/sub/b/original.wav")
    assert sr == 22050 and y.shape[0] == pytest.approx(0.5 * 22050, abs=2)  # resampled as compared
    assert (out / "figures/a/fast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_lists_means_skipped_machine_and_command(bench_out: tuple[int, Path, Path]) -> None:
    _, clips, out = bench_out
    md = (out / "summary.md").read_text(encoding="utf-8")
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 3 and "PESQ-WB" in table[0] and "| fast " in table[2]
    assert all(ln.count("|") == table[0].count("|") for ln in table)  # no stray column separators
    assert "## Skipped clips (1)" in md and str(clips / "broken.wav") in md
    assert "Ranked by mean" in md
    device = "cuda" if torch.cuda.is_available() else "cpu"  # bench's --device auto
    assert "torch " in md and "cores" in md and f"device: {device}" in md
    assert f"melinvert bench {clips} --preset {PRESET} --methods fast -o {out}" in md


def test_page_names_only_files_that_exist(bench_out: tuple[int, Path, Path]) -> None:
    _, _, out = bench_out
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = Links()
    parser.feed(page)
    files = []
    for tag, link in parser.links:
        if link.startswith("data:"):
            continue  # the empty inline favicon
        parts = urlsplit(link)
        assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
        target = out / unquote(parts.path)
        assert target.is_file(), f"<{tag}> names {link}, which does not exist"
        assert out.resolve() in target.resolve().parents
        files.append((tag, unquote(parts.path)))
    audio = sorted(p for t, p in files if t == "audio")
    assert audio == [
        "audio/a/fast.wav",
        "audio/a/original.wav",
        "audio/sub/b/fast.wav",
        "audio/sub/b/original.wav",
    ]
    assert {p for t, p in files if t == "img"} >= {"figures/quality_vs_rtf.png", "figures/a/fast.png"}
    assert "broken.wav" in page and "Skipped (1)" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_existing_out_dir_refused(tmp_path: Path, run_cli) -> None:
    clips = make_clips(tmp_path / "clips")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    status, _, err = run_cli("bench", clips, "--preset", PRESET, "--methods", "fast", "-o", out)
    assert status == 2
    assert "already exists; pass --resume to continue it or --overwrite" in err
    # --overwrite clears only a folder bench wrote
    status, _, err = run_cli(
        "bench", clips, "--preset", PRESET, "--methods", "fast", "-o", out, "--overwrite"
    )
    assert status == 2 and "was not written by melinvert bench" in err
    status, _, err = run_cli("bench", clips, "--preset", PRESET, "--methods", "fast", "-o", out, "--resume")
    assert status == 2 and "cannot resume" in err
    assert (out / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    for line in err.strip().splitlines():
        assert line.startswith("melinvert: error: ") and "Traceback" not in line


def test_bad_methods_and_inputs_refused(tmp_path: Path, run_cli) -> None:
    clips = make_clips(tmp_path / "clips")
    status, _, err = run_cli("bench", clips, "--preset", PRESET, "--methods", "fats", "-o", tmp_path / "o")
    assert status == 2 and "unknown method 'fats'" in err and "fast" in err
    status, _, err = run_cli("bench", tmp_path / "nope", "--preset", PRESET, "-o", tmp_path / "o2")
    assert status == 2 and "does not exist" in err
    status, _, err = run_cli("bench", clips, "--preset", PRESET, "-o", clips)
    assert status == 2 and "inside the output folder" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_missing_matplotlib_is_one_line(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    clips = make_clips(tmp_path / "clips")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, out, err = run_cli("bench", clips, "--preset", PRESET, "-o", tmp_path / "o")
    assert status == 2 and out == ""
    assert err.strip() == (
        "melinvert: error: the bench report needs matplotlib, which is not installed: "
        "pip install 'melinvert[report]'"
    )


def test_interrupt_keeps_finished_then_resume_skips(
    tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import melinvert.pipeline

    clips = make_clips(tmp_path / "clips")
    out = tmp_path / "out"
    real = melinvert.pipeline.invert
    calls: list[str] = []

    def counting(mel, config, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw["method"])
        if interrupt_at and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(mel, config, **kw)

    monkeypatch.setattr(melinvert.pipeline, "invert", counting)
    monkeypatch.setattr(bench, "_warm_up", lambda *a, **k: None)
    argv = ["bench", clips, "--preset", PRESET, "--methods", "fast,nnls", "-o", out, "--no-extras"]

    # Ctrl-C during the second pair: the first is kept, the page is written, exit 130.
    interrupt_at = 2
    status, _, err = run_cli(*argv)
    assert status == 130 and "rerun with --resume" in err
    rows = read_csv(out / "results.csv")
    assert [(r["clip"], r["method"]) for r in rows] == [("a", "fast")]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "audio/a/fast.wav" in page and "audio/a/nnls.wav" not in page and "interrupted" in page
    assert "Interrupted" in (out / "summary.md").read_text(encoding="utf-8")

    # A crash mid-append leaves half a line: resume drops it.
    with open(out / "results.jsonl", "a", encoding="utf-8") as f:
        f.write('{"kind": "pair", "clip": "sub/b", "meth')

    # --resume runs only the three unfinished pairs.
    interrupt_at = 0
    calls.clear()
    status, stdout, _ = run_cli(*argv, "--resume")
    assert status == 0, stdout
    assert len(calls) == 3 and "3 pairs run, 1 resumed" in stdout
    rows = read_csv(out / "results.csv")
    assert sorted((r["clip"], r["method"]) for r in rows) == [
        ("a", "fast"),
        ("a", "nnls"),
        ("sub/b", "fast"),
        ("sub/b", "nnls"),
    ]
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert all(json.loads(ln)["kind"] in ("clip", "pair") for ln in lines)

    # Nothing left to do; a different config is refused; --overwrite starts again.
    calls.clear()
    status, stdout, _ = run_cli(*argv, "--resume")
    assert status == 0 and calls == [] and "0 pairs run, 4 resumed" in stdout
    status, _, err = run_cli(*[a if a != PRESET else "tacotron2-22k-80" for a in argv], "--resume")
    assert status == 2 and "another config" in err
    manifest = json.loads((out / "bench.json").read_text())
    assert len(manifest["commands"]) == 3 and manifest["preset"] == PRESET
    status, stdout, _ = run_cli(
        "bench",
        clips / "a.wav",
        "--preset",
        PRESET,
        "--methods",
        "nnls",
        "-o",
        out,
        "--no-extras",
        "--overwrite",
    )
    assert status == 0 and calls == ["nnls"] and "1 pairs run, 0 resumed" in stdout
    assert not (out / "audio" / "sub").exists() and [r["method"] for r in read_csv(out / "results.csv")] == [
        "nnls"
    ]
    assert "PESQ/STOI skipped (--no-extras)" in read_csv(out / "results.csv")[0]["notes"]


def test_summarise_ranks_by_pesq_else_log_mel() -> None:
    def row(m: str, pesq: float | None, l1: float) -> dict[str, object]:
        return {
            "method": m,
            "pesq_wb": pesq,
            "stoi": 0.9,
            "log_mel_l1": l1,
            "spectral_convergence": 0.1,
            "lsd": 5.0,
            "rms_ratio_db": 0.0,
            "lag_samples": -22,
            "audio_s": 2.0,
            "wall_s": 1.0,
        }

    table, note = bench.summarise(
        [row("x", 3.2, 0.2), row("y", 3.5, 0.3), row("y", 2.5, 0.3)], ["x", "y"], 22050
    )
    assert [e["method"] for e in table] == ["x", "y"] and "PESQ-WB" in note
    assert table[1]["pesq_wb"] == pytest.approx(3.0) and table[1]["clips"] == 2
    assert table[1]["rtf"] == pytest.approx(0.5) and table[0]["abs_lag_ms"] == pytest.approx(22 / 22.05)
    table, note = bench.summarise([row("x", None, 0.4), row("y", 4.0, 0.3)], ["x", "y"], 22050)
    assert [e["method"] for e in table] == ["y", "x"] and "log-mel L1" in note


def test_read_records_drops_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    bench.append_record(path, {"kind": "pair", "clip": "a", "method": "fast", "snr_db": float("inf")})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"kind": "pa')
    recs = bench.read_records(path)
    assert recs == [{"kind": "pair", "clip": "a", "method": "fast", "snr_db": float("inf")}]
    assert path.read_text(encoding="utf-8").endswith("}\n")
    assert os.path.getsize(path) == len(path.read_bytes())

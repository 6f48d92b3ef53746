"""The command-line package: its import graph, start-up cost, output modes, clipping notices,
write failures (one line, exit 2, nothing partial), stale temporary files and signals."""

from __future__ import annotations

import ast
import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import melinvert
from melinvert import io as mio
from melinvert.demo import speech_like
from melinvert.engines import MANIFEST_NAME

CFG = melinvert.get_preset("hifigan-22k-80")
SRC = Path(melinvert.__file__).parent
PRESET = ("--preset", "hifigan-22k-80")


# ---------------------------------------------------------------------- the import graph


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports, at the top or inside functions (not under
    ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            candidates = [target, *(f"{target}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {m: _imports(p, m, set(files)) for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_import_graph_has_no_cycle() -> None:
    graph = _graph()
    assert {
        "melinvert.commands",
        "melinvert.commands.invert",
        "melinvert.bench",
        "melinvert.registry",
    } <= set(graph)
    assert _cycles(graph) == []


def test_tarjan_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]


def test_only_the_command_line_parses_arguments() -> None:
    graph = _graph()
    shell = {m for m in graph if m.startswith("melinvert.commands")} | {"melinvert.cli", "melinvert.__main__"}
    for m, deps in graph.items():
        if m not in shell:
            assert not deps & shell, f"{m} imports the command line"
            text = (SRC.parent / (m.replace(".", "/"))).with_suffix(".py")
            if not text.exists():
                text = SRC.parent / m.replace(".", "/") / "__init__.py"
            assert "argparse" not in text.read_text(encoding="utf-8"), f"{m} uses argparse"


def _loads_torch(*argv: str) -> bool:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['melinvert', *{list(argv)!r}]\n"
        "try:\n    runpy.run_module('melinvert', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1] == "TORCH"


def test_version_and_help_do_not_import_torch() -> None:
    assert not _loads_torch("--version")
    assert not _loads_torch("--help")


def test_presets_does_not_import_torch() -> None:
    assert not _loads_torch("presets")


# ---------------------------------------------------------------------- outputs: modes, clipping


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _mel_file(folder: Path, seconds: float = 1.0, name: str = "a.npy", gain: float = 1.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    y = gain * speech_like(22050, seconds=seconds, seed=0)
    path = folder / name
    melinvert.save_mel(path, melinvert.mel_spectrogram(y, CFG), CFG)
    return path


def test_outputs_get_the_same_mode(tmp_path: Path, run_cli) -> None:
    want = 0o666 & ~_umask()
    wav = tmp_path / "in.wav"
    sf.write(wav, speech_like(22050, 1.0), 22050)
    src = _mel_file(tmp_path)
    assert run_cli("invert", src, "-o", tmp_path / "inv.wav", *PRESET, "--method", "fast", "--quiet")[0] == 0
    assert run_cli("mel", wav, "-o", tmp_path / "m.npy", *PRESET)[0] == 0
    assert (
        run_cli("roundtrip", wav, "-o", tmp_path / "rt.wav", *PRESET, "--method", "fast", "--no-extras")[0]
        == 0
    )
    for name in ("inv.wav", "m.npy", "m.npy.json", "rt.wav"):
        assert (tmp_path / name).stat().st_mode & 0o777 == want, name


def test_invert_tells_about_clipping(tmp_path: Path, run_cli) -> None:
    src = _mel_file(tmp_path, gain=3.0)  # peak 1.5: the inversion must clip
    out = tmp_path / "a.wav"
    status, _, err = run_cli("invert", src, "-o", out, *PRESET, "--method", "fast", "--quiet")
    assert status == 0, err
    z, _ = sf.read(out, dtype="float32")
    n = int(err.split("clipped ")[1].split(" samples")[0])
    assert f"melinvert: note: {out}: clipped" in err and "to [-1, 1]" in err
    assert n == int(np.count_nonzero(np.abs(z) >= 32767 / 32768)) or 0 < n <= z.size
    status, _, err = run_cli(
        "invert", src, "-o", tmp_path / "f.wav", *PRESET, "--method", "fast", "--quiet", "--subtype", "FLOAT"
    )
    assert status == 0 and "clipped" not in err


# ---------------------------------------------------------------------- write failures


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[bool]:
    """Mount a tmpfs at ``where`` (root only); yields whether it worked."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield False
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    try:
        yield done.returncode == 0
    finally:
        if done.returncode == 0:
            subprocess.run(["umount", str(where)], check=False)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)


class _FullFile:
    """A file on a full disk: every write fails with ENOSPC."""

    def __init__(self, f):  # type: ignore[no-untyped-def]
        self._f = f

    def write(self, data):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._f, name)


@pytest.fixture(params=["full", "read-only"])
def bad_folder(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A folder that cannot take a file: ``(folder, reason the error names)``."""
    where = tmp_path / "bad"
    if request.param == "full":
        with _tmpfs(where, "size=64k") as mounted:
            if mounted:
                _fill(where)
            else:  # simulate: every write of melinvert's writers fails with ENOSPC
                real = mio._RecordingFile.__init__
                monkeypatch.setattr(
                    mio._RecordingFile, "__init__", lambda self, f, **kw: real(self, _FullFile(f), **kw)
                )
            yield where, "No space left on device"
    else:
        with _tmpfs(where, "ro,size=64k") as mounted:
            if not mounted:
                if os.geteuid() == 0:
                    pytest.skip("root ignores folder permissions and tmpfs cannot be mounted here")
                where.chmod(0o555)
            yield where, "Read-only file system" if mounted else "Permission denied"
            if not mounted:
                where.chmod(0o755)


def _one_line(err: str, *parts: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("melinvert: note: ")]
    assert len(lines) == 1 and lines[0].startswith("melinvert: error: cannot "), err
    for p in parts:
        assert p in lines[0], (p, err)


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "filler")


def test_write_failures_are_one_line_and_leave_nothing(tmp_path: Path, run_cli, bad_folder) -> None:
    folder, reason = bad_folder
    wav = tmp_path / "in.wav"
    sf.write(wav, speech_like(22050, 1.0), 22050)
    src = _mel_file(tmp_path / "mels")
    runs = {
        "a.wav": ("invert", src, "-o", folder / "a.wav", *PRESET, "--method", "fast", "--quiet"),
        "m.pt": ("mel", wav, "-o", folder / "m.pt", *PRESET),
        "rt.wav": ("roundtrip", wav, "-o", folder / "rt.wav", *PRESET, "--method", "fast", "--no-extras"),
    }
    for name, argv in runs.items():
        status, _, err = run_cli(*argv)
        assert status == 2, err
        _one_line(err, str(folder), reason)
        assert _left(folder) == [], name


@pytest.mark.slow
def test_train_and_bench_write_failures(tmp_path: Path, run_cli, bad_folder) -> None:
    pytest.importorskip("matplotlib", reason="bench draws with matplotlib")
    folder, reason = bad_folder
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        sf.write(clips / f"c{i}.wav", speech_like(22050, 1.0, seed=i), 22050)
    status, _, err = run_cli(
        "train", "refiner", clips, *PRESET, "-o", folder / "run", "--quiet", "--steps", "1",
        "--batch-size", "2", "--crop-frames", "16", "--hparam", "channels=8", "--hparam", "dilations=[1]",
        "--hparam", "fine_hz=0", "--val-n-iter", "2", "--val-fraction", "0.34",
    )  # fmt: skip
    assert status == 2, err
    _one_line(err, str(folder), reason)
    assert not [p for p in folder.rglob("*") if p.is_file() and p.name != "filler"]
    status, _, err = run_cli("bench", clips, *PRESET, "--methods", "fast", "-o", folder / "b", "--no-extras")
    assert status == 2, err
    _one_line(err, str(folder), reason)
    assert not [p for p in folder.rglob("*") if p.is_file() and p.name != "filler"]


# ---------------------------------------------------------------------- temporary files, interrupts


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temps_are_swept_live_ones_kept(tmp_path: Path, run_cli) -> None:
    src = _mel_file(tmp_path / "mels")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a.wav.melinvert-tmp-{_dead_pid()}-0123abcd"
    live = out / f".b.wav.melinvert-tmp-{os.getpid()}-0123abcd"
    other = out / ".a.wav.something-else"
    for p in (stale, live, other):
        p.write_bytes(b"x" * 100)
    status, _, err = run_cli("invert", src, "-o", out / "a.wav", *PRESET, "--method", "fast", "--quiet")
    assert status == 0, err
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.wav", live.name, other.name, MANIFEST_NAME])


class _Interrupting:
    """An inversion stream that yields its first block, then behaves as if Ctrl-C was pressed."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self._stream = stream

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._stream, name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield next(iter(self._stream))
        raise KeyboardInterrupt


def test_interrupted_overwrite_keeps_the_complete_file(
    tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import melinvert.pipeline

    src = _mel_file(tmp_path / "mels")
    out = tmp_path / "a.wav"
    argv = ("invert", src, "-o", out, *PRESET, "--method", "fast", "--quiet")
    assert run_cli(*argv)[0] == 0
    before = out.read_bytes()
    real = melinvert.pipeline.invert_blocks
    monkeypatch.setattr(melinvert.pipeline, "invert_blocks", lambda *a, **k: _Interrupting(real(*a, **k)))
    status, _, err = run_cli(*argv, "--overwrite", "--method", "nnls+pghi+fgla")
    assert status == 130 and "kept the complete" in err, err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.wav", "mels", MANIFEST_NAME])
    # a new output: the best estimate so far is written, with its marker
    status, _, err = run_cli("invert", src, "-o", tmp_path / "b.wav", *PRESET, "--quiet")
    assert status == 130 and "wrote the best estimate so far" in err
    assert sf.info(tmp_path / "b.wav").frames > 0 and (tmp_path / "b.wav.partial").is_file()
    assert not [p for p in tmp_path.iterdir() if mio.TEMP_PATTERN.match(p.name)]


def _start_invert(src: Path, out: Path) -> tuple[subprocess.Popen, bytes]:
    cmd = [
        sys.executable, "-m", "melinvert", "invert", str(src), "-o", str(out), *PRESET,
        "--method", "nnls+pghi+mfgla", "--iters", "100000",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    seen = b""
    deadline = time.monotonic() + 120
    while b"x real time" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096)
    assert b"x real time" in seen, seen[-500:]
    time.sleep(0.5)
    return proc, seen


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_writes_the_best_estimate_and_exits_143(tmp_path: Path) -> None:
    src = _mel_file(tmp_path, seconds=2.0)
    out = tmp_path / "a.wav"
    proc, seen = _start_invert(src, out)
    proc.send_signal(signal.SIGTERM)
    _, err_b = proc.communicate(timeout=60)
    err = (seen + err_b).decode(errors="replace")
    assert proc.returncode == 143, err
    assert "interrupted: wrote the best estimate so far" in err and "melinvert: error: terminated" in err
    assert sf.info(out).frames > 0 and (tmp_path / "a.wav.partial").is_file()
    assert not [p for p in tmp_path.iterdir() if mio.TEMP_PATTERN.match(p.name)]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kill_9_leaves_a_temp_that_the_rerun_removes(tmp_path: Path) -> None:
    src = _mel_file(tmp_path, seconds=2.0)
    out = tmp_path / "a.wav"
    proc, _ = _start_invert(src, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert [p for p in tmp_path.iterdir() if mio.TEMP_PATTERN.match(p.name)], "no temporary file to sweep"
    assert not out.exists()
    rerun = [
        sys.executable,
        "-m",
        "melinvert",
        "invert",
        str(src),
        "-o",
        str(out),
        *PRESET,
        "--method",
        "fast",
    ]
    done = subprocess.run([*rerun, "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sf.info(out).frames > 0
    assert not [p for p in tmp_path.iterdir() if mio.TEMP_PATTERN.match(p.name)]


# ---------------------------------------------------------------------- the writer itself


def test_audio_writer_streams_atomically(tmp_path: Path) -> None:
    y = speech_like(22050, 1.0) * 2.5  # clips
    out = tmp_path / "a.wav"
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), mio.AudioWriter(out, 22050, overwrite=True) as w:
        w.write(y[:10000])
        raise KeyboardInterrupt
    assert out.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
    with mio.AudioWriter(out, 22050, overwrite=True) as w:
        for i in range(0, y.size, 4000):
            w.write(y[i : i + 4000])
    z, _ = sf.read(out, dtype="float32")
    ref = np.clip(y, -1.0, 1.0)
    np.testing.assert_allclose(z, ref, atol=1 / 32768 + 1e-7)
    over = int(np.count_nonzero(np.abs(y) > 1.0))
    assert w.notices == [mio.save_audio(tmp_path / "b.wav", y, 22050)[0].replace("b.wav", "a.wav")]
    assert f"clipped {over} samples" in w.notices[0]
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    with (
        pytest.raises(melinvert.MelinvertError, match="no audio was written"),
        mio.AudioWriter(tmp_path / "c.wav", 8000),
    ):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav"]

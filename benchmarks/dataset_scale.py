"""Dataset scale: files/s and audio-s/s of today's one-file loop, the local engine and local Ray.

Makes N mel files (hifigan-22k-80) in a temporary folder from the development speech in
``../shared/data/speech`` (cut to length, looped if short) or, without it, from a synthesised
voiced signal, then inverts them all with each engine into a fresh folder:

(a) ``loop``: ``load_mel`` -> ``melinvert.invert`` -> ``save_audio`` per file in this process
    (the API one file at a time, warm: the strictest baseline);
    ``before-cli`` (with ``--before CHECKOUT``): the command line of before the engines on the
    folder (one process, the files one at a time: the issue's "one file at a time");
    ``cli-loop``: ``melinvert invert FILE -o OUT`` once per file (a shell loop: a process per
    file), on ``--cli-files`` of them;
(b) ``local-1``, ``local-2``: :func:`melinvert.engines.local.run` with 1 and 2 workers;
(c) ``ray``: :func:`melinvert.engines.ray_engine.run` on a local Ray runtime (start-up timed
    apart), skipped when Ray is not installed.

Also measured: the per-file overhead of each engine (the same run with a task whose processing
costs nothing: load, claim, write, manifest), and peak resident memory against files done (this
process plus its worker processes, sampled every 0.1 s; Ray's workers are not our children and
are not counted).

    nice python benchmarks/dataset_scale.py --files 200 --seconds 2
    python benchmarks/dataset_scale.py                      # 2,000 files of 2 s (a quiet machine)
    python benchmarks/dataset_scale.py --seconds mixed --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import melinvert
from melinvert.engines import Manifest, plan_jobs
from melinvert.engines.local import run as local_run
from melinvert.engines.tasks import InvertTask

CFG = melinvert.get_preset("hifigan-22k-80")
SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "speech"


def _sources() -> list[np.ndarray]:
    clips = []
    for p in sorted(SPEECH.glob("*.wav")) if SPEECH.is_dir() else []:
        y, _, _ = melinvert.load_audio(p, CFG.sample_rate)
        clips.append(y)
    if clips:
        return clips
    t = np.arange(20 * CFG.sample_rate) / CFG.sample_rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    y = sum(np.sin(2 * np.pi * np.cumsum(f0 * k) / CFG.sample_rate) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return [(0.3 * env * y / np.abs(y).max()).astype(np.float32)]


def make_dataset(folder: Path, n: int, seconds: str, seed: int = 0) -> float:
    """N mel files; returns their total audio seconds."""
    rng = np.random.default_rng(seed)
    clips = _sources()
    folder.mkdir(parents=True)
    total = 0.0
    for i in range(n):
        s = float(seconds) if seconds != "mixed" else float(rng.uniform(1, 15))
        clip = clips[i % len(clips)]
        need = round(s * CFG.sample_rate)
        y = np.tile(clip, -(-need // clip.size))[:need]
        start = int(rng.integers(0, max(1, clip.size // 4)))
        y = np.roll(y, -start)
        melinvert.save_mel(folder / f"f{i:05d}.npy", melinvert.mel_spectrogram(y, CFG), CFG)
        total += need / CFG.sample_rate
    return total


class RssSampler:
    """Peak resident memory of this process and its children, and RSS at files-done marks."""

    def __init__(self) -> None:
        self.peak = 0
        self.marks: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def now(self) -> int:
        pids = [os.getpid()]
        try:
            for tid in os.listdir(f"/proc/{os.getpid()}/task"):
                pids += [int(c) for c in Path(f"/proc/{os.getpid()}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
        return sum(self._rss(p) for p in set(pids))

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> RssSampler:
        self.peak = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def progress(self, n_files: int) -> Any:
        step = max(1, n_files // 4)

        def callback(p: Any) -> None:
            done = p.files_done + p.files_failed + p.files_skipped
            if done // step > len(self.marks) - 1 or p.finished:
                self.marks.append((done, self.peak))

        return callback


class NoWorkTask(InvertTask):
    """InvertTask whose processing is free (silence of the right length): the engine's own cost."""

    def process(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return [np.zeros(CFG.n_samples(m.shape[-1]), np.float32) for m in items]


def bench_loop(src: Path, out: Path, method: str) -> dict[str, Any]:
    files = sorted(src.glob("*.npy"))
    with RssSampler() as rss:
        t0 = time.perf_counter()
        compute = 0.0
        for f in files:
            mel, _ = melinvert.load_mel(f, config=CFG)
            t1 = time.perf_counter()
            y = melinvert.invert(mel, CFG, method=method)
            compute += time.perf_counter() - t1
            melinvert.save_audio(out / f.with_suffix(".wav").name, y, CFG.sample_rate)
        wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "overhead_per_file_ms": 1000 * (wall - compute) / len(files),
        "peak_rss": rss.peak,
    }


def bench_cli_loop(src: Path, out: Path, method: str, n: int) -> dict[str, Any]:
    """What a user ran before the engines: ``melinvert invert FILE -o OUT`` once per file
    (a fresh process each: imports and the first call's set-up every time), on the first ``n``
    files; the rate is per file, so the wall time is scaled to all files."""
    files = sorted(src.glob("*.npy"))
    t0 = time.perf_counter()
    for f in files[:n]:
        subprocess.run(
            [sys.executable, "-m", "melinvert", "invert", str(f), "-o", str(out / f"{f.stem}.wav"),
             "--method", method, "-q"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    per_file = (time.perf_counter() - t0) / min(n, len(files))
    return {"wall_s": per_file * len(files), "per_file_s": per_file, "sampled_files": min(n, len(files)),
            "peak_rss": 0}  # fmt: skip


def bench_before(src: Path, out: Path, method: str, checkout: Path) -> dict[str, Any]:
    """``melinvert invert FOLDER -o OUT`` of a checkout from before the engines (one process,
    the files one at a time), e.g. ``git worktree add /tmp/before 4b93fef~1``."""
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    cmd = [sys.executable, "-m", "melinvert", "invert", str(src), "-o", str(out), "--method", method,
           "--preset", "hifigan-22k-80", "--quiet"]  # fmt: skip
    with RssSampler() as rss:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "peak_rss": rss.peak}


def bench_engine(
    src: Path, out: Path, task: Any, engine: str, workers: int, batch: int | None = None
) -> dict[str, Any]:
    jobs = plan_jobs([src], out, ".wav", extensions=(".npy",))
    with RssSampler() as rss:
        t0 = time.perf_counter()
        if engine == "ray":
            from melinvert.engines import ray_engine

            s = ray_engine.run(jobs, task, manifest=Manifest.in_folder(out), progress=rss.progress(len(jobs)))
        else:
            s = local_run(
                jobs,
                task,
                manifest=Manifest.in_folder(out),
                workers=workers,
                batch=batch,
                progress=rss.progress(len(jobs)),
            )
        wall = time.perf_counter() - t0
    assert s.done == len(jobs), s.lines()
    return {"wall_s": wall, "peak_rss": rss.peak, "rss_at_files_done": rss.marks}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seconds", choices=["2", "10", "mixed"], default="2")
    ap.add_argument("--method", default="fast")
    ap.add_argument("--workers", default="1,2", help="worker counts for the local engine, e.g. 1,2")
    ap.add_argument("--batch", type=int, help="items per batch (default: the engine's automatic choice)")
    ap.add_argument(
        "--cli-files", type=int, default=40, help="files for the one-process-per-file CLI loop (0: skip it)"
    )
    ap.add_argument(
        "--before", type=Path, help="a checkout from before the engines: its CLI's folder run is a row too"
    )
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--no-overhead", action="store_true", help="skip the per-file overhead runs")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="melinvert-dataset-"))
    try:
        t0 = time.perf_counter()
        audio_s = make_dataset(tmp / "in", args.files, args.seconds)
        print(
            f"{args.files} mel files, {audio_s:.0f} s of audio, made in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        task = InvertTask(CFG, method=args.method)
        runs: dict[str, dict[str, Any]] = {}
        (tmp / "loop").mkdir()
        runs["loop"] = bench_loop(tmp / "in", tmp / "loop", args.method)
        if args.before:
            runs["before-cli"] = bench_before(tmp / "in", tmp / "before", args.method, args.before)
        if args.cli_files:
            (tmp / "cli").mkdir()
            runs["cli-loop"] = bench_cli_loop(tmp / "in", tmp / "cli", args.method, args.cli_files)
        for w in [int(x) for x in args.workers.split(",")]:
            runs[f"local-{w}"] = bench_engine(tmp / "in", tmp / f"local-{w}", task, "local", w, args.batch)
            if not args.no_overhead:
                free = bench_engine(tmp / "in", tmp / f"free-{w}", NoWorkTask(CFG), "local", w)
                runs[f"local-{w}"]["overhead_per_file_ms"] = 1000 * free["wall_s"] / args.files
        if not args.no_ray:
            try:
                import ray
            except ImportError:
                print("ray: not installed, skipped")
            else:
                t1 = time.perf_counter()
                ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
                startup = time.perf_counter() - t1
                runs["ray"] = bench_engine(tmp / "in", tmp / "ray", task, "ray", 0)
                runs["ray"]["startup_s"] = startup
                if not args.no_overhead:
                    free = bench_engine(tmp / "in", tmp / "free-ray", NoWorkTask(CFG), "ray", 0)
                    runs["ray"]["overhead_per_file_ms"] = 1000 * free["wall_s"] / args.files
                ray.shutdown()
        base = runs["loop"]["wall_s"]
        cli = runs.get("cli-loop", {}).get("wall_s")
        print(
            f"{'engine':<10}{'files/s':>10}{'audio-s/s':>11}{'vs loop':>9}{'vs cli-loop':>13}"
            f"{'overhead ms/file':>18}{'peak RSS MB':>13}"
        )
        for name, r in runs.items():
            r["files_per_s"] = args.files / r["wall_s"]
            r["audio_s_per_s"] = audio_s / r["wall_s"]
            r["speedup_vs_loop"] = base / r["wall_s"]
            r["speedup_vs_cli_loop"] = None if cli is None else cli / r["wall_s"]
            oh = r.get("overhead_per_file_ms")
            vs_cli = "" if cli is None else f"{cli / r['wall_s']:.2f}x"
            print(
                f"{name:<10}{r['files_per_s']:>10.2f}{r['audio_s_per_s']:>11.1f}{r['speedup_vs_loop']:>8.2f}x"
                f"{vs_cli:>13}{'' if oh is None else f'{oh:.1f}':>18}{r['peak_rss'] / 2**20:>13.0f}"
            )
        for name, r in runs.items():
            if r.get("rss_at_files_done"):
                marks = ", ".join(f"{n}: {m / 2**20:.0f}" for n, m in r["rss_at_files_done"])
                print(f"{name}: peak RSS MB by files done: {marks}")
        if args.json:
            meta = {"files": args.files, "seconds": args.seconds, "method": args.method, "audio_s": audio_s}
            Path(args.json).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

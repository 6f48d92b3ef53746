"""melinvert in a user's evaluation script: cold process, librosa and numpy metrics in between.

The flow of issue 17. Each run is a fresh Python process (started by this script, so the
first call of the process is included), which, for every clip in turn:

1. inverts librosa's mel of the clip with ``librosa.feature.inverse.mel_to_audio`` (as
   ``benchmarks/vs_librosa.py`` calls it: librosa's default mel, its defaults);
2. inverts the preset's mel of the same clip with each melinvert method (``fast``, then
   ``default``), once each, no warm-up; the mels are computed beforehand by this parent
   process and read from ``.npy`` files, as a script reads a TTS model's mels, so that the
   child's first melinvert call is also its first torch computation;
3. scores every output with :func:`melinvert.metrics.score` (PESQ-WB, STOI: numpy/C code).

Clips: the 10 development clips (``../shared/data/speech``, 1.8-9.7 s) and longer ones made by
concatenating them (12-17 s). Reported per method, over all clips: ``x librosa`` = librosa's
seconds / the method's seconds (sums over the clips), the method's own real-time factor
(audio seconds / seconds) and ``fast/default`` (default's seconds / fast's). ``--runs 3``
averages three processes. After the mixed flow the same process runs the isolated flow of
``vs_librosa.py`` (per clip: a warm-up, then the best of ``--repeat``) on the same clips.

``--profile`` adds, in another fresh process, where ``fast`` and ``default`` spend their
time on one clip (per step, the per-call set-up, the first call's extra cost), against the FFT
floor (one ``rfft`` + ``irfft`` pair of the block's frames per iteration).

melinvert's modules are compiled to bytecode first (:func:`precompile`), as an installation
leaves them. Timing is wall time (``--clock cpu``: the process's CPU time, for a machine shared with other
work, with ``--threads 1``); speed figures are ratios measured within one process.

Usage::

    python benchmarks/mixed_flow.py [--runs 3] [--threads 0] [--clock wall] [--profile]
        [--clips DIR] [--preset hifigan-22k-80] [--methods fast,default] [--limit N]
        [--no-isolated] [--write benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = ROOT.parent / "shared" / "data" / "speech"
SR_LIBROSA = 22050


# ---------------------------------------------------------------------- clips


def load_clips(folder: Path) -> list[tuple[str, np.ndarray, int]]:
    """``(name, mono float64 audio, rate)`` of every WAV/FLAC in ``folder``, sorted by name."""
    import soundfile as sf

    out = []
    for fn in sorted([*folder.glob("*.wav"), *folder.glob("*.flac")]):
        y, sr = sf.read(fn, dtype="float64", always_2d=True)
        out.append((fn.stem, y.mean(axis=1), sr))
    return out


def with_long_clips(
    clips: list[tuple[str, np.ndarray, int]], rate: int, lo: float = 12.0, hi: float = 17.0
) -> list[tuple[str, np.ndarray, int]]:
    """The clips resampled to ``rate``, then concatenations of them of ``lo``..``hi`` seconds
    (first fit, in order; a group that never reaches ``lo`` is left out)."""
    import soxr

    same = [(n, y if sr == rate else soxr.resample(y, sr, rate, "VHQ"), rate) for n, y, sr in clips]
    groups: list[list[int]] = []
    for i, (_, y, _) in enumerate(same):
        sec = len(y) / rate
        for g in groups:
            total = sum(len(same[j][1]) for j in g) / rate
            if total < lo and total + sec <= hi:
                g.append(i)
                break
        else:
            groups.append([i])
    long = [
        ("+".join(same[j][0] for j in g), np.concatenate([same[j][1] for j in g]), rate)
        for g in groups
        if len(g) > 1 and sum(len(same[j][1]) for j in g) / rate >= lo
    ]
    return same + long


# ---------------------------------------------------------------------- the child process


def faults() -> int:
    """Minor page faults of this process so far (fresh memory the kernel had to map)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _clock(kind: str):
    return time.process_time if kind == "cpu" else time.perf_counter


def child(args: argparse.Namespace) -> dict:
    """One cold process: the mixed flow, then the isolated flow. Returns rows per method."""
    t0 = time.perf_counter()
    import torch

    t_torch = time.perf_counter() - t0
    import librosa

    import melinvert as mi
    from melinvert import metrics

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = _clock(args.clock)
    cfg = mi.get_preset(args.preset)
    work = Path(args.work)
    clips = json.loads((work / "clips.json").read_text())
    methods = [m for m in args.methods.split(",") if m]
    mixed: dict[str, list[dict]] = {"librosa": [], **{m: [] for m in methods}}
    first_call = None
    for c in clips:
        y = np.load(work / f"{c['id']}.audio.npy")
        y_lr = y.astype(np.float32)  # the clips are at 22.05 kHz already (preset rate checked)
        m_lr = librosa.feature.melspectrogram(y=y_lr, sr=SR_LIBROSA)
        t = clock()
        est_lr = librosa.feature.inverse.mel_to_audio(m_lr, sr=SR_LIBROSA)
        mixed["librosa"].append({"seconds": clock() - t, "audio_s": c["seconds"], "est": est_lr})
        mel = np.load(work / f"{c['id']}.mel.npy")
        for m in methods:
            f = faults()
            t = clock()
            est = mi.invert(mel, cfg, method=m, seed=0)
            sec = clock() - t
            first_call = sec if first_call is None else first_call
            mixed[m].append({"seconds": sec, "audio_s": c["seconds"], "est": est, "faults": faults() - f})
        for rows in mixed.values():  # the user's scoring, between this clip and the next
            r = rows[-1]
            s = metrics.score(y, r.pop("est").astype(np.float64), cfg.sample_rate, config=cfg)
            r["pesq_wb"], r["stoi"] = s["pesq_wb"], s["stoi"]
        print(f"  {c['name']}: mixed done", file=sys.stderr, flush=True)
    out = {
        "mixed": mixed,
        "first_call_s": first_call,
        "import_torch_s": t_torch,
        "threads": torch.get_num_threads(),
    }
    if args.isolated:
        out["isolated"] = isolated(clips, work, cfg, methods, args, clock)
    return out


def isolated(clips: list[dict], work: Path, cfg, methods: list[str], args, clock) -> dict[str, list[dict]]:
    """``vs_librosa.py``'s measurement: per clip and method, a warm-up, then the best of ``repeat``."""
    import librosa

    import melinvert as mi

    rows: dict[str, list[dict]] = {"librosa": [], **{m: [] for m in methods}}

    def best(fn) -> tuple[float, float]:
        out, f = float("inf"), faults()
        for _ in range(args.repeat):
            t = clock()
            fn()
            out = min(out, clock() - t)
        return out, (faults() - f) / args.repeat

    for c in clips:
        y_lr = np.load(work / f"{c['id']}.audio.npy").astype(np.float32)
        m_lr = librosa.feature.melspectrogram(y=y_lr, sr=SR_LIBROSA)
        librosa.feature.inverse.mel_to_audio(m_lr[:, :20], sr=SR_LIBROSA)
        sec, flt = best(lambda m_lr=m_lr: librosa.feature.inverse.mel_to_audio(m_lr, sr=SR_LIBROSA))
        rows["librosa"].append({"seconds": sec, "audio_s": c["seconds"], "faults": flt})
        mel = np.load(work / f"{c['id']}.mel.npy")
        for m in methods:
            mi.invert(mel[:, : max(cfg.min_frames, 40)], cfg, method=m, seed=0)
            sec, flt = best(lambda mel=mel, m=m: mi.invert(mel, cfg, method=m, seed=0))
            rows[m].append({"seconds": sec, "audio_s": c["seconds"], "faults": flt})
    return rows


# ---------------------------------------------------------------------- the parent


def prepare(args: argparse.Namespace, work: Path) -> list[dict]:
    """Write every clip's audio and the preset's mel of it to ``work`` (``.npy``)."""
    import melinvert as mi

    cfg = mi.get_preset(args.preset)
    if cfg.sample_rate != SR_LIBROSA:
        raise SystemExit(f"--preset must be at {SR_LIBROSA} Hz (librosa's rate), not {cfg.sample_rate}")
    folder = Path(args.clips)
    if not folder.is_dir():
        raise SystemExit(f"no clips folder {folder}")
    clips = with_long_clips(load_clips(folder), cfg.sample_rate)
    if args.limit:
        clips = clips[: args.limit]
    meta = []
    for i, (name, y, sr) in enumerate(clips):
        y32 = y.astype(np.float32)
        np.save(work / f"{i}.audio.npy", y)
        np.save(work / f"{i}.mel.npy", mi.mel_spectrogram(y32, cfg))
        meta.append({"id": i, "name": name, "seconds": len(y) / sr})
    (work / "clips.json").write_text(json.dumps(meta))
    return meta


def precompile() -> None:
    """Compile melinvert's modules to bytecode before any timed process, as ``pip install``
    does for an installed package: the cold processes then load ``.pyc`` files as a user's
    do (an editable install, or an environment with ``PYTHONDONTWRITEBYTECODE`` set, as this
    project's sandbox has, would otherwise compile every module in the first call's imports)."""
    import compileall

    import melinvert

    compileall.compile_dir(Path(melinvert.__file__).parent, quiet=1)


def run_child(args: argparse.Namespace, work: Path, mode: str) -> dict:
    cmd = [sys.executable, __file__, f"--{mode}", "--work", str(work)]
    for k in ("preset", "methods", "threads", "clock", "repeat", "profile_clip", "profile_calls"):
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    if not args.isolated:
        cmd.append("--no-isolated")
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def totals(rows: list[dict]) -> tuple[float, float]:
    return sum(r["seconds"] for r in rows), sum(r["audio_s"] for r in rows)


def summarise(runs: list[dict], key: str, methods: list[str]) -> list[str]:
    """Table lines: per method the mean over runs of x librosa, RTF, and fast/default."""
    per: dict[str, dict[str, list[float]]] = {
        m: {"x": [], "rtf": [], "sec": []} for m in ["librosa", *methods]
    }
    for r in runs:
        lib, _ = totals(r[key]["librosa"])
        for m in per:
            sec, audio = totals(r[key][m])
            per[m]["x"].append(lib / sec)
            per[m]["rtf"].append(audio / sec)
            per[m]["sec"].append(sec)
    lines = [
        "| method | x librosa (mean of runs) | each run | RTF | page faults per call | PESQ-WB | STOI |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, v in per.items():
        q = [x for r in runs for x in r[key][m] if x.get("pesq_wb") is not None]
        pesq = f"{np.mean([x['pesq_wb'] for x in q]):.3f}" if q else "-"
        stoi = f"{np.mean([x['stoi'] for x in q]):.4f}" if q else "-"
        each = " / ".join(f"{x:.1f}" for x in v["x"])
        flt = [x["faults"] for r in runs for x in r[key][m] if "faults" in x]
        flt_s = f"{np.mean(flt):.0f}" if flt else "-"
        lines.append(
            f"| {m} | {np.mean(v['x']):.1f} | {each} | {np.mean(v['rtf']):.1f} | {flt_s} | {pesq} | {stoi} |"
        )
    if "fast" in per and "default" in per:
        ratios = [d / f for d, f in zip(per["default"]["sec"], per["fast"]["sec"])]
        lines.append("")
        lines.append(
            f"fast / default speed: {np.mean(ratios):.2f} (runs: {' / '.join(f'{x:.2f}' for x in ratios)})"
        )
    return lines


def report(args: argparse.Namespace, meta: list[dict], runs: list[dict], profile: dict | None) -> str:
    import librosa
    import torch

    methods = [m for m in args.methods.split(",") if m]
    audio = sum(c["seconds"] for c in meta)
    lines = [
        f"Command: `python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`  ",
        f"Clips: {len(meta)} ({audio:.1f} s; {min(c['seconds'] for c in meta):.1f}-"
        f"{max(c['seconds'] for c in meta):.1f} s), preset `{args.preset}`; torch {torch.__version__}, "
        f"librosa {librosa.__version__}, {runs[0]['threads'] if runs else '?'} torch threads on "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), load average "
        f"{os.getloadavg()[0]:.1f} at the end; {len(runs)} cold process(es); clock: {args.clock}.",
    ]
    if runs:
        lines += ["", "Mixed flow (first call included):", "", *summarise(runs, "mixed", methods)]
        firsts = ", ".join(f"{r['first_call_s']:.3f}" for r in runs)
        lines.append(f"First melinvert call of each process ({methods[0]}, first clip): {firsts} s")
        if args.isolated:
            lines += [
                "",
                f"Isolated flow (warm-up, best of {args.repeat}):",
                "",
                *summarise(runs, "isolated", methods),
            ]
    if profile:
        lines += ["", *profile_table(profile)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- the profile


class Probe:
    """Times named functions of melinvert by wrapping them (inclusive times, call counts)."""

    def __init__(self, clock):
        self.clock = clock
        self.acc: dict[str, list[float]] = {}
        self.undo: list[tuple[object, str, object]] = []

    def add(self, label: str, seconds: float) -> None:
        a = self.acc.setdefault(label, [0.0, 0])
        a[0] += seconds
        a[1] += 1

    def wrap(self, owner: object, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*a, **k):
            t = self.clock()
            try:
                return fn(*a, **k)
            finally:
                self.add(label, self.clock() - t)

        self.undo.append((owner, attr, fn))
        setattr(owner, attr, timed)

    def wrap_cm(self, owner: object, attr: str, label: str) -> None:
        """A context manager: time its entry and exit, not the body."""
        import contextlib

        cm = getattr(owner, attr)
        probe = self

        @contextlib.contextmanager
        def timed(*a, **k):
            t = probe.clock()
            inner = cm(*a, **k)
            inner.__enter__()
            probe.add(label, probe.clock() - t)
            try:
                yield
            finally:
                t = probe.clock()
                inner.__exit__(None, None, None)
                probe.add(label, probe.clock() - t)

        self.undo.append((owner, attr, cm))
        setattr(owner, attr, timed)

    def take(self) -> dict[str, list[float]]:
        out, self.acc = self.acc, {}
        return out


def instrument(probe: Probe) -> None:
    """Wrap the parts of an inversion the profile reports (see :func:`profile_table`)."""
    from melinvert import dsp, phase, pipeline, registry, stage

    for attr, label in (
        ("parse_method", "plan parsing"),
        ("_validate_mel", "validation (finite, range)"),
        ("decode_mel", "decode (undo ln)"),
        ("mel_operator", "operator lookup / build"),
        ("to_output", "to_output"),
    ):
        probe.wrap(pipeline, attr, label)
    probe.wrap_cm(pipeline, "_flush_denormals", "denormal flush switching")
    probe.wrap(dsp.FrameOps, "__init__", "FrameOps + window set-up")
    env = dsp.FrameOps.inv_env

    def inv_env(self):
        if self._inv_env is not None:
            return self._inv_env
        t = probe.clock()
        out = env.fget(self)
        probe.add("overlap-add envelope", probe.clock() - t)
        return out

    probe.undo.append((dsp.FrameOps, "inv_env", env))
    dsp.FrameOps.inv_env = property(inv_env)
    probe.wrap(dsp.FrameOps, "synthesis", "synthesis (irfft, overlap-add)")
    probe.wrap(dsp.FrameOps, "analysis", "analysis (pad, frames, rfft)")
    probe.wrap(dsp.FrameOps, "consistent", "consistency step (synthesis + analysis, fused)")
    probe.wrap(phase.MelRefit, "__call__", "mel refit")
    probe.wrap(phase.MelRefit, "loss", "loss for progress")
    probe.wrap(phase, "project_magnitude", "magnitude projection")
    probe.wrap(phase, "momentum", "momentum")
    probe.wrap(stage.Reporter, "observe", "best-so-far (progress)")
    registry._ensure_loaded()
    for name, st in registry._STAGES.items():  # every stage (an alias runs its stage's fn)
        probe.wrap(st, "fn", f"step {name}")  # frozen dataclass: set through object.__setattr__
    probe.wrap(stage.Context, "stage_magnitude", "stage-1 layout (transpose)")


def profile_child(args: argparse.Namespace) -> dict:
    """Profile ``fast`` and ``default`` on one clip in this cold process."""
    import torch

    import melinvert as mi
    from melinvert.dsp import FrameOps

    if args.threads:
        torch.set_num_threads(args.threads)
    clock = _clock(args.clock)
    cfg = mi.get_preset(args.preset)
    work = Path(args.work)
    meta = json.loads((work / "clips.json").read_text())
    c = min(meta, key=lambda c: abs(c["seconds"] - args.profile_clip))
    mel = np.load(work / f"{c['id']}.mel.npy")
    methods = [m for m in args.methods.split(",") if m]
    probe = Probe(clock)
    _object_setattr_patch()
    instrument(probe)
    out: dict = {"clip": c["name"], "seconds": c["seconds"], "threads": torch.get_num_threads(), "first": {}}
    for m in methods:  # cold: the first call of the process, then the first of each method
        t = clock()
        mi.invert(mel, cfg, method=m, seed=0)
        out["first"][m] = {"total": clock() - t, "parts": probe.take()}
    steady: dict = {m: {"total": 0.0, "parts": {}} for m in methods}
    for _ in range(args.profile_calls):
        for m in methods:
            t = clock()
            mi.invert(mel, cfg, method=m, seed=0)
            steady[m]["total"] += (clock() - t) / args.profile_calls
            for k, (s, n) in probe.take().items():
                a = steady[m]["parts"].setdefault(k, [0.0, 0])
                a[0] += s / args.profile_calls
                a[1] += n / args.profile_calls
    out["steady"] = steady
    # the FFT floor: one rfft + irfft pair of this block's frames
    ops = FrameOps(cfg, cfg.n_samples(mel.shape[-1]), dtype=torch.float32, device="cpu")
    frames = torch.randn(1, ops.n_frames, cfg.n_fft)
    best = float("inf")
    for _ in range(30):
        t = clock()
        torch.fft.irfft(torch.fft.rfft(frames, dim=-1), n=cfg.n_fft, dim=-1)
        best = min(best, clock() - t)
    out["fft_floor"] = best
    out["frames"] = ops.n_frames
    return out


def _object_setattr_patch() -> None:
    """Let :meth:`Probe.wrap` set ``fn`` on the frozen Stage records."""
    from melinvert import registry

    def setattr_frozen(self, name, value):
        object.__setattr__(self, name, value)

    registry.Stage.__setattr__ = setattr_frozen  # only in this benchmark's child process


PROFILE_ROWS = (
    ("plan parsing", "per call"),
    ("step sharpen", "sharpen (a recording's mel: measured, left as it is)"),
    ("validation (finite, range)", "per call"),
    ("decode (undo ln)", "per call"),
    ("operator lookup / build", "per call"),
    ("FrameOps + window set-up", "per call"),
    ("overlap-add envelope", "per call"),
    ("denormal flush switching", "per call"),
    ("step pinv", "pinv (the clipped pseudo-inverse, the layout)"),
    ("step nnls", "nnls (all iterations, the pinv start, the layout)"),
    ("stage-1 layout (transpose)", "within stage 1"),
    ("step pghi", "pghi"),
    ("step agla", "magla (set-up, iterations, final synthesis)"),
    ("synthesis (irfft, overlap-add)", "within magla (iterations + 1)"),
    ("analysis (pad, frames, rfft)", "within magla (per iteration)"),
    ("consistency step (synthesis + analysis, fused)", "within magla (per iteration)"),
    ("mel refit", "within magla (per iteration)"),
    ("magnitude projection", "within magla (iterations + 1)"),
    ("momentum", "within magla (3 per iteration)"),
    ("loss for progress", "within magla (per iteration)"),
    ("best-so-far (progress)", "within magla (per iteration)"),
    ("to_output", "per call"),
)


def profile_table(p: dict) -> list[str]:
    methods = list(p["steady"])
    floor = p["fft_floor"]
    head = " | ".join(f"{m} ms | {m} x floor" for m in methods)
    lines = [
        f"Profile of one clip ({p['clip']}, {p['seconds']:.1f} s, {p['frames']} frames), "
        f"{p['threads']} torch threads; steady state = mean of the calls after the first of each "
        f"method; FFT floor (one rfft + irfft of the frames) = {floor * 1000:.2f} ms; "
        "'x floor' = ms / floor ms.",
        "",
        f"| part | where | calls | {head} |",
        "|---|---|---|" + "---|---|" * len(methods),
    ]
    for key, where in PROFILE_ROWS:
        cells, calls = [], []
        for m in methods:
            s, n = p["steady"][m]["parts"].get(key, [0.0, 0])
            calls.append(f"{n:.0f}")
            cells.append(f"{s * 1000:.2f} | {s / floor:.2f}")
        lines.append(f"| {key} | {where} | {'/'.join(calls)} | {' | '.join(cells)} |")
    cells = [
        f"**{p['steady'][m]['total'] * 1000:.1f}** | {p['steady'][m]['total'] / floor:.1f}" for m in methods
    ]
    lines.append(f"| **whole call** | | | {' | '.join(cells)} |")
    cells = []
    for m in methods:
        s, n = p["steady"][m]["parts"].get("consistency step (synthesis + analysis, fused)", [0.0, 0])
        iters = max(n, 1)
        agla = p["steady"][m]["parts"].get("step agla", [0.0, 0])[0]
        per = agla / (iters + 1)  # iterations + the final synthesis, approximately
        cells.append(f"{per * 1000:.2f} | {per / floor:.2f}")
    lines.append(f"| magla step per iteration | | | {' | '.join(cells)} |")
    cells = [
        f"{(p['first'][m]['total'] - p['steady'][m]['total']) * 1000:.1f} | "
        f"{(p['first'][m]['total'] - p['steady'][m]['total']) / floor:.1f}"
        for m in methods
    ]
    lines.append(
        f"| first call's extra (first - steady) | {methods[0]} first in the process | | {' | '.join(cells)} |"
    )
    extra = {}
    for m in methods:
        for k, (s, _) in p["first"][m]["parts"].items():
            d = s - p["steady"][m]["parts"].get(k, [0.0, 0])[0]
            if d > 0.002:
                extra[k] = extra.get(k, 0.0) + d
    if extra:
        worst = sorted(extra.items(), key=lambda kv: -kv[1])[:6]
        lines.append("")
        lines.append(
            "First calls' extra time by part (ms, both methods): "
            + ", ".join(f"{k} {v * 1000:.1f}" for k, v in worst)
        )
    return lines


# ---------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", default=str(DEFAULT_CLIPS))
    p.add_argument("--preset", default="hifigan-22k-80")
    p.add_argument("--methods", default="fast,default")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--repeat", type=int, default=2, help="best of this many in the isolated flow")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--no-isolated", dest="isolated", action="store_false")
    p.add_argument("--profile", action="store_true", help="also profile fast/default in a fresh process")
    p.add_argument("--profile-only", action="store_true")
    p.add_argument(
        "--profile-clip", type=float, default=10.0, help="profile the clip nearest this length (s)"
    )
    p.add_argument("--profile-calls", type=int, default=5)
    p.add_argument("--write", default="", help="append the tables to this markdown file")
    p.add_argument("--json", default="", help="write every run's raw figures here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child or args.profile_child:
        out = child(args) if args.child else profile_child(args)
        print(json.dumps(out))
        return
    precompile()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        meta = prepare(args, work)
        runs = []
        if not args.profile_only:
            for i in range(args.runs):
                print(f"run {i + 1} of {args.runs}", file=sys.stderr, flush=True)
                runs.append(run_child(args, work, "child"))
        profile = run_child(args, work, "profile-child") if args.profile or args.profile_only else None
    text = report(args, meta, runs, profile)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"clips": meta, "runs": runs, "profile": profile}))
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()

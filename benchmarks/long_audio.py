"""Peak memory of ``melinvert invert`` (and ``mel``, ``inspect``, ``roundtrip``) on long audio.

The mel of one minute of the project's speech-like signal (hifigan-22k-80) is tiled to 60
minutes and saved as ``.npy``; each file is inverted by the CLI in a fresh process, which
reports its own peak resident set size (``ru_maxrss``). The target: 60 minutes peak no more
than 200 MB above 1 minute, since the CLI reads the mel memory-mapped and writes the WAV block
by block.

With ``--commands invert,mel,inspect,roundtrip`` the same minutes of audio also go through
``melinvert mel`` (a WAV of that length), ``inspect`` (its mel) and ``roundtrip`` (the WAV,
without PESQ/STOI), each in a fresh process, and their peaks are reported as a ratio to
``invert``'s (issue 16: each within 2x).

Usage: ``python benchmarks/long_audio.py [--minutes 60] [--method fast] [--commands ...]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
from melinvert.commands import main
t0 = time.perf_counter()
status = main(sys.argv[1:])
print(json.dumps({"status": status, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(mel_path: Path, out: Path, method: str) -> dict:
    return child("invert", str(mel_path), "-o", str(out), "--preset", "hifigan-22k-80", "--method", method,
                 "--quiet", "--overwrite")  # fmt: skip


def child(*argv: str) -> dict:
    """One melinvert command in a fresh process: its status, seconds and peak RSS (MB)."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def other_commands(d: Path, minutes: int, method: str, commands: list[str]) -> list[tuple[str, float, float]]:
    """Peak RSS of invert / mel / inspect / roundtrip on ``minutes`` of speech-like audio."""
    import soundfile as sf

    from melinvert.demo import speech_like

    one = speech_like(22050, seconds=60.0, seed=0).astype(np.float32)
    wav = d / "long.wav"
    with sf.SoundFile(wav, "w", samplerate=22050, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write(one)
    mel = d / "long_mel.npy"
    pre = ("--preset", "hifigan-22k-80")
    argv = {
        "mel": ("mel", str(wav), "-o", str(mel), *pre, "--overwrite", "--quiet"),
        "inspect": ("inspect", str(mel)),
        "invert": ("invert", str(mel), "-o", str(d / "inv.wav"), *pre, "--method", method, "--quiet",
                   "--overwrite"),
        "roundtrip": ("roundtrip", str(wav), "-o", str(d / "rt.wav"), *pre, "--method", method, "--no-extras",
                      "--overwrite"),
    }  # fmt: skip
    rows = []
    for name in ["mel", *[c for c in commands if c != "mel"]]:  # mel first: the others read its output
        r = child(*argv[name])
        rows.append((name, r["peak_rss_mb"], r["seconds"]))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--method", default="fast")
    p.add_argument("--commands", default="", help="also measure these on a WAV: invert,mel,inspect,roundtrip")
    args = p.parse_args()
    if args.commands:
        commands = [c.strip() for c in args.commands.split(",") if c.strip()]
        with tempfile.TemporaryDirectory() as d:
            rows = other_commands(Path(d), args.minutes, args.method, commands)
        base = dict((n, rss) for n, rss, _ in rows).get("invert")
        print(f"`python benchmarks/long_audio.py --minutes {args.minutes} --method {args.method} "
              f"--commands {args.commands}`\n")  # fmt: skip
        print("| command | peak RSS MB | x invert's | wall s |")
        print("|---|---|---|---|")
        for name, rss, wall in rows:
            ratio = f"{rss / base:.2f}" if base else ""
            print(f"| {name} | {rss:.0f} | {ratio} | {wall:.0f} |")
        return
    import melinvert as mi
    from melinvert.demo import speech_like

    cfg = mi.get_preset("hifigan-22k-80")
    one = mi.mel_spectrogram(speech_like(cfg.sample_rate, seconds=60.0, seed=0), cfg)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        short, long_ = d / "one_minute.npy", d / f"{args.minutes}_minutes.npy"
        np.save(short, one)
        np.save(long_, np.tile(one, (1, args.minutes)))
        del one
        rows = []
        for path in (short, long_):
            t0 = time.perf_counter()
            r = run(path, path.with_suffix(".wav"), args.method)
            audio_s = (
                mi.get_preset("hifigan-22k-80").n_samples(np.load(path, mmap_mode="r").shape[-1])
                / cfg.sample_rate
            )
            rows.append(
                (path.name, path.stat().st_size / 2**20, audio_s, r["peak_rss_mb"], time.perf_counter() - t0)
            )
    print(f"`python benchmarks/long_audio.py --minutes {args.minutes} --method {args.method}`\n")
    print("| mel file | mel MB | audio min | peak RSS MB | wall s |")
    print("|---|---|---|---|---|")
    for name, mb, audio_s, rss, wall in rows:
        print(f"| {name} | {mb:.1f} | {audio_s / 60:.1f} | {rss:.0f} | {wall:.0f} |")
    print(f"\nPeak RSS difference: {rows[1][3] - rows[0][3]:.0f} MB (target <= 200 MB).")


if __name__ == "__main__":
    main()

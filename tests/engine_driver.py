"""A run of the local engine as its own process, for the tests that kill, signal or race it.

``python engine_driver.py IN_FOLDER OUT_FOLDER [WORKERS] [--overwrite]``: inverts every mel
file under IN_FOLDER with method ``fast`` (hifigan-22k-80), prints one JSON summary line and
exits with the run's exit status.
"""

from __future__ import annotations

import json
import sys

from melinvert.engines import Manifest, plan_jobs
from melinvert.engines.local import run
from melinvert.engines.tasks import InvertTask


def main(argv: list[str]) -> int:
    flags = {a for a in argv if a.startswith("--")}
    args = [a for a in argv if not a.startswith("--")]
    src, out = args[0], args[1]
    workers = int(args[2]) if len(args) > 2 else 1
    jobs = plan_jobs([src], out + "/", ".wav", extensions=(".npy",))
    task = InvertTask("hifigan-22k-80", method="fast")
    s = run(jobs, task, manifest=Manifest.in_folder(out), workers=workers, overwrite="--overwrite" in flags)
    print(json.dumps({"done": s.done, "skipped": s.skipped, "failed": [[str(a), r] for a, _, r in s.failed]}))
    return s.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

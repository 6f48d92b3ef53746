"""The one mechanism for runs over many files: a run manifest, per-file claims, known finished.

Three parts, used by every engine (and meant for every command that writes files):

* **The manifest** (:class:`Manifest`), ``melinvert-manifest.jsonl`` in the output folder: one
  JSON object per line and per file, appended with ``O_APPEND`` and ``fsync``-ed per record,
  so that ``kill -9`` loses at most the record in flight; reading skips a torn line. A record::

      {"v": 1, "status": "ok" | "failed" | "skipped" | "partial", "input": ..., "output": ...,
       "audio_s": 2.0, "wall_s": 0.31, "error": null, "notices": [], "run": "3f2a...",
       "time": "2025-01-01T12:00:00Z",
       "provenance": {"input": "/abs/in.npy", "size": 1234, "mtime_ns": ..., "head_tail": "b2...",
                      "output": "/abs/out.wav", "output_size": ..., "output_mtime_ns": ...,
                      "output_head_tail": "...", "task": "invert, method fast, ...",
                      "task_digest": "sha256...", "melinvert": "0.1.0"}}

* **Claims** (:func:`acquire_claim`): before a run touches an output it creates
  ``.NAME.claim`` next to it with ``O_CREAT | O_EXCL`` (pid, host, start time); the claim is
  removed after the output's atomic rename and its manifest record. A claim whose process is
  dead (same host) is stale and is taken over; a live one makes the other run wait for it.
* **Known finished** (:class:`Ledger`): an existing output is finished only when the manifest's
  last ``ok`` record for it says it was made from this input's content (size, and modification
  time or a hash of its first and last MiB) with this task (method, config, seed, format: a
  digest) and the file is still the one written. An output from another input, another task,
  or without a record is refused with a one-line reason, or redone with ``overwrite`` (which redoes every output).
  A ``partial`` record (an interrupted best estimate a streamed job published at its output)
  makes the next run from the same input redo that output.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import MelinvertError
from .base import Job, Task

#: The manifest's file name in the output folder.
MANIFEST_NAME = "melinvert-manifest.jsonl"
#: Record format version.
SCHEMA = 1
#: Suffixes of the temporary files melinvert's atomic writes leave after a kill.
TEMP_SUFFIXES = (".part", ".tmp")

#: Seconds after which a claim file still without its holder's record counts as abandoned.
CLAIM_WRITE_GRACE_S = 30.0

_HOST = socket.gethostname()
_CHUNK = 1 << 20


# ---------------------------------------------------------------------- fingerprints


def head_tail_hash(path: str | os.PathLike, size: int | None = None) -> str:
    """BLAKE2b of a file's size, first MiB and last MiB: a content check that costs two reads."""
    size = os.stat(path).st_size if size is None else size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        h.update(f.read(_CHUNK))
        if size > _CHUNK:
            f.seek(max(_CHUNK, size - _CHUNK))
            h.update(f.read(_CHUNK))
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size", "mtime_ns", "head_tail"}`` of a file (raises OSError when unreadable)."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail": head_tail_hash(path, st.st_size)}


def _same_content(path: Path, size: int, mtime_ns: int, head_tail: str | None) -> bool:
    """Whether ``path`` still has the recorded content: size, then mtime or (if it moved) the hash."""
    try:
        st = os.stat(path)
        if st.st_size != size:
            return False
        return st.st_mtime_ns == mtime_ns or (head_tail is not None and head_tail_hash(path) == head_tail)
    except OSError:
        return False


def task_digest(task: Task) -> str:
    """SHA-256 of the task's :meth:`~melinvert.engines.base.Task.describe` (canonical JSON)."""
    text = json.dumps(task.describe(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _key(path: str | os.PathLike) -> str:
    return os.path.normcase(os.path.abspath(path))


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------------- the manifest


def read_manifest(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """Every record of a manifest file, and how many lines were torn or unreadable (skipped).

    A missing file has no records.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    records, bad = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


class Manifest:
    """An append-only JSON-lines run manifest, shared safely by concurrent runs.

    Parameters
    ----------
    path : str or PathLike
        The manifest file (see :meth:`in_folder`); created with its folder on first append.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None
        self._offset = 0
        self._ok: dict[str, dict[str, Any]] = {}
        self._partial: dict[str, dict[str, Any]] = {}
        self.torn = 0
        self._lock = threading.Lock()

    @classmethod
    def in_folder(cls, folder: str | os.PathLike) -> Manifest:
        """The manifest of an output folder: ``FOLDER/melinvert-manifest.jsonl``."""
        return cls(Path(folder) / MANIFEST_NAME)

    def _open(self) -> int:
        if self._fd is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as e:
                raise MelinvertError(
                    f"cannot write the run manifest {str(self.path)!r}: {e.strerror}"
                ) from None
            # A line torn by a kill must not swallow the next record: end it first.
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        os.write(fd, b"\n")
            self._fd = fd
        return self._fd

    def append(self, record: dict[str, Any], *, durable: bool = True) -> None:
        """Append one record in one ``write`` (``fsync``-ed when ``durable``)."""
        data = (json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str) + "\n").encode()
        with self._lock:
            fd = self._open()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if durable:
                    os.fsync(fd)
            except OSError as e:
                raise MelinvertError(
                    f"cannot write the run manifest {str(self.path)!r}: {e.strerror}"
                ) from None

    def sync(self) -> None:
        """``fsync`` what was appended without it."""
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)

    def close(self) -> None:
        """Sync and close the file (appending again reopens it)."""
        self.sync()
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def refresh(self) -> None:
        """Read the records appended since the last read (by any run): O(new records)."""
        with self._lock:
            try:
                with open(self.path, "rb") as f:
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1  # an unterminated tail may still be being written
            for line in data[:end].split(b"\n"):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    prov = rec.get("provenance") or {}
                    if rec.get("status") in ("ok", "partial") and prov.get("output"):
                        key = _key(prov["output"])
                        mine, other = (
                            (self._ok, self._partial) if rec["status"] == "ok" else (self._partial, self._ok)
                        )
                        mine[key] = rec
                        other.pop(key, None)  # the newer record of the output decides
                except (ValueError, AttributeError):
                    self.torn += 1
            self._offset += end

    def last_ok(self, output: str | os.PathLike) -> dict[str, Any] | None:
        """The newest ``ok`` record for ``output``, after reading what other runs appended."""
        self.refresh()
        return self._ok.get(_key(output))

    def last_partial(self, output: str | os.PathLike) -> dict[str, Any] | None:
        """The ``partial`` record of ``output`` (an interrupted best estimate left there), if it is
        newer than its last ``ok`` record."""
        self.refresh()
        return self._partial.get(_key(output))


# ---------------------------------------------------------------------- claims


def claim_path(output: str | os.PathLike) -> Path:
    """The claim file of an output: ``.NAME.claim`` in its folder."""
    p = Path(output)
    return p.with_name(f".{p.name}.claim")


def _pid_start_ticks(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[19]) if fields[0] != "Z" else -1


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether ``pid`` runs on this host (a zombie, or a pid reused after ``since``, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    ticks = _pid_start_ticks(pid)
    if ticks == -1:
        return False  # zombie
    boot = _boot_time()
    if ticks is not None and boot is not None and since is not None:
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
        return started <= since + 1.0
    return True


def read_claim(path: Path) -> dict[str, Any] | None:
    """A claim's holder (``pid``, ``host``, ``start``, ``run``, ``making``), or None if gone."""
    try:
        text = path.read_text(encoding="utf-8")
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return {"unreadable": True}
    lines = text.splitlines()
    try:
        info = json.loads(lines[0]) if lines else {}
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    info["making"] = "making" in lines[1:]
    info["raw"] = text
    info["age"] = age
    return info


def claim_is_stale(info: dict[str, Any]) -> bool:
    """A claim left by a dead process on this host (or one torn while being created)."""
    if "pid" not in info:
        # created but not yet written (its holder is between open and write), or its creator
        # died right there: only the latter grows old
        return info.get("age", 0.0) > CLAIM_WRITE_GRACE_S
    return info.get("host") == _HOST and not process_alive(int(info["pid"]), info.get("start"))


class Claim:
    """A held claim on one output; :meth:`release` removes it (only if still ours)."""

    def __init__(self, path: Path, token: str, taken_over: dict[str, Any] | None):
        self.path = path
        self.token = token
        #: The stale claim this one replaced (its holder died while on this output), or None.
        self.taken_over = taken_over

    def mark_making(self) -> None:
        """Record that the output is being (re)made: a takeover redoes it."""
        with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as f:
            f.write("making\n")

    def release(self) -> None:
        info = read_claim(self.path)
        if info is not None and info.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def acquire_claim(output: Path, run_id: str) -> Claim | dict[str, Any]:
    """Claim ``output`` for this process: a :class:`Claim`, or the live holder's info if busy.

    A stale claim (dead holder on this host) is moved aside atomically, checked to be the one
    judged stale, and replaced.
    """
    path = claim_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MelinvertError(f"cannot create output folder {str(path.parent)!r}: {e.strerror}") from None
    taken_over = None
    for _ in range(20):
        token = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            info = read_claim(path)
            if info is None:
                continue
            if not claim_is_stale(info):
                return info
            aside = path.with_name(f"{path.name}.stale.{os.getpid()}.{token[:8]}")
            try:
                os.rename(path, aside)
            except FileNotFoundError:
                continue
            moved = read_claim(aside)
            if moved is not None and moved.get("raw") != info.get("raw"):
                with contextlib.suppress(OSError):  # we moved a fresh live claim: put it back
                    os.link(aside, path)
            else:
                taken_over = info
            with contextlib.suppress(OSError):
                os.unlink(aside)
            continue
        except OSError as e:
            raise MelinvertError(f"cannot write to folder {str(path.parent)!r}: {e.strerror}") from None
        holder = {"pid": os.getpid(), "host": _HOST, "start": time.time(), "run": run_id, "token": token}
        try:
            os.write(fd, (json.dumps(holder) + "\n").encode())
        except OSError as e:  # a full disk: the claim file was created but cannot say whose it is
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise MelinvertError(f"cannot write to folder {str(path.parent)!r}: {e.strerror}") from None
        os.close(fd)
        return Claim(path, token, taken_over)
    raise MelinvertError(f"cannot claim {str(output)!r}: its claim file {str(path)!r} keeps changing")


def leftovers(outputs: Iterable[Path]) -> dict[str, list[Path]]:
    """Temporary files of earlier killed runs next to ``outputs``: ``{output key: [files]}``.

    One directory listing per output folder; the files are removed only once the output is
    claimed (:meth:`Ledger.begin`), so a live run's temporaries are never touched.
    """
    by_folder: dict[Path, dict[str, Path]] = {}
    for out in outputs:
        by_folder.setdefault(out.parent, {})[f".{out.name}."] = out
    found: dict[str, list[Path]] = {}
    for folder, prefixes in by_folder.items():
        try:
            names = [e.name for e in os.scandir(folder) if e.name.startswith(".")]
        except OSError:
            continue
        for name in names:
            if not name.endswith(TEMP_SUFFIXES) or name.count(".") < 3:
                continue
            for cut in _prefix_cuts(name):
                out = prefixes.get(cut)
                if out is not None:
                    found.setdefault(_key(out), []).append(folder / name)
                    break
    return found


def _prefix_cuts(name: str) -> Iterator[str]:
    """``.a.b.c.part`` -> ``.a.b.c.``, ``.a.b.``, ``.a.``: candidate ``.OUTPUT.`` prefixes."""
    i = len(name)
    while True:
        i = name.rfind(".", 1, i)
        if i <= 0:
            return
        yield name[: i + 1]


# ---------------------------------------------------------------------- decisions and records


class Ledger:
    """One run's bookkeeping: claims, the finished-or-not decision, manifest records, counts.

    Engines call :meth:`begin` before loading a job, then exactly one of :meth:`finish_ok`,
    :meth:`finish_failed` or :meth:`abandon` for each job that :meth:`begin` answered
    ``"todo"``. Thread-safe: records may be written from a writer thread.

    Parameters
    ----------
    manifest : Manifest
        Where records go (and where earlier runs' records are read from).
    task : Task
        Its :meth:`~melinvert.engines.base.Task.describe` digest identifies the outputs' recipe.
    overwrite : bool
        Make every output again, replacing existing ones (each only once the new file is
        complete); without it, known finished outputs are skipped and others refused.
    engine : str
        Recorded with each record (``"local"``, ``"ray"``).
    """

    def __init__(self, manifest: Manifest, task: Task, *, overwrite: bool = False, engine: str = "local"):
        from .. import __version__
        from .base import RunSummary

        self.manifest = manifest
        self.overwrite = overwrite
        self.engine = engine
        self.digest = task_digest(task)
        self.task_text = task.summary()
        self.version = __version__
        self.run_id = uuid.uuid4().hex[:12]
        self.summary = RunSummary(files=0)
        self.claims: dict[Job, Claim] = {}
        self.busy: dict[Job, dict[str, Any]] = {}
        self._leftovers: dict[str, list[Path]] = {}
        self._lock = threading.Lock()
        self.t0 = time.perf_counter()

    def prepare(self, jobs: list[Job]) -> None:
        """Count the jobs and list the temporaries killed runs left next to their outputs."""
        self.summary.files = len(jobs)
        self._leftovers = leftovers(j.output for j in jobs)

    def begin(self, job: Job) -> str:
        """Claim and judge a job: ``"todo"`` (claimed: make it), ``"skip"`` (known finished),
        ``"busy"`` (another live run holds it: try again later) or ``"failed"`` (refused)."""
        try:
            claim = acquire_claim(job.output, self.run_id)
        except MelinvertError as e:
            self.finish_failed(job, str(e))
            return "failed"
        if isinstance(claim, dict):
            self.busy[job] = claim
            return "busy"
        self.busy.pop(job, None)
        for tmp in self._leftovers.pop(_key(job.output), []):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        verdict = self._judge(job, claim)
        if verdict is None:
            claim.mark_making()
            with self._lock:
                self.claims[job] = claim
            return "todo"
        claim.release()
        if verdict == "":
            self._record(job, "skipped", durable=False)
            with self._lock:
                self.summary.skipped += 1
            return "skip"
        self.finish_failed(job, verdict)
        return "failed"

    def _judge(self, job: Job, claim: Claim) -> str | None:
        """None: make the output; "": it is known finished; else the reason to refuse it."""
        out = job.output
        if not os.path.lexists(out):
            return None
        if os.path.isdir(out):
            return f"output {str(out)!r} is a folder, not a file"
        if self.overwrite:
            return None
        rec = self.manifest.last_ok(out)
        if rec is not None and self._vouches(rec, job):
            return ""
        part = self.manifest.last_partial(out)
        if part is not None:
            return self._judge_partial(job, part)
        dead = claim.taken_over
        if dead is not None and dead.get("making") and (rec is None or rec.get("run") != dead.get("run")):
            return None  # a killed run was (re)making it: finish its work
        return self._refusal(job, rec) + "; pass --overwrite to replace it"

    def _judge_partial(self, job: Job, rec: dict[str, Any]) -> str | None:
        """An interrupted best estimate at the output: finish it (None) when it came from this
        input (any recipe: it is redone), else the reason to refuse it."""
        p = rec.get("provenance") or {}
        out = str(job.output)
        try:
            untouched = _same_content(
                job.output, int(p["output_size"]), int(p["output_mtime_ns"]), p.get("output_head_tail")
            )
        except (KeyError, TypeError, ValueError):
            untouched = False
        if not untouched:
            return f"output {out!r} was changed after melinvert wrote a partial estimate there; pass --overwrite to replace it"
        if p.get("input") == os.path.abspath(job.input):
            return None
        return (
            f"output {out!r} holds an interrupted estimate made from {p.get('input')!r}, not "
            f"{str(job.input)!r}; pass --overwrite to replace it"
        )

    def _vouches(self, rec: dict[str, Any], job: Job) -> bool:
        p = rec.get("provenance") or {}
        try:
            return (
                p.get("task_digest") == self.digest
                and _same_content(job.input, int(p["size"]), int(p["mtime_ns"]), p.get("head_tail"))
                and _same_content(
                    job.output, int(p["output_size"]), int(p["output_mtime_ns"]), p.get("output_head_tail")
                )
            )
        except (KeyError, TypeError, ValueError):
            return False

    def _refusal(self, job: Job, rec: dict[str, Any] | None) -> str:
        out = str(job.output)
        if rec is None:
            return f"output {out!r} already exists and the run manifest has no record of melinvert making it"
        p = rec.get("provenance") or {}
        same_input = _same_content(job.input, p.get("size", -1), p.get("mtime_ns", -1), p.get("head_tail"))
        if same_input and p.get("task_digest") != self.digest:
            return f"output {out!r} exists, made from this input with another recipe ({p.get('task')})"
        if not same_input:
            if p.get("input") == os.path.abspath(job.input):
                return f"output {out!r} was made from an earlier version of {str(job.input)!r} (it changed since)"
            return f"output {out!r} exists and was made from {p.get('input')!r}, not {str(job.input)!r}"
        return f"output {out!r} was changed after melinvert wrote it"

    def _record(
        self,
        job: Job,
        status: str,
        *,
        durable: bool = True,
        error: str | None = None,
        audio_s: float | None = None,
        wall_s: float | None = None,
        provenance: dict[str, Any] | None = None,
        notices: list[str] | None = None,
    ) -> None:
        rec = {
            "v": SCHEMA,
            "status": status,
            "input": str(job.input),
            "output": str(job.output),
            "audio_s": None if audio_s is None else round(audio_s, 4),
            "wall_s": None if wall_s is None else round(wall_s, 4),
            "error": error,
            "notices": notices or [],
            "run": self.run_id,
            "engine": self.engine,
            "time": _utc_now(),
            "provenance": provenance,
        }
        self.manifest.append(rec, durable=durable)

    def finish_ok(
        self,
        job: Job,
        input_fp: dict[str, Any],
        *,
        audio_s: float,
        wall_s: float,
        notices: list[str],
        output_fp: dict[str, Any] | None = None,
    ) -> None:
        """Record a written output (after its atomic rename), then release its claim.

        ``output_fp`` is the output's :func:`fingerprint` when the writer took it (on another
        node); by default it is taken here.
        """
        self._record_made(
            job, "ok", input_fp, audio_s=audio_s, wall_s=wall_s, notices=notices, output_fp=output_fp
        )
        with self._lock:
            self.summary.done += 1
            self.summary.audio_s += audio_s
            self.summary.made.append((job.input, job.output))
            self.summary.notices.extend(notices)
            claim = self.claims.pop(job, None)
        if claim is not None:
            claim.release()

    def finish_partial(
        self, job: Job, input_fp: dict[str, Any], *, audio_s: float, wall_s: float, notices: list[str]
    ) -> None:
        """Record an interrupted best estimate published at the output (with its provenance: the
        next run finishes it when it comes from the same input), then release its claim."""
        with contextlib.suppress(MelinvertError, OSError):
            self._record_made(job, "partial", input_fp, audio_s=audio_s, wall_s=wall_s, notices=notices)
        with self._lock:
            self.summary.notices.extend(notices)
            claim = self.claims.pop(job, None)
        if claim is not None:
            claim.release()

    def _record_made(
        self,
        job: Job,
        status: str,
        input_fp: dict[str, Any],
        *,
        audio_s: float,
        wall_s: float,
        notices: list[str],
        output_fp: dict[str, Any] | None = None,
    ) -> None:
        out_fp = output_fp if output_fp is not None else fingerprint(job.output)
        prov = {
            "input": os.path.abspath(job.input),
            **input_fp,
            "output": os.path.abspath(job.output),
            "output_size": out_fp["size"],
            "output_mtime_ns": out_fp["mtime_ns"],
            "output_head_tail": out_fp["head_tail"],
            "task": self.task_text,
            "task_digest": self.digest,
            "melinvert": self.version,
        }
        self._record(job, status, audio_s=audio_s, wall_s=wall_s, provenance=prov, notices=notices)

    def finish_failed(self, job: Job, reason: str, *, wall_s: float | None = None) -> None:
        """Record a failed or refused file with its one-line reason; release its claim."""
        with contextlib.suppress(MelinvertError):
            self._record(job, "failed", error=reason, wall_s=wall_s)
        with self._lock:
            self.summary.failed.append((job.input, job.output, reason))
            claim = self.claims.pop(job, None)
        if claim is not None:
            claim.release()

    def abandon(self, job: Job) -> None:
        """Give up a claimed job without a record (interrupted): the next run makes it."""
        with self._lock:
            claim = self.claims.pop(job, None)
        if claim is not None:
            claim.release()

    def abandon_all(self) -> None:
        """Release every claim still held (after an interruption)."""
        for job in list(self.claims):
            self.abandon(job)

    def busy_reason(self, job: Job) -> str:
        """Who holds a busy job's claim, in words."""
        h = self.busy.get(job) or {}
        return (
            f"{str(job.output)!r} is being made by another run (pid {h.get('pid')} on {h.get('host')}); "
            f"if that run is gone, delete {str(claim_path(job.output))!r}"
        )

    def progress(self) -> Any:
        """A :class:`~melinvert.engines.base.Progress` snapshot."""
        from .base import Progress

        with self._lock:
            s = self.summary
            return Progress(
                files_total=s.files,
                files_done=s.done,
                files_failed=len(s.failed),
                files_skipped=s.skipped,
                audio_s=s.audio_s,
                elapsed_s=time.perf_counter() - self.t0,
            )

    def close(self) -> None:
        """Finish the summary's wall time and close the manifest."""
        self.summary.wall_s = time.perf_counter() - self.t0
        self.manifest.close()

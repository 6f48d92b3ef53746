"""Audio and mel files: reading, layout detection, validation and atomic writing.

Nothing here computes a spectrogram: this module only turns files into validated arrays and
arrays into files.

* Audio (``.wav``, ``.flac``, ``.ogg``) through soundfile: :func:`load_audio` (mixes down to
  mono and resamples with soxr, returning a notice for each), :func:`save_audio`.
* Mel files (``.npy``, ``.npz``, ``.pt``): :func:`load_mel` reads what other projects write
  (``(n_mels, frames)``, time-first ``(frames, n_mels)``, a leading batch axis, a dict with one
  obvious array) without ever unpickling; :func:`save_mel` writes a mel that records its
  :class:`~melinvert.config.MelConfig` (a ``PATH.json`` sidecar for ``.npy``, a ``config_json``
  entry in ``.npz`` and ``.pt``).
* Output handling shared by every command: :func:`plan_outputs` maps inputs (files or folders,
  mirrored) to output paths; :func:`atomic_write` writes through a temporary file in the same
  folder, ``fsync`` and ``os.replace``, refuses existing outputs unless asked and never
  overwrites an input.
* :func:`load_stats` reads ParallelWaveGAN's ``stats.npy`` (mean and scale per mel bin).

Every problem a file can have is a one-line :class:`~melinvert.errors.MelinvertError`.
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from .config import PRESETS, MelConfig, resolve_config
from .errors import MelinvertError, check

PathLike = str | os.PathLike

#: Audio file extensions melinvert reads and writes.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
#: Mel file extensions melinvert reads and writes.
MEL_EXTENSIONS = (".npy", ".npz", ".pt")
#: Mel layouts: ``auto`` decides from the shape (and the config's ``n_mels``).
LAYOUTS = ("auto", "mels-first", "time-first")
#: Keys that name the mel in a dict-like file, in order of preference.
MEL_KEYS = (
    "mel",
    "mels",
    "logmel",
    "log_mel",
    "melspec",
    "mel_spec",
    "mel_spectrogram",
    "feats",
    "feat",
    "features",
    "spec",
    "spectrogram",
)
#: The entry holding the recorded config in ``.npz`` and ``.pt`` files written by :func:`save_mel`.
CONFIG_KEY = "config_json"
#: Numbers of mel bins in common use, used to tell the mel axis from the time axis.
PRESET_N_MELS = frozenset(p.config.n_mels for p in PRESETS.values())
COMMON_N_MELS = PRESET_N_MELS | frozenset({20, 24, 32, 36, 40, 48, 60, 64, 96, 120, 160, 192, 256})

_AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
_AUDIO_SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")


# ---------------------------------------------------------------------- small helpers


def _one_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception message (or its type), shortened."""
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else type(e).__name__
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _existing_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    check(p.exists(), f"{what} {str(p)!r} does not exist")
    check(not p.is_dir(), f"{what} {str(p)!r} is a folder, not a file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise MelinvertError(f"cannot read {what} {str(p)!r}: {e.strerror or _one_line(e)}") from None
    check(size > 0, f"{what} {str(p)!r} is empty (0 bytes)")
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.realpath(a) == os.path.realpath(b):
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# ---------------------------------------------------------------------- atomic output


def check_output(path: PathLike, *, overwrite: bool = False, protect: Iterable[PathLike] = ()) -> Path:
    """Check that ``path`` may be written, without writing anything.

    Parameters
    ----------
    path : str or PathLike
        The output file.
    overwrite : bool
        Allow replacing an existing file (never an input).
    protect : iterable of paths
        Input files: writing to any of them is refused even with ``overwrite``.

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    MelinvertError
        The output is an input, exists (without ``overwrite``), is a folder, or its folder
        cannot be created because a file is in the way.
    """
    p = Path(path)
    for q in protect:
        check(not _same_file(p, Path(q)), f"refusing to write {str(p)!r}: it is an input file")
    if p.exists() or p.is_symlink():
        check(not p.is_dir(), f"output {str(p)!r} is a folder, not a file")
        check(overwrite, f"output {str(p)!r} already exists; pass --overwrite (overwrite=True) to replace it")
    # The nearest existing ancestor must be a folder.
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    check(
        parent.is_dir(),
        f"cannot write {str(p)!r}: {str(parent)!r} is a file, not a folder",
    )
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Temporary files of the writers: ``.NAME.melinvert-tmp-PID-TOKEN`` next to the output ``NAME``.
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.melinvert-tmp-(?P<pid>\d+)-[0-9a-f]+$")
_SWEPT: set[str] = set()


def _write_error(path: PathLike, e: BaseException) -> MelinvertError:
    """``cannot write 'PATH': REASON`` for an OSError (or what a library made of one)."""
    reason = getattr(e, "strerror", None) or _one_line(e)
    return MelinvertError(f"cannot write {os.fspath(path)!r}: {reason}")


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # no cheap, harmless liveness test: never judge a file stale
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def sweep_stale_temps(folder: PathLike, *, force: bool = False) -> list[Path]:
    """Remove the temporary files that writers killed mid-write left in ``folder``.

    A file is stale when its name has the writers' pattern (:data:`TEMP_PATTERN`) and the
    process id in it is not alive (on this machine). Each folder is swept once per process
    unless ``force``. Files that cannot be removed are left alone.

    Returns
    -------
    list of Path
        The files removed.
    """
    key = os.path.realpath(folder)
    if key in _SWEPT and not force:
        return []
    _SWEPT.add(key)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = TEMP_PATTERN.match(name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed.append(Path(folder) / name)
        except OSError:
            pass
    return removed


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MelinvertError(
            f"cannot create output folder {str(folder)!r}: {e.strerror or _one_line(e)}"
        ) from None


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new temporary file next to ``path`` (stale ones swept first): its path and an open fd."""
    _make_folder(path.parent)
    sweep_stale_temps(path.parent)
    tmp = path.with_name(f".{path.name}.melinvert-tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        return tmp, os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise _write_error(path, e) from None


def _publish(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the mode every output gets (0666 less the umask) and move it onto ``path``."""
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise _write_error(path, e) from None


def _sync_folders(folders: Iterable[Path]) -> None:
    for folder in {str(f) for f in folders}:
        try:  # make the renames durable; not every file system allows it
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


class _RecordingFile:
    """A binary file that remembers the first OSError (or interrupt) its writes met.

    Libraries wrap a failed write into their own exception (torch) or into a short count
    (libsndfile's virtual I/O, when ``swallow``: an exception must not escape its callback);
    the recorded error names the real reason.
    """

    def __init__(self, f: IO[bytes], *, swallow: bool = False) -> None:
        self.f = f
        self.swallow = swallow
        self.error: BaseException | None = None

    def _record(self, e: BaseException, fallback: int) -> int:
        self.error = self.error or e
        if self.swallow:
            return fallback
        raise e

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):  # a raw file may take part of it: the rest shows the reason
                n = self.f.write(view[done:])
                if n is None:
                    return len(view)
                check(n > 0, "the file took no bytes")
                done += n
        except (OSError, ValueError, KeyboardInterrupt) as e:  # ValueError: closed
            return self._record(e, done)
        return done

    def flush(self) -> None:
        try:
            self.f.flush()
        except OSError as e:
            self._record(e, 0)

    def read(self, n: int = -1) -> bytes:
        try:
            return self.f.read(n)
        except (OSError, ValueError) as e:
            self._record(e, 0)
            return b""

    def readinto(self, buf: Any) -> int | None:
        try:
            return self.f.readinto(buf)  # type: ignore[attr-defined]
        except (OSError, ValueError) as e:
            return self._record(e, 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        try:
            return self.f.seek(offset, whence)
        except (OSError, ValueError, KeyboardInterrupt) as e:  # ValueError: closed
            return self._record(e, -1)

    def tell(self) -> int:
        try:
            return self.f.tell()
        except (OSError, ValueError, KeyboardInterrupt) as e:  # ValueError: closed
            return self._record(e, -1)

    def seekable(self) -> bool:
        return True


def _write_files(
    items: Sequence[tuple[Path, Callable[[IO[bytes]], None]]],
    *,
    overwrite: bool,
    protect: Iterable[PathLike],
) -> None:
    """Write several files atomically: all temporaries first, then one ``os.replace`` each.

    A write that fails for a system reason (full disk, read-only folder) raises
    ``MelinvertError("cannot write 'PATH': REASON")``; nothing is left behind either way.
    """
    protect = list(protect)
    for path, _ in items:
        check_output(path, overwrite=overwrite, protect=protect)
    temps: list[tuple[Path, Path]] = []
    try:
        for path, write in items:
            tmp, fd = _create_temp(path)
            temps.append((tmp, path))
            raw = os.fdopen(fd, "wb", buffering=0)  # unbuffered: a failed write shows at once
            f = _RecordingFile(raw)
            try:
                write(f)  # type: ignore[arg-type]
                os.fsync(raw.fileno())
            except Exception as e:
                if isinstance(e, OSError) or isinstance(f.error, OSError):
                    raise _write_error(path, f.error or e) from None
                raise
            finally:
                raw.close()
        for tmp, path in temps:
            _publish(tmp, path)
        _sync_folders(path.parent for path, _ in items)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def atomic_write(
    path: PathLike,
    write: Callable[[IO[bytes]], None],
    *,
    overwrite: bool = False,
    protect: Iterable[PathLike] = (),
) -> Path:
    """Write a file atomically: a temporary file in the same folder, ``fsync``, ``os.replace``.

    Parameters
    ----------
    path : str or PathLike
        The output file; missing folders are created.
    write : callable
        ``write(f)`` writes the content to the binary file object ``f``.
    overwrite : bool
        Allow replacing an existing file.
    protect : iterable of paths
        Input files that must never be replaced, even with ``overwrite``.

    Returns
    -------
    Path
        The written path. On any failure nothing is left behind (no partial file, no
        temporary).
    """
    p = Path(path)
    _write_files([(p, write)], overwrite=overwrite, protect=protect)
    return p


def write_text(
    path: PathLike, text: str, *, overwrite: bool = False, protect: Iterable[PathLike] = ()
) -> Path:
    """Atomically write UTF-8 text (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data), overwrite=overwrite, protect=protect)


def append_text(path: PathLike, text: str) -> None:
    """Append UTF-8 ``text`` to a file (created if missing) and ``fsync`` it.

    For logs and record files read line by line: a line cut short by a crash is the reader's
    to drop. A failure (full disk, read-only folder) is ``MelinvertError("cannot write ...")``.
    """
    p = Path(path)
    _make_folder(p.parent)
    try:
        with open(p, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise _write_error(p, e) from None


def find_inputs(
    inputs: Sequence[str | os.PathLike[str]], extensions: Sequence[str], *, file_kind: str | None = None
) -> list[tuple[Path, Path | None]]:
    """The files named in ``inputs``, and those found in folders among them.

    Folders are walked recursively for files ending in one of ``extensions`` (lower case; hidden
    files and folders skipped), sorted within each folder; a file reached twice is kept once.

    Returns
    -------
    list of (Path, Path or None)
        ``(file, its path relative to the folder input it came from, or None for a file input)``.

    Raises
    ------
    MelinvertError
        A missing input, a folder with no matching files, or (with ``file_kind``, e.g.
        ``"audio"``) a file input without one of ``extensions``.
    """
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        p = Path(item)
        check(p.exists(), f"input {str(p)!r} does not exist")
        if p.is_dir():
            files = sorted(_walk_files(p, extensions))
            check(bool(files), f"no {', '.join(extensions)} files found in folder {str(p)!r}")
            found.extend((f, f.relative_to(p)) for f in files)
        else:
            check(
                file_kind is None or p.suffix.lower() in extensions,
                f"{str(p)!r} is not an {file_kind} file ({', '.join(extensions)})",
            )
            found.append((p, None))
    unique: list[tuple[Path, Path | None]] = []
    seen: set[str] = set()
    for f, rel in found:
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            unique.append((f, rel))
    return unique


def _walk_files(folder: Path, extensions: Sequence[str]) -> Iterator[Path]:
    """Files under ``folder`` ending in one of ``extensions`` (hidden files and folders skipped);
    a folder that cannot be listed is an error, never silently left out."""

    def unreadable(e: OSError) -> None:
        raise MelinvertError(
            f"cannot read folder {e.filename!r}: {e.strerror or _one_line(e)}; fix its permissions "
            "or leave it out of the inputs"
        )

    for root, dirs, names in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            f = Path(root) / name
            if not name.startswith(".") and f.suffix.lower() in extensions and f.is_file():
                yield f


def plan_outputs(
    inputs: Sequence[PathLike],
    out: PathLike,
    suffix: str,
    *,
    extensions: Iterable[str] | None = None,
) -> list[tuple[Path, Path]]:
    """Map input files and folders to output paths.

    Parameters
    ----------
    inputs : sequence of paths
        Files, or folders walked recursively for files ending in one of ``extensions``
        (hidden files and folders skipped).
    out : path
        The output folder; folder inputs are mirrored under it (``IN/a/b.wav`` ->
        ``OUT/a/b.npy``), file inputs land directly in it. With exactly one input file, ``out``
        may instead name the output file itself (when it has an extension and is not an
        existing folder; a trailing ``/`` forces a folder).
    suffix : str
        The output extension, e.g. ``".npy"``.
    extensions : iterable of str, optional
        Extensions to pick up in folders (default: the audio extensions).

    Returns
    -------
    list of (Path, Path)
        ``(input, output)`` pairs, sorted within each folder.

    Raises
    ------
    MelinvertError
        A missing input, a folder with no matching files, two inputs mapping to one output,
        or an output that would replace an input.
    """
    check(suffix.startswith(".") and len(suffix) > 1, f"{suffix=} must be an extension like '.npy'")
    exts = tuple(e.lower() for e in (extensions if extensions is not None else AUDIO_EXTENSIONS))
    check(len(inputs) > 0, "no input files given")
    out_s = os.fspath(out)
    out_p = Path(out_s)
    unique = find_inputs(inputs, exts)
    single_file = (
        len(unique) == 1
        and unique[0][1] is None
        and not out_p.is_dir()
        and not out_s.endswith(("/", os.sep))
        and out_p.suffix != ""
    )
    if single_file:
        check(
            out_p.suffix.lower() == suffix.lower(),
            f"output {out_s!r} should end in {suffix} (or name a folder, ending in '/')",
        )
        plan = [(unique[0][0], out_p)]
    else:
        check(
            not (out_p.exists() and not out_p.is_dir()),
            f"output {out_s!r} is a file; with these inputs it must be a folder",
        )
        plan = [
            (f, out_p / (rel.with_suffix(suffix) if rel is not None else Path(f.stem + suffix)))
            for f, rel in unique
        ]
    by_out: dict[str, Path] = {}
    for f, o in plan:
        key = os.path.normcase(os.path.abspath(o))
        other = by_out.get(key)
        check(other is None, f"inputs {str(other)!r} and {str(f)!r} would both write {str(o)!r}")
        by_out[key] = f
    for _, o in plan:
        for f, _ in plan:
            check(not _same_file(o, f), f"output {str(o)!r} would replace the input {str(f)!r}")
    return plan


# ---------------------------------------------------------------------- audio


def _check_wav_complete(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose data chunk is cut short."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return  # not RIFF: let libsndfile judge
        check(size >= 44, f"{str(path)!r} is truncated: {size} bytes, less than a WAV header")
        pos = 12
        for _ in range(1000):
            f.seek(pos)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            cid = chunk[:4]
            (csize,) = struct.unpack("<I", chunk[4:])
            if cid == b"data":
                if csize in (0, 0xFFFFFFFF):  # unknown length (streamed or RF64)
                    return
                have = size - pos - 8
                check(
                    have >= csize,
                    f"{str(path)!r} is truncated: its header declares {csize} bytes of audio "
                    f"but only {max(have, 0)} are present",
                )
                return
            pos += 8 + csize + (csize & 1)


def read_audio(path: PathLike) -> tuple[np.ndarray, int, str]:
    """Read an audio file as it is stored.

    Returns
    -------
    audio : np.ndarray [shape=(channels, samples), float32 in [-1, 1] for PCM]
    sample_rate : int
        Hz.
    subtype : str
        soundfile's subtype name, e.g. ``"PCM_16"``.
    """
    import soundfile as sf

    p = _existing_file(path, "audio file")
    ext = p.suffix.lower()
    check(
        ext in AUDIO_EXTENSIONS,
        f"{str(p)!r}: unsupported audio format {ext or '(no extension)'!r}; "
        f"melinvert reads {', '.join(AUDIO_EXTENSIONS)}",
    )
    if ext == ".wav":
        _check_wav_complete(p)
    try:
        info = sf.info(str(p))
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as e:
        msg = re.sub(r"^Error opening .*?: ", "", _one_line(e))
        raise MelinvertError(f"{str(p)!r} is not a readable {ext} audio file ({msg})") from None
    check(data.shape[0] > 0, f"{str(p)!r} holds no audio samples")
    check(bool(np.isfinite(data).all()), f"{str(p)!r} contains NaN or Inf samples")
    return np.ascontiguousarray(data.T), int(sr), str(info.subtype)


def load_audio(path: PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int, list[str]]:
    """Read an audio file as mono float32, resampled if asked.

    Parameters
    ----------
    path : str or PathLike
        A ``.wav``, ``.flac`` or ``.ogg`` file.
    sample_rate : int, optional
        Rate to return (Hz); the file is resampled with soxr (``VHQ``) when it differs.
        ``None`` keeps the file's rate.

    Returns
    -------
    audio : np.ndarray [shape=(samples,), float32]
    sample_rate : int
        The rate of ``audio`` in Hz.
    notices : list of str
        One line for each change made: channels mixed down, resampling.

    Raises
    ------
    MelinvertError
        Missing, empty, truncated or unreadable files, no samples, NaN or Inf.
    """
    import soxr

    if sample_rate is not None:
        check(
            isinstance(sample_rate, int) and not isinstance(sample_rate, bool) and sample_rate >= 1,
            f"{sample_rate=} must be an integer >= 1 (Hz)",
        )
    data, sr, _ = read_audio(path)
    notices: list[str] = []
    if data.shape[0] > 1:
        notices.append(f"{os.fspath(path)}: mixed {data.shape[0]} channels down to mono")
    y = data.mean(axis=0, dtype=np.float64).astype(np.float32) if data.shape[0] > 1 else data[0]
    if sample_rate is not None and sample_rate != sr:
        y = soxr.resample(y, sr, sample_rate, quality="VHQ").astype(np.float32, copy=False)
        notices.append(f"{os.fspath(path)}: resampled {sr} Hz -> {sample_rate} Hz")
        sr = sample_rate
        check(y.shape[0] > 0, f"{os.fspath(path)!r} has no samples left after resampling")
    return np.ascontiguousarray(y, dtype=np.float32), sr, notices


class AudioBlocks:
    """An audio file read block by block: mono float32 at a rate, as :func:`load_audio` gives
    it whole (the same samples, bit for bit), in bounded memory.

    The file is checked when the object is made (missing, empty, truncated, unreadable);
    iterating it yields ``(samples,)`` float32 blocks (NaN or Inf in a block is an error) and
    may be done once.

    Parameters
    ----------
    path : str or PathLike
        A ``.wav``, ``.flac`` or ``.ogg`` file.
    sample_rate : int, optional
        Rate to yield (Hz), resampled with soxr (``VHQ``, streamed) when the file's differs.
    block_samples : int
        Samples of the file read at a time.

    Attributes
    ----------
    sample_rate : int
        Hz of the blocks.
    notices : list of str
        One line for each change made (channels mixed down, resampling), as :func:`load_audio`.
    samples : int
        Samples yielded so far (all of them once iterated).
    """

    def __init__(self, path: PathLike, sample_rate: int | None = None, block_samples: int = 1 << 18) -> None:
        import soundfile as sf

        if sample_rate is not None:
            check(
                isinstance(sample_rate, int) and not isinstance(sample_rate, bool) and sample_rate >= 1,
                f"{sample_rate=} must be an integer >= 1 (Hz)",
            )
        check(isinstance(block_samples, int) and block_samples >= 1, f"{block_samples=} must be >= 1")
        p = _existing_file(path, "audio file")
        ext = p.suffix.lower()
        check(
            ext in AUDIO_EXTENSIONS,
            f"{str(p)!r}: unsupported audio format {ext or '(no extension)'!r}; "
            f"melinvert reads {', '.join(AUDIO_EXTENSIONS)}",
        )
        if ext == ".wav":
            _check_wav_complete(p)
        try:
            info = sf.info(str(p))
        except Exception as e:
            raise self._unreadable(p, e) from None
        self.path, self.block_samples = p, block_samples
        self.source_rate, self.channels = int(info.samplerate), int(info.channels)
        self.sample_rate = sample_rate if sample_rate is not None else self.source_rate
        self.notices: list[str] = []
        if self.channels > 1:
            self.notices.append(f"{os.fspath(path)}: mixed {self.channels} channels down to mono")
        if self.sample_rate != self.source_rate:
            self.notices.append(
                f"{os.fspath(path)}: resampled {self.source_rate} Hz -> {self.sample_rate} Hz"
            )
        self.samples = 0
        self._started = False

    @staticmethod
    def _unreadable(p: Path, e: BaseException) -> MelinvertError:
        msg = re.sub(r"^Error opening .*?: ", "", _one_line(e))
        return MelinvertError(f"{str(p)!r} is not a readable {p.suffix.lower()} audio file ({msg})")

    def __iter__(self) -> Iterator[np.ndarray]:
        check(not self._started, f"{str(self.path)!r}: these audio blocks were read already")
        self._started = True
        return self._blocks()

    def _blocks(self) -> Iterator[np.ndarray]:
        import soundfile as sf
        import soxr

        resampler = None
        if self.sample_rate != self.source_rate:
            resampler = soxr.ResampleStream(
                self.source_rate, self.sample_rate, 1, dtype="float32", quality="VHQ"
            )
        read = 0
        try:
            with sf.SoundFile(str(self.path)) as f:
                while True:
                    data = f.read(self.block_samples, dtype="float32", always_2d=True)
                    last = data.shape[0] < self.block_samples
                    read += data.shape[0]
                    check(bool(np.isfinite(data).all()), f"{str(self.path)!r} contains NaN or Inf samples")
                    y = self._mono(data)
                    if resampler is not None:
                        y = resampler.resample_chunk(y, last=last).astype(np.float32, copy=False)
                    if y.size:
                        self.samples += y.shape[0]
                        yield np.ascontiguousarray(y)
                    if last:
                        break
        except MelinvertError:
            raise
        except Exception as e:
            raise self._unreadable(self.path, e) from None
        check(read > 0, f"{str(self.path)!r} holds no audio samples")
        check(self.samples > 0, f"{os.fspath(self.path)!r} has no samples left after resampling")

    def _mono(self, data: np.ndarray) -> np.ndarray:
        """``(samples, channels)`` -> ``(samples,)`` float32, mixed as :func:`load_audio` mixes."""
        if data.shape[1] == 1:
            return data[:, 0]
        return np.ascontiguousarray(data.T).mean(axis=0, dtype=np.float64).astype(np.float32)


def _check_audio_target(p: Path, subtype: str, sample_rate: Any) -> str:
    """Validate an audio output's format, subtype and rate; return soundfile's subtype."""
    ext = p.suffix.lower()
    check(
        ext in _AUDIO_FORMATS,
        f"{str(p)!r}: cannot write audio format {ext or '(no extension)'!r}; "
        f"use {', '.join(AUDIO_EXTENSIONS)}",
    )
    check(subtype in _AUDIO_SUBTYPES, f"{subtype=} must be one of {', '.join(_AUDIO_SUBTYPES)}")
    check(
        not (ext == ".flac" and subtype == "FLOAT"),
        f"{str(p)!r}: FLAC cannot store float samples; use .wav or subtype PCM_16/PCM_24",
    )
    check(
        isinstance(sample_rate, (int, np.integer)) and not isinstance(sample_rate, bool) and sample_rate >= 1,
        f"{sample_rate=} must be an integer >= 1 (Hz)",
    )
    return "VORBIS" if ext == ".ogg" else subtype


def _audio_array(y: Any, p: Path) -> np.ndarray:
    """``y`` as a float32 array ``(samples,)`` or ``(channels, samples)``, checked finite."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    check(a.dtype.kind == "f", f"audio must be floating point, got dtype {a.dtype}")
    check(a.ndim in (1, 2), f"audio must be shaped (samples,) or (channels, samples), got {a.shape}")
    check(bool(np.isfinite(a).all()), f"audio to write to {str(p)!r} contains NaN or Inf")
    return a.astype(np.float32, copy=False)


class AudioWriter:
    """Write audio block by block, atomically: the one audio writer of every command.

    The blocks go to a temporary file ``.NAME.melinvert-tmp-PID-TOKEN`` in the output's folder
    (stale ones, whose process is gone, are removed first: :func:`sweep_stale_temps`); when the
    ``with`` block ends without an exception the file is closed, ``fsync``-ed, given mode
    ``0666`` less the umask (as every output) and moved onto ``path`` with ``os.replace``. An
    existing output survives until then; on any exception (``KeyboardInterrupt`` included) the
    temporary file is removed and nothing else changes. Integer formats and Vorbis clip to
    [-1, 1], counted over the whole file: :attr:`notices` then holds one line.

    Parameters
    ----------
    path : str or PathLike
        ``.wav``, ``.flac`` or ``.ogg`` (Vorbis; ``subtype`` is then ignored).
    sample_rate : int
        Hz.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}
    channels : int
    overwrite : bool
        Allow replacing an existing file (never one of ``protect``).
    protect : iterable of paths
        Input files that must never be replaced.

    Examples
    --------
    >>> with AudioWriter("out.wav", 22050) as w:  # doctest: +SKIP
    ...     for block in blocks:              # (samples,) float arrays or tensors
    ...         w.write(block)
    >>> w.notices                               # doctest: +SKIP
    ['out.wav: clipped 12 samples (0.0011%) to [-1, 1] (peak 1.07)']

    A failure to write (full disk, read-only folder) raises
    ``MelinvertError("cannot write 'PATH': REASON")``. :meth:`commit` publishes early (e.g. a
    partial result before re-raising ``KeyboardInterrupt``); :meth:`abort` discards.
    """

    def __init__(
        self,
        path: PathLike,
        sample_rate: int,
        subtype: str = "PCM_16",
        *,
        channels: int = 1,
        overwrite: bool = False,
        protect: Iterable[PathLike] = (),
    ) -> None:
        self.path = Path(path)
        self.sf_subtype = _check_audio_target(self.path, subtype, sample_rate)
        check(isinstance(channels, int) and channels >= 1, f"{channels=} must be an integer >= 1")
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.overwrite = overwrite
        self.protect = list(protect)
        #: Samples per channel written so far.
        self.frames = 0
        #: Notices (clipping), complete after :meth:`commit`.
        self.notices: list[str] = []
        self.committed = False
        self._clipped = 0
        self._peak = 0.0
        self._tmp: Path | None = None
        self._raw: IO[bytes] | None = None
        self._file: _RecordingFile | None = None
        self._sf: Any = None

    def __enter__(self) -> AudioWriter:
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def open(self) -> None:
        """Check the output and create the temporary file."""
        import soundfile as sf

        check_output(self.path, overwrite=self.overwrite, protect=self.protect)
        self._tmp, fd = _create_temp(self.path)
        try:
            self._raw = os.fdopen(fd, "w+b", buffering=0)  # a failed write shows at once
            self._file = _RecordingFile(self._raw, swallow=True)
            self._sf = self._io(
                lambda: sf.SoundFile(
                    self._file,
                    "w",
                    samplerate=self.sample_rate,
                    channels=self.channels,
                    subtype=self.sf_subtype,
                    format=_AUDIO_FORMATS[self.path.suffix.lower()],
                )
            )
        except BaseException:
            self.abort()
            raise

    def _io(self, action: Callable[[], Any]) -> Any:
        """Run a soundfile call; a system error (raised, or a short write libsndfile let pass)
        becomes ``cannot write 'PATH': REASON``; an interrupt met inside a write is re-raised."""
        import soundfile as sf

        try:
            result = action()
        except Exception as e:  # soundfile asserts on a short write: the recorded error says why
            if (self._file is not None and self._file.error is not None) or isinstance(
                e, (OSError, sf.SoundFileError)
            ):
                self._fail(e)
            raise
        if self._file is not None and self._file.error is not None:
            self._fail(self._file.error)
        return result

    def _fail(self, e: BaseException) -> None:
        err = (self._file.error if self._file is not None else None) or e
        if isinstance(err, KeyboardInterrupt):
            raise err
        raise _write_error(self.path, err) from None

    def write(self, block: Any) -> None:
        """Append ``block`` [shape=(samples,) or (channels, samples), float, array or tensor]."""
        check(self._sf is not None and not self.committed, f"{str(self.path)!r} is not open for writing")
        a = _audio_array(block, self.path)
        if a.ndim == 1:
            a = a[None]
        check(
            a.shape[0] == self.channels,
            f"a block of {a.shape[0]} channels for {str(self.path)!r}, opened for {self.channels}",
        )
        if a.size and self.sf_subtype != "FLOAT":
            self._peak = max(self._peak, float(np.abs(a).max()))
            over = int(np.count_nonzero(np.abs(a) > 1.0))
            if over:
                self._clipped += over
                a = np.clip(a, -1.0, 1.0)
        self._io(lambda: self._sf.write(np.ascontiguousarray(a.T)))
        self.frames += a.shape[1]

    def commit(self) -> Path:
        """Finish the file and move it onto ``path`` (idempotent); returns ``path``."""
        if self.committed:
            return self.path
        try:
            check(self._sf is not None, f"{str(self.path)!r} is not open for writing")
            check(self.frames > 0, f"no audio was written to {str(self.path)!r}")
            assert self._raw is not None and self._tmp is not None
            self._io(self._sf.close)
            self._io(self._raw.flush)
            self._io(lambda: os.fsync(self._raw.fileno()))  # type: ignore[union-attr]
            self._raw.close()
            _publish(self._tmp, self.path)
            _sync_folders([self.path.parent])
        except BaseException:
            self.abort()
            raise
        self.committed = True
        self._tmp = None
        if self._clipped:
            total = self.frames * self.channels
            self.notices.append(
                f"{os.fspath(self.path)}: clipped {self._clipped} samples ({100 * self._clipped / total:.2g}%) "
                f"to [-1, 1] (peak {self._peak:.3g})"
            )
        return self.path

    def abort(self) -> None:
        """Discard what was written: the temporary file goes, an existing output stays."""
        if self.committed:
            return
        for close in (getattr(self._sf, "close", None), getattr(self._raw, "close", None)):
            try:
                if close is not None:
                    close()
            except Exception:  # the file is being discarded: its close errors do not matter
                pass
        self._sf = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def save_audio(
    path: PathLike,
    y: Any,
    sample_rate: int,
    subtype: str = "PCM_16",
    overwrite: bool = False,
    *,
    protect: Iterable[PathLike] = (),
) -> list[str]:
    """Write audio atomically (one block through :class:`AudioWriter`).

    Parameters
    ----------
    path : str or PathLike
        ``.wav``, ``.flac`` or ``.ogg`` (Vorbis; ``subtype`` is then ignored).
    y : np.ndarray or torch.Tensor [shape=(samples,) or (channels, samples), float]
        Audio in [-1, 1].
    sample_rate : int
        Hz.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}
        Sample format. Integer formats clip to [-1, 1] (with a notice when anything clipped).
    overwrite : bool
        Allow replacing an existing file (never one of ``protect``).
    protect : iterable of paths
        Input files that must never be replaced.

    Returns
    -------
    list of str
        Notices (clipping).
    """
    p = Path(path)
    _check_audio_target(p, subtype, sample_rate)
    a = _audio_array(y, p)
    check(a.size > 0, f"audio to write to {str(p)!r} is empty (shape {a.shape})")
    writer = AudioWriter(
        p,
        sample_rate,
        subtype,
        channels=1 if a.ndim == 1 else a.shape[0],
        overwrite=overwrite,
        protect=protect,
    )
    with writer:
        writer.write(a)
    return writer.notices


# ---------------------------------------------------------------------- mel files


def _to_array(value: Any, where: str) -> np.ndarray:
    """A numeric array from a tensor or array; float16, bfloat16 and integers become float32."""
    if hasattr(value, "detach") and hasattr(value, "is_complex"):  # torch.Tensor
        t = value.detach()
        check(
            getattr(t, "layout", None) is None or str(t.layout) == "torch.strided",
            f"{where} is a sparse or non-standard tensor ({t.layout}); save a dense tensor",
        )
        check(not t.is_complex(), f"{where} holds complex values (dtype {t.dtype}); a mel is real")
        check(
            t.is_floating_point() or str(t.dtype) in _TORCH_INTS,
            f"{where} has non-numeric dtype {str(t.dtype).replace('torch.', '')}",
        )
        t = t.cpu()
        if str(t.dtype) not in ("torch.float32", "torch.float64"):
            t = t.float()
        return t.numpy()
    if not isinstance(value, np.ndarray):
        raise MelinvertError(f"{where} is a {type(value).__name__}, not an array")
    kind = value.dtype.kind
    check(kind != "c", f"{where} holds complex values (dtype {value.dtype}); a mel is real")
    check(kind in "fiu", f"{where} has non-numeric dtype {value.dtype}")
    if value.dtype not in (np.float32, np.float64):
        value = value.astype(np.float32)
    return value


_TORCH_INTS = (
    "torch.uint8",
    "torch.int8",
    "torch.int16",
    "torch.int32",
    "torch.int64",
    "torch.uint16",
    "torch.uint32",
    "torch.uint64",
)


def _is_arraylike(v: Any) -> bool:
    return isinstance(v, np.ndarray) or (hasattr(v, "detach") and hasattr(v, "is_complex"))


def _pick_array(entries: Mapping[str, Any], where: str) -> Any:
    """The one obvious mel among a file's entries (the recorded config excluded)."""
    arrays = {k: v for k, v in entries.items() if k != CONFIG_KEY and _is_arraylike(v)}
    keys = ", ".join(map(str, entries)) or "none"
    check(bool(arrays), f"{where} holds no array (keys: {keys})")
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    lower = {str(k).lower(): k for k in arrays}
    for name in MEL_KEYS:
        if name in lower:
            return arrays[lower[name]]
    raise MelinvertError(
        f"{where} holds several arrays ({keys}) and none is obviously the mel; "
        f"expected a key such as {', '.join(MEL_KEYS[:4])}"
    )


def _parse_recorded(text: Any, where: str) -> MelConfig:
    if isinstance(text, np.ndarray):
        check(text.dtype.kind == "U" and text.size == 1, f"{where}: {CONFIG_KEY} is not a text entry")
        text = str(text.reshape(()))
    check(isinstance(text, str), f"{where}: {CONFIG_KEY} is not text")
    try:
        return MelConfig.from_json(text)
    except (TypeError, ValueError) as e:  # MelinvertError, and what a malformed field may raise
        raise MelinvertError(f"{where}: the recorded config is invalid: {_one_line(e)}") from None


def _read_pt(p: Path) -> tuple[Any, MelConfig | None]:
    import pickle
    import zipfile

    import torch

    if zipfile.is_zipfile(p):  # what the tensors cost once loaded, before loading them
        try:
            with zipfile.ZipFile(p) as zf:
                total = sum(i.file_size for i in zf.infolist())
        except (OSError, zipfile.BadZipFile) as e:
            raise MelinvertError(f"{str(p)!r} is not a readable .pt file ({_one_line(e)})") from None
        _check_cost(p, total, "tensors")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; errors follow anyway
            warnings.simplefilter("ignore")
            obj = torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" ({m.group(1)})" if m else ""
        raise MelinvertError(
            f"{str(p)!r} holds pickled Python objects{what} or is not a valid .pt file; melinvert "
            "loads .pt files with weights_only=True and never unpickles: save a tensor or a dict of tensors"
        ) from None
    except Exception as e:
        raise MelinvertError(f"{str(p)!r} is not a readable .pt file ({_one_line(e)})") from None
    recorded = None
    if isinstance(obj, Mapping):
        entries = {str(k): v for k, v in obj.items()}
        if CONFIG_KEY in entries:
            recorded = _parse_recorded(entries[CONFIG_KEY], str(p))
        return _pick_array(entries, repr(str(p))), recorded
    if isinstance(obj, (list, tuple)):
        check(
            len(obj) == 1 and _is_arraylike(obj[0]),
            f"{str(p)!r} holds a {type(obj).__name__} of {len(obj)} items; expected a tensor "
            "or a dict with a 'mel' entry",
        )
        return obj[0], None
    check(
        _is_arraylike(obj),
        f"{str(p)!r} holds a {type(obj).__name__}; expected a tensor or a dict with a 'mel' entry",
    )
    return obj, None


#: Default of the largest array a mel or statistics file may hold once loaded (MiB).
DEFAULT_MAX_ARRAY_MB = 2048
#: The environment variable that changes it (a number of MiB), e.g. ``MELINVERT_MAX_ARRAY_MB=8192``.
MAX_ARRAY_ENV = "MELINVERT_MAX_ARRAY_MB"
_READ_CHUNK = 1 << 24  # bytes read at a time from a .npy file

#: The first bytes of formats a mel file is often confused with, and what they are.
_SIGNATURES = (
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"PK\x03\x04", "a zip archive (.npz or .pt)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"RIFF", "a WAV audio file"),
    (b"RF64", "a WAV audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS", "an Ogg audio file"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x80", "a Python pickle"),
)


def max_array_bytes() -> int:
    """The most bytes one array read from a mel or statistics file may take once loaded
    (decompressed): :data:`DEFAULT_MAX_ARRAY_MB` MiB, or ``$MELINVERT_MAX_ARRAY_MB``."""
    text = os.environ.get(MAX_ARRAY_ENV)
    if text is None or not text.strip():
        return DEFAULT_MAX_ARRAY_MB << 20
    try:
        mb = float(text)
    except ValueError:
        mb = float("nan")
    check(mb > 0 and mb < float("inf"), f"{MAX_ARRAY_ENV}={text!r} must be a number of MiB > 0")
    return int(mb * (1 << 20))


def _check_cost(p: Path, nbytes: int, what: str) -> None:
    """Refuse what would take more than :func:`max_array_bytes` once loaded, before loading it."""
    limit = max_array_bytes()
    check(
        nbytes <= limit,
        f"{str(p)!r} holds {what} of {nbytes / 2**20:.0f} MiB once loaded, above the limit of "
        f"{limit / 2**20:.0f} MiB; set {MAX_ARRAY_ENV} to a larger number of MiB to read it",
    )


def _sniff(p: Path) -> str:
    """What a file looks like from its first bytes, in words."""
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise MelinvertError(f"cannot read {str(p)!r}: {e.strerror or _one_line(e)}") from None
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    return "text" if head and all(32 <= c < 127 or c in b"\t\r\n" for c in head) else "unknown data"


def _require_format(p: Path, ext: str, expected: tuple[str, ...]) -> None:
    """Refuse a file whose first bytes are not those of ``ext`` (a pickle or a WAV renamed)."""
    what = _sniff(p)
    if what in expected:
        return
    never = "; melinvert never unpickles" if what == "a Python pickle" else ""
    raise MelinvertError(
        f"{str(p)!r} is not a {ext} file: its content looks like {what}{never}; save the mel "
        f"with {'numpy.save' if ext == '.npy' else 'numpy.savez'} (or 'melinvert mel')"
    )


def _numpy_problem(p: Path, e: Exception, ext: str) -> str:
    text = str(e).lower()
    if "object" in text or "pickle" in text:
        return f"{str(p)!r} holds Python objects (an object array); melinvert never unpickles"
    return f"{str(p)!r} is not a readable {ext} file ({_one_line(e)})"


def _npy_header(f: IO[bytes], p: Path, ext: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The shape, Fortran order and dtype of the .npy array ``f`` is positioned at (checked
    for objects and for :func:`max_array_bytes`); ``f`` is left at the data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            shape, fortran, dtype = fmt._read_array_header(f, version)  # 3.0: the 2.0 layout, utf-8
    except Exception as e:
        raise MelinvertError(_numpy_problem(p, e, ext)) from None
    check(
        not dtype.hasobject,
        f"{str(p)!r} holds Python objects (an object array); melinvert never unpickles",
    )
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    _check_cost(p, nbytes, f"a {tuple(shape)} {dtype} array")
    return tuple(shape), bool(fortran), dtype


def _read_npz(p: Path) -> tuple[Any, MelConfig | None]:
    import zipfile

    _require_format(p, ".npz", ("a zip archive (.npz or .pt)", "an empty zip archive"))
    try:
        with zipfile.ZipFile(p) as zf, np.load(p, allow_pickle=False) as z:
            names = list(z.files)
            sizes = {i.filename.removesuffix(".npy"): i.file_size for i in zf.infolist()}
            if CONFIG_KEY in names:
                check(sizes.get(CONFIG_KEY, 0) <= 1 << 20, f"{str(p)!r}: {CONFIG_KEY} is over 1 MiB")
                recorded = _parse_recorded(z[CONFIG_KEY], str(p))
            else:
                recorded = None
            # Load only the chosen entry: pick by name first, reading arrays lazily.
            candidates = [n for n in names if n != CONFIG_KEY]
            check(bool(candidates), f"{str(p)!r} holds no array (keys: {', '.join(names) or 'none'})")
            if len(candidates) == 1:
                key = candidates[0]
            else:
                lower = {n.lower(): n for n in candidates}
                key = next((lower[k] for k in MEL_KEYS if k in lower), None)
                if key is None:
                    raise MelinvertError(
                        f"{str(p)!r} holds several arrays ({', '.join(names)}) and none is obviously the "
                        f"mel; expected a key such as {', '.join(MEL_KEYS[:4])}"
                    )
            # what the entry costs once decompressed: the zip's declared size, then the array header
            _check_cost(p, sizes.get(key, 0), f"an entry {key!r}")
            with zf.open(key + ".npy" if key + ".npy" in zf.namelist() else key) as member:
                _npy_header(member, p, ".npz")
            return z[key], recorded
    except MelinvertError:
        raise
    except ValueError as e:
        raise MelinvertError(_numpy_problem(p, e, ".npz")) from None
    except Exception as e:
        raise MelinvertError(f"{str(p)!r} is not a readable .npz file ({_one_line(e)})") from None


def _read_npy_array(p: Path) -> np.ndarray:
    """Read a .npy array into memory, a chunk at a time (no memory map: a file truncated or
    replaced while it is read gives an error, never SIGBUS)."""
    _require_format(p, ".npy", ("a NumPy .npy array",))
    try:
        with open(p, "rb") as f:
            shape, fortran, dtype = _npy_header(f, p, ".npy")
            count = int(np.prod(shape, dtype=np.int64))
            data = np.empty(count, dtype=dtype)
            view = memoryview(data.view(np.uint8).reshape(-1))
            done = 0
            while done < len(view):
                n = f.readinto(view[done : done + _READ_CHUNK])
                check(
                    bool(n),
                    f"{str(p)!r} is truncated: its header declares {len(view)} bytes of data but only "
                    f"{done} could be read (was it cut short, or changed while being read?)",
                )
                done += n
    except OSError as e:
        raise MelinvertError(f"cannot read {str(p)!r}: {e.strerror or _one_line(e)}") from None
    return data.reshape(shape, order="F" if fortran else "C")


def _read_npy(p: Path) -> tuple[Any, MelConfig | None]:
    arr = _read_npy_array(p)
    sidecar = sidecar_path(p)
    recorded = None
    if sidecar.is_file():
        try:
            text = sidecar.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise MelinvertError(f"cannot read config sidecar {str(sidecar)!r}: {_one_line(e)}") from None
        recorded = _parse_recorded(text, str(sidecar))
    return arr, recorded


def sidecar_path(path: PathLike) -> Path:
    """The JSON sidecar recording the config of a ``.npy`` mel: ``PATH.json`` (``x.npy.json``)."""
    return Path(os.fspath(path) + ".json")


def read_mel_file(path: PathLike) -> tuple[np.ndarray, MelConfig | None]:
    """Read the array of a mel file as stored (any layout) and its recorded config.

    Parameters
    ----------
    path : str or PathLike
        ``.npy`` (with an optional ``PATH.json`` sidecar), ``.npz`` or ``.pt``.

    Returns
    -------
    array : np.ndarray [float32, or float64 when stored so]
        The stored array, checked non-empty, real, numeric and finite; integers and float16
        converted to float32. Axes as stored.
    recorded : MelConfig or None
        The config the file records, if any.
    """
    p = _existing_file(path, "mel file")
    ext = p.suffix.lower()
    check(
        ext in MEL_EXTENSIONS,
        f"{str(p)!r}: unsupported mel format {ext or '(no extension)'!r}; "
        f"melinvert reads {', '.join(MEL_EXTENSIONS)}",
    )
    reader = {".npy": _read_npy, ".npz": _read_npz, ".pt": _read_pt}[ext]
    raw, recorded = reader(p)
    arr = _to_array(raw, repr(str(p)))
    check(arr.size > 0, f"{str(p)!r} holds an empty array (shape {arr.shape})")
    flat = arr.reshape(-1, order="A")  # a view: count in chunks, no full-size temporary
    chunks = (flat[i : i + (1 << 22)] for i in range(0, flat.size, 1 << 22))
    bad = sum(int(c.size - np.count_nonzero(np.isfinite(c))) for c in chunks)
    check(bad == 0, f"{str(p)!r} contains NaN or Inf ({bad} of {arr.size} values)")
    return arr, recorded


def guess_mel_axis(a: int, b: int) -> str | None:
    """Which of two axis sizes is the mel axis, from sizes alone: a layout name, or ``None``.

    An axis whose size is a preset's ``n_mels`` (then a common ``n_mels``) while the other is
    not decides; a square shape or two plausible sizes cannot be decided.
    """
    if a == b:
        return None
    for known in (PRESET_N_MELS, COMMON_N_MELS):
        if (a in known) != (b in known):
            return "mels-first" if a in known else "time-first"
    return None


def to_mels_first(
    array: np.ndarray, *, n_mels: int | None = None, layout: str = "auto", source: str = "mel"
) -> tuple[np.ndarray, str]:
    """Bring a stored mel to ``(n_mels, frames)`` or ``(batch, n_mels, frames)``.

    Parameters
    ----------
    array : np.ndarray
        Shaped ``(n_mels, frames)``, ``(frames, n_mels)``, either with leading batch axes of
        size 1 (squeezed) or one batch axis.
    n_mels : int, optional
        The config's number of mel bins: decides the layout, and must match.
    layout : {"auto", "mels-first", "time-first"}
        ``auto`` decides from ``n_mels``, else from the sizes (:func:`guess_mel_axis`).
    source : str
        Named in error messages.

    Returns
    -------
    mel : np.ndarray [shape=(..., n_mels, frames)]
    layout : str
        The layout found, ``"mels-first"`` or ``"time-first"``.
    """
    check(layout in LAYOUTS, f"{layout=} must be one of {', '.join(LAYOUTS)}")
    a = np.asarray(array)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    check(a.ndim >= 2, f"{source} has shape {tuple(np.shape(array))}: a mel needs two axes (n_mels, frames)")
    check(
        a.ndim <= 3,
        f"{source} has shape {tuple(np.shape(array))}: at most one batch axis before (n_mels, frames)",
    )
    r, c = a.shape[-2:]
    hint = "pass --layout mels-first or --layout time-first (layout=...)"
    if layout == "auto":
        if n_mels is not None:
            if r == c == n_mels:
                raise MelinvertError(f"{source} is square ({r} x {c}): cannot tell mels from frames; {hint}")
            if r == n_mels:
                layout = "mels-first"
            elif c == n_mels:
                layout = "time-first"
            else:
                guess = guess_mel_axis(r, c)
                has = f"{r if guess == 'mels-first' else c} mel bins" if guess else f"axes of {r} and {c}"
                raise MelinvertError(
                    f"{source} has {has} (shape {tuple(a.shape)}) but the config has n_mels={n_mels}"
                )
        else:
            guess = guess_mel_axis(r, c)
            if guess is None:
                what = f"is square ({r} x {c})" if r == c else f"has shape {tuple(a.shape)}"
                raise MelinvertError(
                    f"{source} {what}: cannot tell which axis holds the mel bins; {hint} or give a config"
                )
            layout = guess
    mel = a if layout == "mels-first" else np.swapaxes(a, -1, -2)
    if n_mels is not None:
        check(
            mel.shape[-2] == n_mels,
            f"{source} has {mel.shape[-2]} mel bins as {layout} (shape {tuple(a.shape)}) "
            f"but the config has n_mels={n_mels}",
        )
    return np.ascontiguousarray(mel), layout


def _describe_differences(recorded: MelConfig, asked: MelConfig) -> str:
    parts = []
    for name in recorded.differences(asked):
        obj_r: Any = recorded
        obj_a: Any = asked
        for attr in name.split("."):
            obj_r, obj_a = getattr(obj_r, attr), getattr(obj_a, attr)
        if isinstance(obj_r, tuple) or isinstance(obj_a, tuple):
            parts.append(f"{name} (statistics differ)")
        else:
            parts.append(f"{name} {obj_r!r} in the file vs {obj_a!r} asked")
    return "; ".join(parts)


def load_mel(
    path: PathLike, *, config: MelConfig | str | None = None, layout: str = "auto"
) -> tuple[np.ndarray, MelConfig | None]:
    """Read a mel file, bring it to ``(n_mels, frames)`` and check it against its config.

    Parameters
    ----------
    path : str or PathLike
        ``.npy`` (optional ``PATH.json`` sidecar), ``.npz`` or ``.pt`` (read with
        ``weights_only=True``; never unpickled). A tensor/array, or a dict with one obvious
        array (``mel``, ``feats``, ``logmel``, ``spec``, ...).
    config : MelConfig or str, optional
        The config the mel is expected to have. It decides the layout (its ``n_mels``), must
        equal the config the file records (if any), and the values must fit its compression
        (:meth:`~melinvert.config.Compression.check_range`; values a little below the floor pass).
    layout : {"auto", "mels-first", "time-first"}
        How the file stores the axes; ``auto`` decides from ``n_mels`` or the sizes.

    Returns
    -------
    mel : np.ndarray [shape=(n_mels, frames) or (batch, n_mels, frames), float32]
        float64 is kept when stored so.
    recorded : MelConfig or None
        The config the file records (``None`` if it records none).

    Raises
    ------
    MelinvertError
        Unreadable or pickled files, empty/non-numeric/complex/NaN data, an undecidable layout,
        ``n_mels`` or the recorded config disagreeing with ``config``, values that cannot come
        from the compression.
    """
    asked = resolve_config(config) if config is not None else None
    arr, recorded = read_mel_file(path)
    src = repr(os.fspath(path))
    if asked is not None and recorded is not None:
        diff = _describe_differences(recorded, asked)
        check(not diff, f"{src} records a different config than the one asked for: {diff}")
    use = asked if asked is not None else recorded
    mel, _ = to_mels_first(arr, n_mels=use.n_mels if use is not None else None, layout=layout, source=src)
    if use is not None:
        from .dsp import from_numpy_readonly

        # values a little below the floor (predicted mels) are clamped, with a notice, by the
        # inversion; only what cannot be a mel of this compression is refused here
        problem = use.compression.check_range(from_numpy_readonly(np.ascontiguousarray(mel))).error
        check(problem is None, f"{src}: {problem}")
    return mel, recorded


def save_mel(
    path: PathLike,
    mel: Any,
    config: MelConfig | str,
    overwrite: bool = False,
    *,
    layout: str = "mels-first",
    protect: Iterable[PathLike] = (),
) -> Path:
    """Write a mel that records its config, atomically.

    Parameters
    ----------
    path : str or PathLike
        ``.npy`` (plus a ``PATH.json`` sidecar holding ``config.to_dict()``), ``.npz`` (arrays
        ``mel`` and ``config_json``) or ``.pt`` (``{"mel": tensor, "config_json": str}``,
        loadable with ``weights_only=True``).
    mel : np.ndarray or torch.Tensor [shape=(n_mels, frames) or (batch, n_mels, frames), float]
    config : MelConfig or str
        The config the mel was computed with; ``mel.shape[-2]`` must equal its ``n_mels``.
    overwrite : bool
        Allow replacing existing files (never one of ``protect``).
    layout : {"mels-first", "time-first"}
        How to store the axes (``time-first``: ``(frames, n_mels)`` as ParallelWaveGAN does).
    protect : iterable of paths
        Input files that must never be replaced.

    Returns
    -------
    Path
        The mel file written.
    """
    cfg = resolve_config(config)
    p = Path(path)
    ext = p.suffix.lower()
    check(
        ext in MEL_EXTENSIONS,
        f"{str(p)!r}: cannot write mel format {ext or '(no extension)'!r}; use {', '.join(MEL_EXTENSIONS)}",
    )
    check(layout in ("mels-first", "time-first"), f"{layout=} must be 'mels-first' or 'time-first'")
    if hasattr(mel, "detach"):
        mel = mel.detach().cpu().numpy()
    a = np.asarray(mel)
    check(a.dtype.kind == "f", f"mel must be floating point, got dtype {a.dtype}")
    check(a.ndim in (2, 3), f"mel must be shaped (n_mels, frames) or (batch, n_mels, frames), got {a.shape}")
    check(a.size > 0, f"mel is empty (shape {a.shape})")
    check(bool(np.isfinite(a).all()), "mel contains NaN or Inf")
    check(a.shape[-2] == cfg.n_mels, f"mel has {a.shape[-2]} bins (shape {a.shape}) but n_mels={cfg.n_mels}")
    a = a.astype(np.float64 if a.dtype == np.float64 else np.float32)
    store = np.ascontiguousarray(np.swapaxes(a, -1, -2) if layout == "time-first" else a)
    text = cfg.to_json()
    items: list[tuple[Path, Callable[[IO[bytes]], None]]]
    if ext == ".npy":
        side = text.encode("utf-8")
        items = [
            (p, lambda f: np.save(f, store, allow_pickle=False)),
            (sidecar_path(p), lambda f: f.write(side)),
        ]
    elif ext == ".npz":
        items = [(p, lambda f: np.savez(f, mel=store, config_json=np.array(text)))]
    else:
        import torch

        obj = {"mel": torch.from_numpy(store.copy()), CONFIG_KEY: text}
        items = [(p, lambda f: torch.save(obj, f))]
    _write_files(items, overwrite=overwrite, protect=protect)
    return p


# ---------------------------------------------------------------------- statistics


def load_stats(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read per-bin normalisation statistics (ParallelWaveGAN's ``stats.npy``).

    Parameters
    ----------
    path : str or PathLike
        A ``.npy`` shaped ``(2, n_mels)``: row 0 the mean, row 1 the scale (std), in the units
        of the compressed mel (``log10`` for ParallelWaveGAN).

    Returns
    -------
    mean, std : np.ndarray [shape=(n_mels,), float64]
        For ``Compression(mean=mean, std=std)``.
    """
    p = _existing_file(path, "statistics file")
    check(
        p.suffix.lower() == ".npy",
        f"{str(p)!r}: statistics must be a .npy shaped (2, n_mels); convert stats.h5 with "
        "numpy.save('stats.npy', numpy.stack([mean, scale]))",
    )
    arr, _ = _read_npy(p)
    arr = _to_array(arr, repr(str(p)))
    check(
        arr.ndim == 2 and arr.shape[0] == 2 and arr.shape[1] >= 1,
        f"{str(p)!r} has shape {arr.shape}; statistics must be shaped (2, n_mels): mean, scale",
    )
    check(bool(np.isfinite(arr).all()), f"{str(p)!r} contains NaN or Inf")
    mean = arr[0].astype(np.float64)
    std = arr[1].astype(np.float64)
    check(bool((std > 0).all()), f"{str(p)!r}: the scale row (row 1) must be > 0 everywhere")
    return mean, std

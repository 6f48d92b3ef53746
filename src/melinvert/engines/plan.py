"""Inputs -> outputs for a run over many files, in time linear in the number of files.

:func:`plan_jobs` maps files and folders (walked recursively, mirrored under the output folder)
to :class:`~melinvert.engines.base.Job` pairs. It refuses, before any work, two inputs that
would write one output and an output that would replace an input (through a symlink or a hard
link too). Every path is resolved once (its folder's real path cached, the file itself checked
for a link), and the checks are dict and set lookups: 10,000 files plan in well under a second,
where comparing every output with every input costs hours.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import check
from .base import Job

PathLike = str | os.PathLike


class _Resolver:
    """``realpath`` with the folders' real paths cached: one ``lstat`` per file, one walk per folder."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def folder(self, path: str) -> str:
        real = self._folders.get(path)
        if real is None:
            real = self._folders[path] = os.path.realpath(path)
        return real

    def file(self, path: str) -> str:
        head, name = os.path.split(os.path.abspath(path))
        real = os.path.join(self.folder(head), name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        return os.path.normcase(real)


def _walk(root: str, extensions: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(path, path relative to root)`` of the files under ``root`` with one of
    ``extensions`` (hidden entries skipped), sorted folder by folder."""
    found: list[tuple[tuple[str, ...], str]] = []
    stack = [(root, ())]
    while stack:
        folder, parts = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as e:
            check(False, f"cannot read folder {folder!r}: {e.strerror or e}")
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            if entry.is_dir():
                stack.append((entry.path, (*parts, name)))
            elif name.lower().endswith(extensions) and entry.is_file():
                found.append(((*parts, name), entry.path))
    found.sort()
    return [(path, os.path.join(*rel)) for rel, path in found]


def find_files(
    inputs: Sequence[PathLike], extensions: Iterable[str], *, file_kind: str | None = None
) -> list[tuple[str, str | None, str]]:
    """The files named in ``inputs`` and those found in folders among them, each once.

    Returns
    -------
    list of (str, str or None, str)
        ``(file, path relative to its folder input or None for a file input, resolved path)``.
    """
    exts = tuple(e.lower() for e in extensions)
    check(len(inputs) > 0, "no input files given")
    resolver = _Resolver()
    found: list[tuple[str, str | None, str]] = []
    seen: set[str] = set()
    for item in inputs:
        p = os.fspath(item)
        check(os.path.exists(p), f"input {p!r} does not exist")
        if os.path.isdir(p):
            pairs: list[tuple[str, str | None]] = list(_walk(p, exts))
            check(bool(pairs), f"no {', '.join(exts)} files found in folder {p!r}")
        else:
            check(
                file_kind is None or os.path.splitext(p)[1].lower() in exts,
                f"{p!r} is not an {file_kind} file ({', '.join(exts)})",
            )
            pairs = [(p, None)]
        for f, rel in pairs:
            key = resolver.file(f)
            if key not in seen:
                seen.add(key)
                found.append((f, rel, key))
    return found


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def plan_jobs(
    inputs: Sequence[PathLike],
    out: PathLike,
    suffix: str,
    *,
    extensions: Iterable[str],
    file_suffixes: Iterable[str] = (),
) -> list[Job]:
    """Map input files and folders to output paths, checking the plan in linear time.

    Parameters
    ----------
    inputs : sequence of paths
        Files, or folders walked recursively for files ending in one of ``extensions``.
    out : path
        The output folder: folder inputs are mirrored under it (``IN/a/b.npy`` ->
        ``OUT/a/b.wav``), file inputs land directly in it. With exactly one input file, ``out``
        may name the output file itself (it has an extension, is not an existing folder and
        does not end in ``/``).
    suffix : str
        The output extension, e.g. ``".wav"``.
    extensions : iterable of str
        Input extensions picked up in folders.
    file_suffixes : iterable of str
        Other extensions a single named output may have (``.flac``, ``.ogg`` for audio).

    Returns
    -------
    list of Job
        In input order, sorted within each folder.

    Raises
    ------
    MelinvertError
        A missing input, a folder without matching files, two inputs writing one output, an
        output that would replace an input, or a file where the output folder should be.
    """
    check(suffix.startswith(".") and len(suffix) > 1, f"{suffix=} must be an extension like '.wav'")
    found = find_files(inputs, extensions)
    out_s = os.fspath(out)
    out_p = Path(out_s)
    single = (
        len(found) == 1
        and found[0][1] is None
        and not out_p.is_dir()
        and not out_s.endswith(("/", os.sep))
        and out_p.suffix != ""
    )
    allowed = {suffix.lower(), *(x.lower() for x in file_suffixes)}
    if single:
        check(
            out_p.suffix.lower() in allowed,
            f"output {out_s!r} should end in {' or '.join(dict.fromkeys([suffix, *file_suffixes]))} "
            "(or name a folder, ending in '/')",
        )
        outputs = [out_s]
    else:
        check(
            not (out_p.exists() and not out_p.is_dir()),
            f"output {out_s!r} is a file; with these inputs it must be a folder",
        )
        check(
            out_p.is_dir() or out_p.suffix.lower() not in allowed,
            f"output {out_s!r} names one file but the inputs give {len(found)} files; give a folder",
        )
        outputs = [
            os.path.join(out_s, os.path.splitext(rel if rel is not None else os.path.basename(f))[0] + suffix)
            for f, rel, _ in found
        ]
    _check_plan(found, outputs)
    return [Job(Path(f), Path(o)) for (f, _, _), o in zip(found, outputs)]


def _check_plan(found: Sequence[tuple[str, str | None, str]], outputs: Sequence[str]) -> None:
    """Refuse two inputs writing one output, and an output that is (or links to) an input."""
    resolver = _Resolver()
    input_keys = {key: f for f, _, key in found}
    input_ids: dict[tuple[int, int], str] = {}
    by_output: dict[str, str] = {}
    for (f, _, _), out in zip(found, outputs):
        key = resolver.file(out)
        other = by_output.get(key)
        check(other is None, f"inputs {other!r} and {f!r} would both write {out!r}")
        by_output[key] = f
        hit = input_keys.get(key)
        if hit is None and os.path.lexists(out):
            if not input_ids:
                input_ids = {i: g for g, _, _ in found if (i := _identity(g)) is not None}
            ident = _identity(out)
            hit = input_ids.get(ident) if ident is not None else None
        check(hit is None, f"output {out!r} would replace the input {hit!r}")

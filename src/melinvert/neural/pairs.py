"""Training pairs: audio files matched with mel files (``melinvert train ... --mels DIR``).

An acoustic model's teacher-forced mels, written one file per utterance, pair with the
recordings they came from: ``AUDIO_ROOT/a/b/clip.wav`` with ``DIR/a/b/clip.npy`` (any format
:func:`melinvert.io.load_mel` reads: ``.npy``, ``.npz``, ``.pt``). The key of an audio file is
its path relative to the folder input it was found in (its name for a file input), without
the extension; so is a mel file's, relative to ``DIR``.

Conventions differ by a frame or two at the ends (padding, a dropped last frame), so a mel up
to :data:`TOLERANCE` frames longer or shorter than the config gives for its audio is cut or
padded at the end with the compression's floor (:meth:`Compression.silence_value`, or the
bin's smallest value where that depends on the data). Anything else (audio without a mel, a
mel without audio, lengths further apart) is refused in one line naming the files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..config import MelConfig
from ..errors import MelinvertError, check

#: Frames by which a mel may differ from the length its audio gives and still pair.
TOLERANCE = 2
#: Files named per kind of problem in the refusal (then ``... and N more``).
LISTED = 8


def key_of(path: Path, rel: Path | None) -> str:
    """The pairing key: the relative path (or name) without its extension, with ``/``."""
    return (rel if rel is not None else Path(path.name)).with_suffix("").as_posix()


def audio_keys(inputs: Sequence[str | os.PathLike[str]]) -> dict[Path, str]:
    """Each audio file of ``inputs`` (folders walked as :func:`collect_audio` walks them) with
    its key."""
    from ..io import AUDIO_EXTENSIONS, find_inputs

    return {f: key_of(f, rel) for f, rel in find_inputs(inputs, AUDIO_EXTENSIONS, file_kind="audio")}


def mel_files(mel_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The mel files under ``mel_dir`` by key; two files with one key are an error."""
    from ..io import MEL_EXTENSIONS, find_inputs

    d = Path(mel_dir)
    check(d.is_dir(), f"--mels {str(d)!r} is not a folder")
    out: dict[str, Path] = {}
    for f, rel in find_inputs([d], MEL_EXTENSIONS):
        k = key_of(f, rel)
        check(k not in out, f"--mels: {str(out.get(k))!r} and {str(f)!r} are both the mel of {k!r}")
        out[k] = f
    return out


def _listing(label: str, items: Sequence[str]) -> str:
    more = f" ... and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return f"{len(items)} {label} ({', '.join(items[:LISTED])}{more})"


def pad_value(mel: np.ndarray, config: MelConfig) -> np.ndarray:
    """``(n_mels, 1)``: the compression's silence, or each bin's smallest value of ``mel``."""
    v = config.compression.silence_value(config.n_mels)
    if v is not None:
        return np.full((mel.shape[0], 1), v, dtype=mel.dtype)
    return mel.min(axis=1, keepdims=True)


def fit_length(mel: np.ndarray, frames: int, config: MelConfig) -> np.ndarray:
    """``mel`` cut, or padded at the end with :func:`pad_value`, to ``frames`` frames."""
    if mel.shape[1] >= frames:
        return np.ascontiguousarray(mel[:, :frames])
    pad = np.repeat(pad_value(mel, config), frames - mel.shape[1], axis=1)
    return np.concatenate([mel, pad], axis=1)


def load_pairs(
    audio: dict[Path, str],
    frames: dict[Path, int],
    mel_dir: str | os.PathLike[str],
    config: MelConfig,
    *,
    say: Callable[[str], None] | None = None,
) -> tuple[dict[Path, np.ndarray], int]:
    """The mel of each audio file, its length reconciled with the audio's.

    Parameters
    ----------
    audio : dict
        Audio file -> key (:func:`audio_keys`).
    frames : dict
        Audio file -> frames its mel has with ``config``. Files left out of it (unreadable)
        need no mel, and their mels do not count as unmatched.
    mel_dir : path
    config : MelConfig
        Every mel is checked against it (:func:`melinvert.io.load_mel`).
    say : callable, optional
        Receives the notice counting the mels whose length was reconciled.

    Returns
    -------
    mels : dict
        Audio file -> compressed mel ``(n_mels, frames[file])`` float32.
    reconciled : int
        How many were cut or padded (by at most :data:`TOLERANCE` frames).

    Raises
    ------
    MelinvertError
        One line listing audio files without a mel, mels without audio and lengths more than
        :data:`TOLERANCE` frames apart (with both frame counts); or a mel file that cannot be
        read or does not fit ``config``.
    """
    from ..io import load_mel

    mels = mel_files(mel_dir)
    by_key = {k: f for f, k in audio.items()}
    no_mel = sorted(str(f) for f, k in audio.items() if k not in mels and f in frames)
    no_audio = sorted(str(p) for k, p in mels.items() if k not in by_key)
    bad, out, fixed = [], {}, 0
    for f, k in audio.items():
        if k not in mels or f not in frames:
            continue
        m, _ = load_mel(mels[k], config=config)
        check(
            m.ndim == 2,
            f"{str(mels[k])!r} holds a batch of mels (shape {m.shape}); --mels needs one per file",
        )
        want, got = frames[f], m.shape[1]
        if abs(got - want) > TOLERANCE:
            bad.append(f"{f}: audio {want} frames, mel {got}")
            continue
        fixed += got != want
        out[f] = fit_length(m.astype(np.float32), want, config)
    problems = []
    if no_mel:
        problems.append(_listing("audio file(s) without a mel", no_mel))
    if no_audio:
        problems.append(_listing("mel file(s) without audio", no_audio))
    if bad:
        problems.append(_listing(f"length(s) more than {TOLERANCE} frames apart", bad))
    if problems:
        raise MelinvertError(f"--mels {str(mel_dir)!r} does not pair with the audio: " + "; ".join(problems))
    if fixed and say is not None:
        say(f"--mels: {fixed} of {len(out)} mel(s) cut or padded by up to {TOLERANCE} frames to their audio")
    return out, fixed


def mels_digest(mels: Sequence[np.ndarray]) -> str:
    """SHA-256 (first 16 hex digits) of the mels' shapes and values, in order."""
    h = hashlib.sha256()
    for m in mels:
        h.update(f"{m.shape}\n".encode())
        h.update(np.ascontiguousarray(m, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]

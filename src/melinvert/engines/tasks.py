"""The two dataset tasks the command line runs: mel files -> audio, audio -> mel files.

Both are plain picklable objects (a config and options): engines send them to worker
processes and Ray actors. Batches across files go through :func:`_invert_batch` and
:func:`_mel_batch`, the only places that know how the API batches: a ragged list when the API
takes one, else equal lengths stacked along a batch axis (bit-identical to one at a time,
which the tests check), else one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..config import MelConfig, resolve_config
from ..errors import MelinvertError, check
from .base import Job, Task


def _stacked(items: Sequence[np.ndarray], fn: Callable[[np.ndarray], Any]) -> list[np.ndarray]:
    """``fn`` on groups of equal shape stacked along a new first axis; results in item order."""
    groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
    for i, a in enumerate(items):
        groups.setdefault((a.shape, a.dtype.str), []).append(i)
    out: list[Any] = [None] * len(items)
    for idx in groups.values():
        if len(idx) == 1:
            out[idx[0]] = np.asarray(fn(items[idx[0]]))
            continue
        res = np.asarray(fn(np.stack([items[i] for i in idx])))
        for k, i in enumerate(idx):
            out[i] = res[k]
    return out


def _ragged(fn: Callable[..., Any], items: Sequence[np.ndarray], *args: Any, **kw: Any) -> list | None:
    """``fn(list, ...)`` when the API takes ragged lists (returns a list), else None."""
    if len(items) < 2 or len({a.shape for a in items}) == 1:
        return None
    try:
        res = fn(list(items), *args, **kw)
    except MelinvertError:
        return None  # an API without ragged batches refuses the list; a bad item fails below too
    return list(res) if isinstance(res, (list, tuple)) and len(res) == len(items) else None


def _invert_batch(mels: Sequence[np.ndarray], cfg: MelConfig, **kw: Any) -> list[np.ndarray]:
    """Invert several mels ``(n_mels, frames_i)``: a list of audio ``(samples_i,)``, each equal
    to ``melinvert.invert(mel, cfg, **kw)`` alone."""
    from ..pipeline import invert

    res = _ragged(invert, mels, cfg, **kw)
    if res is not None:
        return [np.asarray(r) for r in res]
    return _stacked(mels, lambda m: invert(m, cfg, **kw))


def _mel_batch(signals: Sequence[np.ndarray], cfg: MelConfig, **kw: Any) -> list[np.ndarray]:
    """Mel spectrograms of several signals ``(samples_i,)``: each equal to one at a time."""
    from ..dsp import mel_spectrogram

    res = _ragged(mel_spectrogram, signals, cfg, **kw)
    if res is not None:
        return [np.asarray(r) for r in res]
    return _stacked(signals, lambda y: mel_spectrogram(y, cfg, **kw))


class InvertTask(Task):
    """Mel file -> audio file: :func:`melinvert.io.load_mel`, :func:`melinvert.invert`,
    :func:`melinvert.io.save_audio`.

    Parameters
    ----------
    config : MelConfig or str
        The mels' config (files recording another config are refused, one by one).
    method, n_iter, seed, model :
        As :func:`melinvert.invert` (``model`` a path: it is loaded once per worker).
    layout : {"auto", "mels-first", "time-first"}
        How the files store their axes.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}
        Sample format of the outputs.
    device : str, optional
        Where to compute (``"cpu"``, ``"cuda"``, ``"auto"``).
    """

    name = "invert"

    def __init__(
        self,
        config: MelConfig | str,
        *,
        method: str = "default",
        n_iter: int | None = None,
        seed: int | None = None,
        layout: str = "auto",
        subtype: str = "PCM_16",
        device: str | None = None,
        model: str | os.PathLike | None = None,
    ):
        from ..pipeline import parse_method

        self.config = resolve_config(config)
        parse_method(method, n_iter)  # a bad name fails before any file
        self.method, self.n_iter, self.seed = method, n_iter, seed
        self.layout, self.subtype, self.device = layout, subtype, device
        self.model = None if model is None else os.fspath(model)

    def describe(self) -> dict[str, Any]:
        model = None
        if self.model is not None:
            st = os.stat(self.model)
            model = {"path": os.path.abspath(self.model), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return {
            "task": self.name,
            "config": self.config.to_dict(),
            "method": self.method,
            "n_iter": self.n_iter,
            "seed": self.seed,
            "subtype": self.subtype,
            "model": model,
        }

    def summary(self) -> str:
        return f"invert, method {self.method}, {self.config.name or 'custom config'}, seed {self.seed}"

    def setup(self) -> None:
        """Load the method's checkpoints once (they stay cached in this process)."""
        from .. import neural
        from ..pipeline import parse_method

        neural.bind(parse_method(self.method, self.n_iter), self.model, self.config)

    def load(self, job: Job) -> np.ndarray:
        from ..io import load_mel

        mel, _ = load_mel(job.input, config=self.config, layout=self.layout)
        check(
            mel.ndim == 2,
            f"{str(job.input)!r} holds a batch of {mel.shape[0]} mels; split it into one mel per file",
        )
        return mel

    def process(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return _invert_batch(
            items,
            self.config,
            method=self.method,
            n_iter=self.n_iter,
            seed=self.seed,
            device=self.device,
            model=self.model,
        )

    def write(self, job: Job, output: np.ndarray) -> list[str]:
        from ..io import save_audio

        return save_audio(
            job.output, output, self.config.sample_rate, self.subtype, overwrite=True, protect=[job.input]
        )

    def item_bytes(self, item: np.ndarray) -> int:
        # several complex spectra (n_fft // 2 + 1, frames) and audio-sized buffers per item
        frames = item.shape[-1]
        return int(frames * (self.config.n_fft // 2 + 1) * 8 * 12 + frames * self.config.hop_length * 4 * 8)

    def item_seconds(self, item: np.ndarray) -> float:
        c = self.config
        return c.n_samples(max(item.shape[-1], c.min_frames)) / c.sample_rate


class MelTask(Task):
    """Audio file -> mel file recording its config: :func:`melinvert.io.load_audio` (mixed to
    mono, resampled to the config's rate), :func:`melinvert.mel_spectrogram`,
    :func:`melinvert.io.save_mel`.

    Parameters
    ----------
    config : MelConfig or str
    layout : {"mels-first", "time-first"}
        How to store the axes.
    device : str, optional
        Where to compute.
    """

    name = "mel"

    def __init__(self, config: MelConfig | str, *, layout: str = "mels-first", device: str | None = None):
        check(layout in ("mels-first", "time-first"), f"{layout=} must be 'mels-first' or 'time-first'")
        self.config = resolve_config(config)
        self.layout, self.device = layout, device

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "config": self.config.to_dict(), "layout": self.layout}

    def summary(self) -> str:
        return f"mel, {self.config.name or 'custom config'}, {self.layout}"

    def load(self, job: Job) -> np.ndarray:
        from ..io import load_audio

        y, sr, _ = load_audio(job.input, self.config.sample_rate)
        c = self.config
        check(
            y.shape[0] >= c.min_samples,
            f"{str(job.input)!r} has {y.shape[0]} samples at {sr} Hz, fewer than the {c.min_samples} one "
            f"frame needs (n_fft={c.n_fft}, padding={c.padding})",
        )
        return y

    def process(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return _mel_batch(items, self.config, device=self.device)

    def write(self, job: Job, output: np.ndarray) -> list[str]:
        from ..io import save_mel

        save_mel(job.output, output, self.config, overwrite=True, layout=self.layout, protect=[job.input])
        return []

    def item_bytes(self, item: np.ndarray) -> int:
        return int(item.nbytes) * 16

    def item_seconds(self, item: np.ndarray) -> float:
        return item.shape[-1] / self.config.sample_rate

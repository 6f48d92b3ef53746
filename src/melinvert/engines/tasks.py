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
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MelConfig, resolve_config
from ..errors import MelinvertError, check
from .base import Job, Task

#: Most frames (summed over the items) inverted together on the CPU. Batching pays there only
#: while the spectra stay in the cache (hifigan-22k-80, ``fast``, one thread, audio-s per s:
#: 0.5 s clips 42 alone, 90 sixteen together; 2 s clips 91 alone, 85 by four, 73 by sixteen;
#: 10 s clips 94 alone, 81 by two). A GPU takes the whole batch.
CPU_BATCH_FRAMES = 512


def _stacked(
    items: Sequence[np.ndarray], fn: Callable[[np.ndarray], Any], *, max_frames: int | None = None
) -> list[np.ndarray]:
    """``fn`` on groups of equal shape stacked along a new first axis; results in item order.

    With ``max_frames``, a group is split into stacks of at most ``max_frames`` frames (the
    last axis) in all, one item at least.
    """
    groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
    for i, a in enumerate(items):
        groups.setdefault((a.shape, a.dtype.str), []).append(i)
    stacks = []
    for (shape, _), idx in groups.items():
        n = len(idx) if max_frames is None else max(1, max_frames // max(1, shape[-1]))
        stacks += [idx[k : k + n] for k in range(0, len(idx), n)]
    out: list[Any] = [None] * len(items)
    for idx in stacks:
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
    from ..dsp import resolve_device
    from ..pipeline import invert

    if resolve_device(kw.get("device")).type == "cpu":
        return _stacked(mels, lambda m: invert(m, cfg, **kw), max_frames=CPU_BATCH_FRAMES)
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
    method, n_iter, seed, model, strict_range :
        As :func:`melinvert.invert` (``model`` a path or a sequence of paths: loaded once per
        worker).
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
        model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        strict_range: bool = False,
    ):
        from ..pipeline import parse_method

        self.config = resolve_config(config)
        parse_method(method, n_iter)  # a bad name fails before any file
        self.method, self.n_iter, self.seed = method, n_iter, seed
        self.layout, self.subtype, self.device = layout, subtype, device
        self.strict_range = strict_range
        if model is None or isinstance(model, (str, os.PathLike)):
            self.model: str | list[str] | None = None if model is None else os.fspath(model)
        else:
            self.model = [os.fspath(m) for m in model]

    def describe(self) -> dict[str, Any]:
        model: Any = None
        if self.model is not None:
            paths = [self.model] if isinstance(self.model, str) else self.model
            model = []
            for path in paths:
                try:
                    st = os.stat(path)
                except OSError as e:
                    raise MelinvertError(f"cannot read model {path!r}: {e.strerror}") from None
                model.append({"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        return {
            "task": self.name,
            "config": self.config.to_dict(),
            "method": self.method,
            "n_iter": self.n_iter,
            "seed": self.seed,
            "subtype": self.subtype,
            "model": model,
        }

    def invert_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`melinvert.invert` this task runs with (batched or,
        for a long file, streamed by :func:`melinvert.pipeline.invert_blocks`)."""
        return {
            "method": self.method,
            "n_iter": self.n_iter,
            "seed": self.seed,
            "device": self.device,
            "model": self.model,
            "strict_range": self.strict_range,
        }

    def summary(self) -> str:
        return f"invert, method {self.method}, {self.config.name or 'custom config'}, seed {self.seed}"

    def setup(self) -> None:
        """Load the method's checkpoints once (they stay cached in this process)."""
        from ..pipeline import parse_method

        plan = parse_method(self.method, self.n_iter)
        if plan.models or self.model is not None:
            from ..neural import resolve

            resolve(plan.models, self.model, self.config, plan.name)

    def load(self, job: Job) -> np.ndarray:
        from ..io import load_mel

        mel, _ = load_mel(job.input, config=self.config, layout=self.layout)
        check(
            mel.ndim == 2,
            f"{str(job.input)!r} holds a batch of {mel.shape[0]} mels; split it into one mel per file",
        )
        return mel

    def process(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return _invert_batch(items, self.config, **self.invert_kwargs())

    def write(self, job: Job, output: np.ndarray) -> list[str]:
        from ..io import save_audio

        notices = save_audio(
            job.output, output, self.config.sample_rate, self.subtype, overwrite=True, protect=[job.input]
        )
        # the output is complete: the marker of an interrupted best estimate left there goes
        Path(f"{job.output}.partial").unlink(missing_ok=True)
        return notices

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
    replace_sidecars : bool
        Replace a ``.npy`` output's ``PATH.json`` sidecar that exists without its mel file
        (``--overwrite``); by default such a file is refused. A sidecar beside an output being
        remade is always replaced with it.
    """

    name = "mel"

    def __init__(
        self,
        config: MelConfig | str,
        *,
        layout: str = "mels-first",
        device: str | None = None,
        replace_sidecars: bool = False,
    ):
        check(layout in ("mels-first", "time-first"), f"{layout=} must be 'mels-first' or 'time-first'")
        self.config = resolve_config(config)
        self.layout, self.device = layout, device
        self.replace_sidecars = replace_sidecars
        self._notices: dict[Path, list[str]] = {}  # load's notices, until the job's write

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_notices": {}}

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "config": self.config.to_dict(), "layout": self.layout}

    def summary(self) -> str:
        return f"mel, {self.config.name or 'custom config'}, {self.layout}"

    def load(self, job: Job) -> np.ndarray:
        from ..io import load_audio

        y, sr, notices = load_audio(job.input, self.config.sample_rate)
        c = self.config
        check(
            y.shape[0] >= c.min_samples,
            f"{str(job.input)!r} has {y.shape[0]} samples at {sr} Hz, fewer than the {c.min_samples} one "
            f"frame needs (n_fft={c.n_fft}, padding={c.padding})",
        )
        if notices:
            self._notices[job.input] = notices
        return y

    def process(self, items: list[np.ndarray]) -> list[np.ndarray]:
        return _mel_batch(items, self.config, device=self.device)

    def write(self, job: Job, output: np.ndarray) -> list[str]:
        from ..io import save_mel

        # the engine judged the output (known finished, refused or to make): a sidecar alone is not
        overwrite = self.replace_sidecars or os.path.lexists(job.output)
        save_mel(
            job.output, output, self.config, overwrite=overwrite, layout=self.layout, protect=[job.input]
        )
        return self._notices.pop(job.input, [])

    def item_bytes(self, item: np.ndarray) -> int:
        return int(item.nbytes) * 16

    def item_seconds(self, item: np.ndarray) -> float:
        return item.shape[-1] / self.config.sample_rate

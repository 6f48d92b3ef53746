"""Checkpoints: safetensors weights plus a JSON record, never a pickle.

A checkpoint is two files side by side:

- ``NAME.safetensors``: the model's tensors (``model.*``) and, in a resumable checkpoint, the
  optimiser's (``optim.*``); its metadata holds the record below under the key ``melinvert``.
- ``NAME.json``: the same record for people to read: ``format``, ``kind`` (``refiner``,
  ``degli``, ``cnn_vocoder``), ``config`` (:meth:`MelConfig.to_dict`), ``hparams`` (model
  sizes), ``train`` (step, minutes, losses, the training arguments, a digest of the data) and
  ``optimizer`` (parameter groups; the tensors are in the safetensors file).

Loading reads tensors with :mod:`safetensors` only; a ``torch.save`` (zip or pickle) file is
refused by its first bytes before anything is parsed. A checkpoint whose config differs from
the mel's is refused with the differing fields named.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import MelConfig
from ..errors import MelinvertError, check
from .models import build_model

FORMAT = "melinvert-model/1"
META_KEY = "melinvert"
SUFFIX = ".safetensors"

#: First bytes of files that ``torch.save``/``pickle`` write: a zip archive or a pickle stream.
_PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


@dataclasses.dataclass
class Checkpoint:
    """A loaded model with its record.

    Attributes
    ----------
    kind : str
        ``refiner``, ``degli`` or ``cnn_vocoder``.
    config : MelConfig
        The mel configuration it was trained for.
    hparams : dict
        Model hyperparameters (complete, defaults filled in).
    train : dict
        Training state and summary (step, minutes, losses, arguments, data digest).
    model : torch.nn.Module
        The model on the CPU, in eval mode, without gradients.
    optimizer : dict or None
        The optimiser's ``state_dict`` (resumable checkpoints only).
    path : Path or None
        The ``.safetensors`` file it came from.
    """

    kind: str
    config: MelConfig
    hparams: dict[str, Any]
    train: dict[str, Any]
    model: nn.Module
    optimizer: dict[str, Any] | None = None
    path: Path | None = None
    _on: dict[str, nn.Module] = dataclasses.field(default_factory=dict, repr=False)

    def module(self, device: torch.device | str) -> nn.Module:
        """The model on ``device`` (copies are made once per device and kept; the model itself
        where it already is, which is the GPU for a model in training there)."""
        dev = torch.device(device)
        first = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        here = first.device if first is not None else torch.device("cpu")
        if dev.type == here.type and (dev.index is None or dev.index == (here.index or 0)):
            return self.model
        key = str(dev)
        if key not in self._on:
            self._on[key] = copy.deepcopy(self.model).to(dev)
        return self._on[key]

    def describe(self) -> str:
        """One line: kind, where from, the config's name or rate, the step it was saved at."""
        where = str(self.path) if self.path is not None else "in memory"
        name = self.config.name or f"{self.config.sample_rate} Hz/{self.config.n_mels} mels"
        return f"{self.kind} ({where}; {name}; step {self.train.get('step', '?')})"


# ---------------------------------------------------------------------- saving


def _optimizer_tensors(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = []
    for g in state["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    kind: str,
    config: MelConfig,
    hparams: Mapping[str, Any],
    train: Mapping[str, Any],
    optimizer: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` record atomically.

    Parameters
    ----------
    path : path ending in ``.safetensors``
    model : torch.nn.Module
        Its ``state_dict`` (persistent buffers included) is stored under ``model.*``.
    kind, config, hparams, train :
        The record (see the module docstring); must be JSON-serialisable.
    optimizer : dict, optional
        An optimiser ``state_dict`` to store for resuming.
    dtype : torch.dtype, optional
        Store floating-point model tensors in this dtype (e.g. ``torch.float16`` to halve a
        shipped file); loading converts back to float32.

    Returns
    -------
    Path
        The ``.safetensors`` path.
    """
    from safetensors.torch import save

    from ..io import atomic_write, write_text

    p = Path(path)
    check(p.suffix == SUFFIX, f"checkpoint path {str(p)!r} must end in {SUFFIX}")
    tensors = {}
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[f"model.{k}"] = t
    record: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "config": config.to_dict(),
        "hparams": dict(hparams),
        "train": dict(train),
    }
    if optimizer is not None:
        opt_tensors, opt_record = _optimizer_tensors(optimizer)
        tensors.update(opt_tensors)
        record["optimizer"] = opt_record
    text = json.dumps(record, indent=2, sort_keys=True, allow_nan=False)
    data = save(tensors, metadata={META_KEY: text})
    write_text(p.with_suffix(".json"), text + "\n", overwrite=True)
    atomic_write(p, lambda f: f.write(data), overwrite=True)
    return p


# ---------------------------------------------------------------------- loading


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A checkpoint's ``.safetensors`` file from a run folder (``best``, else ``last``), a
    ``.safetensors`` file or its ``.json`` record."""
    p = Path(path)
    if p.is_dir():
        for name in ("best", "last"):
            q = p / f"{name}{SUFFIX}"
            if q.is_file():
                return q
        raise MelinvertError(f"model folder {str(p)!r} holds no best{SUFFIX} or last{SUFFIX}")
    if p.suffix == ".json":
        p = p.with_suffix(SUFFIX)
    check(p.is_file(), f"model file {str(p)!r} does not exist")
    return p


def _refuse_pickle(p: Path) -> None:
    """Refuse anything but a safetensors file: its first 8 bytes are the little-endian length
    of the JSON header that follows (so its first byte is 0x80, like a pickle's, for one
    header length in 256), and byte 8 opens that header."""
    with open(p, "rb") as f:
        head = f.read(9)
    n_header = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    safetensors_like = head[8:9] == b"{" and 2 <= n_header <= p.stat().st_size - 8
    check(
        safetensors_like or not head.startswith(_PICKLE_MAGIC),
        f"{str(p)!r} is a pickled (torch.save) file; melinvert never unpickles files: "
        "save the weights with safetensors",
    )
    check(
        safetensors_like and p.suffix == SUFFIX,
        f"{str(p)!r} is not a melinvert checkpoint (a {SUFFIX} file with its .json record)",
    )


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON record of a checkpoint, without reading its tensors."""
    from safetensors import SafetensorError, safe_open

    p = resolve_path(path)
    _refuse_pickle(p)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise MelinvertError(f"{str(p)!r} is not a readable safetensors file: {e}") from None
    text = meta.get(META_KEY)
    if text is None:  # weights written by other tools: fall back to the JSON beside them
        side = p.with_suffix(".json")
        check(side.is_file(), f"{str(p)!r} carries no melinvert record and {str(side)!r} is missing")
        text = side.read_text(encoding="utf-8")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise MelinvertError(f"{str(p)!r}: its record is not valid JSON ({e.msg})") from None
    check(
        isinstance(record, dict) and record.get("format") == FORMAT,
        f"{str(p)!r}: record format {record.get('format') if isinstance(record, dict) else None!r} "
        f"is not {FORMAT!r}",
    )
    return record


def config_mismatch(trained: MelConfig, asked: MelConfig) -> str | None:
    """``None`` when equal, else ``"n_fft (1024 in the model, 2048 asked), ..."``."""
    diffs = trained.differences(asked)
    if not diffs:
        return None

    def get(cfg: MelConfig, name: str) -> Any:
        obj: Any = cfg
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj

    parts = [f"{d} ({get(trained, d)!r} in the model, {get(asked, d)!r} asked)" for d in diffs]
    return ", ".join(parts)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    config: MelConfig | None = None,
    kind: str | None = None,
    with_optimizer: bool = False,
) -> Checkpoint:
    """Load a checkpoint (safetensors only) and check it against ``config`` and ``kind``.

    Parameters
    ----------
    path : path
        A run folder, a ``.safetensors`` file or its ``.json`` record.
    config : MelConfig, optional
        The mel's config; a checkpoint trained for another is refused, the fields named.
    kind : str, optional
        The model kind expected.
    with_optimizer : bool
        Also return the optimiser state (for resuming training).

    Raises
    ------
    MelinvertError
        Pickled or unreadable files, another kind, another config, tensors that do not fit.
    """
    from safetensors.torch import load_file

    p = resolve_path(path)
    record = read_record(p)
    got_kind = record.get("kind")
    check(kind is None or got_kind == kind, f"{str(p)!r} holds a {got_kind!r} model, not a {kind!r}")
    trained = MelConfig.from_dict(record["config"])
    if config is not None:
        problem = config_mismatch(trained, config)
        check(problem is None, f"{str(p)!r} was trained for another mel config: {problem}")
    try:
        tensors = load_file(str(p))
    except Exception as e:  # safetensors raises its own error types
        raise MelinvertError(f"{str(p)!r} is not a readable safetensors file: {e}") from None
    model = build_model(got_kind, trained, record.get("hparams", {}))
    state = {
        k[len("model.") :]: v.float() if v.is_floating_point() else v
        for k, v in tensors.items()
        if k.startswith("model.")
    }
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:200]
        raise MelinvertError(
            f"{str(p)!r}: the tensors do not fit a {got_kind} with its hparams ({first})"
        ) from None
    model.eval().requires_grad_(False)
    optimizer = None
    if with_optimizer:
        opt = record.get("optimizer")
        check(opt is not None, f"{str(p)!r} holds no optimiser state (not a resumable checkpoint)")
        st: dict[int, dict[str, Any]] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                st.setdefault(int(idx), {})[name] = v
        for idx, extra in opt.get("scalars", {}).items():
            st.setdefault(int(idx), {}).update(extra)
        optimizer = {"state": dict(sorted(st.items())), "param_groups": opt["param_groups"]}
    return Checkpoint(
        kind=got_kind,
        config=trained,
        hparams=dict(record.get("hparams", {})),
        train=dict(record.get("train", {})),
        model=model,
        optimizer=optimizer,
        path=p,
    )


# ---------------------------------------------------------------------- shipped weights and caching


def _weights_dir() -> Path:
    return Path(str(resources.files("melinvert") / "weights"))


def shipped_records() -> list[tuple[Path, dict[str, Any]]]:
    """The checkpoints that come with the package: ``(path, record)`` for each."""
    folder = _weights_dir()
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            out.append((p, read_record(p)))
        except MelinvertError:  # pragma: no cover - a damaged install
            continue
    return out


def shipped_path(kind: str, config: MelConfig) -> Path | None:
    """The shipped checkpoint of ``kind`` trained for exactly ``config``, or ``None``."""
    for p, rec in shipped_records():
        if rec.get("kind") == kind and MelConfig.from_dict(rec["config"]) == config:
            return p
    return None


@functools.lru_cache(maxsize=16)
def _cached(path: str, mtime_ns: int, size: int) -> Checkpoint:
    return load_checkpoint(path)


def get_checkpoint(kind: str, config: MelConfig, model: Any = None) -> Checkpoint:
    """The checkpoint a learned stage of ``kind`` uses for mels of ``config``.

    Parameters
    ----------
    kind : str
    config : MelConfig
    model : Checkpoint, path, or iterable of them, optional
        The user's choice (``invert(..., model=...)``); the one of this ``kind`` is used.
        Without one of this kind, the shipped weights for ``config`` are used.

    Raises
    ------
    MelinvertError
        No checkpoint of this kind fits: none given and none shipped for this config, or the
        one given was trained for another config.
    """
    for item in iter_models(model):
        ck = item if isinstance(item, Checkpoint) else _load_cached(item)
        if ck.kind != kind:
            continue
        problem = config_mismatch(ck.config, config)
        where = str(ck.path) if ck.path is not None else "the model given"
        check(problem is None, f"{where!r} was trained for another mel config: {problem}")
        return ck
    p = shipped_path(kind, config)
    if p is None:
        shipped = sorted(
            {r["config"].get("name") or "custom" for _, r in shipped_records() if r["kind"] == kind}
        )
        raise MelinvertError(
            f"no {kind} weights for this mel config ({config.name or config.describe()}); shipped: "
            f"{', '.join(shipped) or 'none'}. Train one with 'melinvert train {kind} AUDIO... -o RUN' "
            "and pass model=RUN (--model RUN)"
        )
    return _load_cached(p)


def _load_cached(path: Any) -> Checkpoint:
    p = resolve_path(path)
    st = p.stat()
    return _cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


def iter_models(model: Any) -> Iterable[Any]:
    """``model`` as a sequence: None -> (), one path or Checkpoint -> (it,), else the items."""
    if model is None:
        return ()
    if isinstance(model, (str, os.PathLike, Checkpoint)):
        return (model,)
    if isinstance(model, Mapping):
        return tuple(model.values())
    return tuple(model)

"""The learned models as pipeline stages, with the calling shapes of the training-free ones.

- :func:`refiner_magnitude`: stage 1, like :data:`melinvert.magnitude.MAGNITUDE_METHODS`.
- :func:`degli`: stage 2, like :data:`melinvert.phase.PHASE_METHODS`.
- :func:`cnn_vocoder`: a whole pipeline, linear mel -> waveform.

Each takes ``model=``: what :func:`bind` resolved for the run (the user's checkpoint, else the
weights shipped for the config). Inference runs without autograd, in float32 on the mel's
device, and returns the caller's dtype.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..config import MelConfig
from ..dsp import FrameOps
from ..errors import check
from ..phase import Callback, MelRefit, iteration_loss, project_magnitude
from .checkpoint import Checkpoint, _load_cached, get_checkpoint, iter_models


def _pick(kind: str, config: MelConfig, model: Any) -> torch.nn.Module | Checkpoint:
    if isinstance(model, dict) and kind in model:
        return model[kind]
    return get_checkpoint(kind, config, model)


def refiner_magnitude(
    mel: torch.Tensor, config: MelConfig, *, n_iter: int | None = None, model: Any = None
) -> torch.Tensor:
    """Stage 1 with a trained refiner: linear mel -> STFT magnitude.

    Parameters
    ----------
    mel : torch.Tensor [shape=(..., n_mels, frames), non-negative]
        LINEAR mel in the config's power.
    config : MelConfig
    n_iter : None
        Unused (the calling shape of stage 1).
    model : optional
        Checkpoint(s) or path(s); default: the weights shipped for ``config``.

    Returns
    -------
    torch.Tensor [shape=(..., n_freqs, frames), non-negative]
        ``|X|``, in the dtype of ``mel``.
    """
    ck = _pick("refiner", config, model)
    net = ck.module(mel.device)
    lead = mel.shape[:-2]
    x = mel.reshape(-1, *mel.shape[-2:]).float()
    with torch.no_grad():
        out = torch.exp(net(x))
    return out.to(mel.dtype).reshape(*lead, out.shape[-2], out.shape[-1])


refiner_magnitude.uses_model = True  # type: ignore[attr-defined]


def degli(
    mag: torch.Tensor,
    ops: FrameOps,
    angles: torch.Tensor,
    *,
    n_iter: int,
    refit: MelRefit | None = None,
    callback: Callback | None = None,
    model: Any = None,
) -> torch.Tensor:
    """Deep Griffin-Lim iteration (Masuyama, Yatabe, Koizumi, Oikawa & Harada 2021).

    ``Y = P_A(X)``, ``Z = P_C(Y)``, ``X <- Z - net(X, Y, Z, A)`` with one network shared by
    all iterations (:class:`~melinvert.neural.models.DeGLINet`). With ``refit`` the amplitude
    ``A`` follows the mel after each consistency projection (as ``mfgla`` does).

    Parameters
    ----------
    mag : torch.Tensor [shape=(B, frames, n_freqs)]
        Target magnitude.
    ops : FrameOps
    angles : torch.Tensor [shape=(B, frames, n_freqs)]
        Initial phase.
    n_iter : int
    refit, callback :
        As for :func:`melinvert.phase.fgla`.
    model : optional
        Checkpoint(s) or path(s); default: the weights shipped for the config.

    Returns
    -------
    torch.Tensor [shape=(B, samples)]
    """
    ck = _pick("degli", ops.config, model)
    net = ck.module(mag.device)
    cdt = torch.complex64
    x = torch.polar(mag, angles)
    with torch.no_grad():
        for i in range(n_iter):
            y = project_magnitude(x, mag)
            w = ops.synthesis(y)
            z = ops.analysis(w)
            if refit is not None:
                mag = refit(z)
            if callback is not None and callback(i, w, iteration_loss(refit, z, mag)):
                break
            r = net(x.to(cdt), y.to(cdt), z.to(cdt), mag.float())
            x = z - r.to(z.dtype)
    return ops.synthesis(project_magnitude(x, mag))


degli.uses_model = True  # type: ignore[attr-defined]


def cnn_vocoder(
    lin: torch.Tensor, config: MelConfig, *, length: int, model: Any = None, **_: Any
) -> torch.Tensor:
    """Linear mels ``(B, n_mels, frames)`` -> audio ``(B, length)`` with the CNN vocoder."""
    ck = _pick("cnn_vocoder", config, model)
    net = ck.module(lin.device)
    with torch.no_grad():
        y = net(lin.float()).to(lin.dtype)
    if y.shape[-1] >= length:
        return y[..., :length]
    return torch.nn.functional.pad(y, (0, length - y.shape[-1]))


cnn_vocoder.uses_model = True  # type: ignore[attr-defined]

#: Whole-pipeline methods: name -> (function(lin, config, *, length, model), one line).
VOCODERS = {
    "cnn_vocoder": (
        cnn_vocoder,
        "CNN vocoder after M-CNN (Arik et al. 2018), mel -> waveform; needs trained weights (model=)",
    ),
}


def kinds_used(plan: Any) -> list[str]:
    """The learned model kinds a :class:`~melinvert.pipeline.Plan` runs."""
    out = []
    if plan.magnitude == "refiner":
        out.append("refiner")
    if plan.phase == "degli":
        out.append("degli")
    if getattr(plan, "vocoder", None) in VOCODERS:
        out.append(plan.vocoder)
    return out


def bind(plan: Any, model: Any, config: MelConfig) -> Any:
    """Resolve the checkpoints a plan needs, before any work: ``plan`` with ``model`` set.

    Every checkpoint given must be of a kind the method uses, and trained for ``config``;
    learned stages without one take the shipped weights for ``config``.

    Raises
    ------
    MelinvertError
        A model of a kind the method does not use, another config, no weights at all.
    """
    kinds = kinds_used(plan)
    given = [m if isinstance(m, Checkpoint) else _load_cached(m) for m in iter_models(model)]
    for ck in given:
        check(
            ck.kind in kinds,
            f"model {ck.describe()} is a {ck.kind}, but method {plan.name!r} has no {ck.kind} stage"
            + (f" (try method='{ck.kind}+pghi+fgla')" if ck.kind == "refiner" else ""),
        )
    if not kinds:
        return plan
    resolved = {k: get_checkpoint(k, config, given) for k in kinds}
    return dataclasses.replace(plan, model=resolved)

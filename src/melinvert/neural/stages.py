"""The learned models as stages of the registry (:mod:`melinvert.registry`).

- ``refiner`` (magnitude): :func:`refiner_magnitude`, with the calling shape of
  :mod:`melinvert.magnitude`'s methods.
- ``degli`` (phase): :func:`degli`, with the calling shape of :func:`melinvert.phase.fgla`.
- ``cnn_vocoder`` (vocoder): :func:`cnn_vocoder`, linear mel -> waveform.

Each plain function takes ``model=`` (a checkpoint, a path, or None for the weights shipped for
the config); as stages they take what :func:`resolve` found for the run from the context.
Inference runs without autograd, in float32 on the mel's device, and returns the caller's dtype.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import torch

from .. import registry
from ..config import MelConfig
from ..dsp import FrameOps
from ..errors import check
from ..phase import Callback, MelRefit, _consistent, _iterative_stage, project_magnitude
from ..stage import Context, State
from .checkpoint import Checkpoint, _load_cached, get_checkpoint, iter_models
from .models import CNN_VOCODER_PRIOR, degli_update


def _pick(kind: str, config: MelConfig, model: Any) -> torch.nn.Module | Checkpoint:
    if isinstance(model, dict) and kind in model:
        return model[kind]
    return get_checkpoint(kind, config, model)


def refiner_magnitude(
    mel: torch.Tensor,
    config: MelConfig,
    *,
    n_iter: int | None = None,
    callback: Any = None,
    model: Any = None,
) -> torch.Tensor:
    """Stage 1 with a trained refiner: linear mel -> STFT magnitude.

    Parameters
    ----------
    mel : torch.Tensor [shape=(..., n_mels, frames), non-negative]
        LINEAR mel in the config's power.
    config : MelConfig
    n_iter, callback : None
        Unused (the calling shape of stage 1; the network runs once).
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


def degli(
    mag: torch.Tensor,
    ops: FrameOps,
    angles: torch.Tensor,
    *,
    n_iter: int,
    alpha: float = 0.99,
    refit: MelRefit | None = None,
    callback: Callback | None = None,
    model: Any = None,
) -> torch.Tensor:
    """Deep Griffin-Lim (Masuyama, Yatabe, Koizumi, Oikawa & Harada 2021) on fast Griffin-Lim.

    ``C_n = P_C(P_A(X_{n-1}))``, ``X_n = T_n - net(X_{n-1}, C_n, T_n, A)`` with fast Griffin-Lim's
    momentum step ``T_n = C_n + alpha (C_n - C_{n-1})`` and one network shared by all iterations
    (:class:`~melinvert.neural.models.DeGLINet`, :func:`~melinvert.neural.models.degli_update`).
    With ``refit`` the amplitude ``A`` follows the mel after each consistency projection (as
    ``mfgla`` does); an untrained network gives exactly :func:`melinvert.phase.fgla`.

    Parameters
    ----------
    mag : torch.Tensor [shape=(B, frames, n_freqs)]
        Target magnitude.
    ops : FrameOps
    angles : torch.Tensor [shape=(B, frames, n_freqs)]
        Initial phase.
    n_iter : int
    alpha : float
        Momentum of the fast Griffin-Lim step.
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
    x = torch.polar(mag, angles)
    c_prev = x
    with torch.no_grad():
        for i in range(n_iter):
            c, mag, stop = _consistent(ops, project_magnitude(x, mag), mag, refit, callback, i)
            if stop:
                break
            x, c_prev = degli_update(net, x, c, c_prev, mag, alpha), c
    return ops.synthesis(project_magnitude(x, mag))


def cnn_vocoder(
    lin: torch.Tensor, config: MelConfig, *, prior: torch.Tensor, model: Any = None
) -> torch.Tensor:
    """The CNN vocoder's waveform: linear mels ``(B, n_mels, frames)`` and the waveform of its
    training-free ``prior`` method ``(B, samples)`` -> audio ``(B, samples)``, in ``prior``'s dtype."""
    ck = _pick("cnn_vocoder", config, model)
    net = ck.module(lin.device)
    with torch.no_grad():
        return net(lin.float(), prior.float()).to(prior.dtype)


def resolve(kinds: list[str], model: Any, config: MelConfig, method: str) -> dict[str, Checkpoint]:
    """Resolve the checkpoints a method needs, before any work: ``{kind: Checkpoint}``.

    Every checkpoint given must be of a kind the method uses, and trained for ``config``;
    learned stages without one take the shipped weights for ``config``.

    Raises
    ------
    MelinvertError
        A model of a kind the method does not use, another config, no weights at all.
    """
    given = [m if isinstance(m, Checkpoint) else _load_cached(m) for m in iter_models(model)]
    for ck in given:
        check(
            ck.kind in kinds,
            f"model {ck.describe()} is a {ck.kind}, but method {method!r} has no {ck.kind} stage"
            + (f" (try method='{ck.kind}+pghi+fgla')" if ck.kind == "refiner" else ""),
        )
    return {k: get_checkpoint(k, config, given) for k in kinds}


# ---------------------------------------------------------------------- stages


def _refiner_stage(state: State, ctx: Context) -> State:
    """Stage 1 with the run's refiner."""
    mag = refiner_magnitude(state.mel, ctx.config, model=ctx.model("refiner"))
    return state.replace(mag=ctx.stage_magnitude(mag))


def _cnn_vocoder_stage(state: State, ctx: Context) -> State:
    """The run's CNN vocoder on the block's mel and the waveform so far. In a block of a long
    input the correction fades in over the held samples (zero where they are fixed), so the
    samples the waveform so far holds stay held."""
    prior = ctx.waveform(state)
    audio = cnn_vocoder(ctx.target, ctx.config, prior=prior, model=ctx.model("cnn_vocoder"))
    if ctx.boundary is not None and ctx.boundary.held is not None:
        zero = dataclasses.replace(ctx.boundary, held=torch.zeros_like(ctx.boundary.held))
        audio = prior + zero.hold(audio - prior)
    return state.replace(audio=audio)


def _degli_stage(state: State, ctx: Context, *, iters: int, refit: bool = True, alpha: float = 0.99) -> State:
    """Deep Griffin-Lim with the run's network, as the other stage-2 methods run."""
    algorithm = functools.partial(degli, model=ctx.model("degli"))
    algorithm.__name__ = "degli"  # type: ignore[attr-defined]
    return _iterative_stage(algorithm)(state, ctx, iters=iters, refit=refit, alpha=alpha)


registry.register(
    "refiner",
    "magnitude",
    _refiner_stage,
    needs={"model:refiner"},
    description="learned: pseudo-inverse corrected by a small CNN (shipped for hifigan-22k-80; model= for others)",
)
registry.register(
    "degli",
    "phase",
    _degli_stage,
    params={"iters": 32, "refit": True, "alpha": 0.99},
    needs={"model:degli"},
    description="learned: Deep Griffin-Lim (Masuyama et al. 2021) on mel-refitted fast Griffin-Lim "
    "(shipped for hifigan-22k-80; model= for others)",
)
registry.register(
    "cnn_vocoder",
    "refine",
    _cnn_vocoder_stage,
    needs={"model:cnn_vocoder"},
    description="learned: CNN vocoder after M-CNN (Arik et al. 2018) that corrects the waveform of the "
    "stages before it (shipped for hifigan-22k-80; model= for others)",
)
registry.register_pipeline(
    "learned",
    "sharpen+refiner+pghi+mfgla(iters=300)+wave_lbfgs(iters=20)",
    "learned refiner magnitude, PGHI phase, 300 mel-refitted fast Griffin-Lim iterations, then 20 "
    "waveform L-BFGS iterations (the best learned composition measured: docs/models/)",
)
registry.register_pipeline(
    "cnn_vocoder",
    f"{CNN_VOCODER_PRIOR}+cnn_vocoder",
    "default, then the CNN vocoder (after M-CNN, Arik et al. 2018) trained to correct its waveform",
)

"""What every stage receives and returns: :class:`State`, :class:`Context` and progress.

A stage is ``fn(state: State, ctx: Context, **params) -> State`` (registered in
:mod:`melinvert.registry`). The state carries what the plan has estimated so far; the context
carries everything a stage may need and nothing it may change:

- ``config``, ``op`` (the :class:`~melinvert.operator.MelOperator`), ``frames`` (the
  :class:`~melinvert.dsp.FrameOps` of this block, holding its :class:`~melinvert.dsp.Boundary`),
- ``target``: the LINEAR mel given to invert ``(B, n_mels, frames)`` (``State.mel`` starts
  as it; stages fit ``State.mel``),
- ``generator`` for random choices, ``models`` (trained weights by kind),
- ``progress``: the one progress mechanism. An iterative stage calls
  ``ctx.progress.step(i, audio, loss)`` after each iteration (``audio`` ``(B, samples)`` or
  ``None`` before there is a waveform, ``loss`` ``(B,)``) and stops when it returns True.

Shapes inside stages: magnitudes and phases frames-first ``(B, stft_frames, n_freqs)``, audio
``(B, samples)``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .config import MelConfig
from .dsp import Boundary, FrameOps
from .operator import MelOperator


@dataclasses.dataclass(frozen=True)
class State:
    """What a plan has estimated so far (each ``None`` until a stage sets it).

    Attributes
    ----------
    mel : torch.Tensor [shape=(B, n_mels, mel_frames)], optional
        The LINEAR mel the stages fit: the given one (:attr:`Context.target`), or what a
        ``mel`` stage (e.g. ``sharpen``) made of it.
    mag : torch.Tensor [shape=(B, stft_frames, n_freqs)], optional
        STFT magnitude ``|X|``.
    angles : torch.Tensor [shape=(B, stft_frames, n_freqs)], optional
        Phase in radians (frame-start convention of :func:`melinvert.dsp.stft`).
    audio : torch.Tensor [shape=(B, samples)], optional
        Waveform.
    """

    mel: torch.Tensor | None = None
    mag: torch.Tensor | None = None
    angles: torch.Tensor | None = None
    audio: torch.Tensor | None = None

    def replace(self, **changes: Any) -> State:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress event: after ``iteration`` (0-based) of ``total`` in step ``stage``.

    ``estimate`` is the current waveform ``(B, samples)`` of the block in hand, or ``None`` in
    stages that have none yet (stage 1); ``loss`` ``(B,)`` is the stage's own loss per item.
    ``done``/``planned`` count iterations over the whole plan of this block; ``fraction`` is
    the share of the whole inversion done (all blocks), in [0, 1].
    """

    stage: str
    iteration: int
    total: int
    estimate: torch.Tensor | None
    loss: torch.Tensor
    done: int
    planned: int
    fraction: float


Callback = Callable[[Progress], Any]


def as_progress_callback(callback: Callable[..., Any] | None) -> Callback | None:
    """Accept ``callback(progress)`` or the older ``callback(iteration, estimate, loss)``.

    The three-argument form sees the iterations that have a waveform estimate.
    """
    if callback is None:
        return None
    try:
        n = len(
            [
                p
                for p in inspect.signature(callback).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            ]
        )
    except (TypeError, ValueError):
        n = 1
    if n != 3:
        return callback

    def legacy(p: Progress) -> Any:
        return callback(p.iteration, p.estimate, p.loss) if p.estimate is not None else False

    return legacy


class Reporter:
    """The progress mechanism of one block: counts, the user's callback, the best estimate.

    The best estimate is kept per item, by the loss of the stage in hand (losses of different
    stages are not comparable); when a stage has not produced a waveform yet, the last
    stage's output stands in (:attr:`fallback`).
    """

    def __init__(self, callback: Callback | None, planned: int):
        self.callback = callback
        self.planned = planned
        self.done = 0
        self.stage = ""
        self.total = 0
        self.best: torch.Tensor | None = None
        self.best_loss: torch.Tensor | None = None
        self.fallback: torch.Tensor | None = None
        self.state: State = State()

    def begin(self, stage: str, total: int) -> None:
        """A new step starts: its best estimate starts empty."""
        self.stage, self.total = stage, total
        self.best = None
        self.best_loss = None

    def finish(self, state: State) -> None:
        """A step ended with ``state``."""
        self.state = state
        if state.audio is not None:
            self.fallback = state.audio
        self.best = None
        self.best_loss = None

    def observe(self, audio: torch.Tensor, loss: torch.Tensor) -> None:
        """Offer an estimate to the best-so-far without counting an iteration."""
        audio, loss = audio.detach(), loss.detach().to(torch.float64)
        if self.best is None or self.best_loss is None:
            self.best, self.best_loss = audio.clone(), loss.clone()
            return
        better = loss < self.best_loss
        if bool(better.any()):
            self.best = torch.where(better[:, None], audio, self.best)
            self.best_loss = torch.where(better, loss, self.best_loss)

    def step(self, iteration: int, audio: torch.Tensor | None, loss: torch.Tensor) -> bool:
        """One iteration done: keep the best, tell the callback; True means stop this step."""
        self.done += 1
        if audio is not None:
            self.observe(audio, loss)
        if self.callback is None:
            return False
        event = Progress(
            self.stage, iteration, self.total, audio, loss.detach(), self.done, self.planned, self.fraction()
        )
        return bool(self.callback(event))

    def fraction(self) -> float:
        """Share of the work done, in [0, 1]."""
        return self.done / self.planned if self.planned else 1.0

    def __call__(self, iteration: int, audio: torch.Tensor | None, loss: torch.Tensor) -> bool:
        return self.step(iteration, audio, loss)

    def best_so_far(self) -> torch.Tensor | None:
        """The best waveform of the step in hand, else the last step's output, else None."""
        return self.best if self.best is not None else self.fallback


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything a stage may use, fixed for one block (see the module docstring)."""

    config: MelConfig
    op: MelOperator
    frames: FrameOps
    target: torch.Tensor
    length: int
    generator: torch.Generator | None = None
    boundary: Boundary | None = None
    progress: Reporter = dataclasses.field(default_factory=lambda: Reporter(None, 0))
    models: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def frames_first(self, mel: torch.Tensor) -> torch.Tensor:
        """A linear mel ``(B, n_mels, mel_frames)`` over the STFT frames, frames first:
        ``(B, stft_frames, n_mels)`` (Whisper's dropped frame restored as the last one)."""
        return self.op.extend_frames(mel).transpose(-1, -2).contiguous()

    def stage_magnitude(self, mag: torch.Tensor) -> torch.Tensor:
        """A stage-1 result ``(B, n_freqs, mel_frames)`` -> the state's layout
        ``(B, stft_frames, n_freqs)`` (Whisper's dropped frame restored as the last one)."""
        return self.op.extend_frames(mag).transpose(-1, -2).contiguous()

    def waveform(self, state: State) -> torch.Tensor:
        """``state.audio``, or, before any stage made one, the synthesis of its magnitude and phase."""
        if state.audio is not None:
            return state.audio
        return self.frames.synthesis(torch.polar(state.mag, state.angles))

    def model(self, kind: str) -> Any:
        """The trained weights of ``kind`` resolved for this run."""
        return self.models[kind]

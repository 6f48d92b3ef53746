"""Running a method: plans, the per-block inversion, long inputs, lists of mels.

A method (``"default"``, ``"nnls(iters=20)+pghi+magla(iters=16)"``, ...) resolves into a
:class:`~melinvert.registry.Plan` (:func:`parse_method`); :func:`invert_block` runs a plan's
steps on one block through one :class:`~melinvert.stage.Context`; :func:`invert_blocks` is the
generator of blocks around it that keeps memory bounded for long inputs, each block held to the
previous one's samples (an immutable :class:`~melinvert.dsp.Boundary`); :func:`invert` is the
public entry and also takes a list of mels of different lengths.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from . import registry
from .config import MelConfig, resolve_config
from .dsp import Boundary, FrameOps, as_tensor, keep_freed_memory, threads_for_load, to_output
from .errors import MelinvertError, check, notify
from .magnitude import decode_mel, pinv
from .operator import mel_operator
from .phase import init_pghi
from .registry import Plan
from .stage import Context, Progress, Reporter, State, as_progress_callback

__all__ = [
    "BlockStream",
    "Plan",
    "Progress",
    "invert",
    "invert_block",
    "invert_blocks",
    "list_methods",
    "parse_method",
]


def list_methods() -> dict[str, str]:
    """Every name :func:`invert` accepts as ``method`` (or as a ``+`` stage), with one line each."""
    return registry.describe_all()


def parse_method(
    method: str, n_iter: int | None = None, params: Mapping[str, Mapping[str, Any]] | None = None
) -> Plan:
    """Resolve a pipeline name or a ``+`` composition into a :class:`Plan` (see
    :func:`melinvert.registry.parse`)."""
    return registry.parse(method, n_iter=n_iter, params=params)


def _validate_mel(
    mel: Any, config: MelConfig, device: Any, strict_range: bool = False
) -> tuple[torch.Tensor, bool, torch.dtype]:
    t, was_numpy, dtype = as_tensor(mel, name="mel", device=device)
    check(t.dim() >= 2, f"mel must be shaped (..., n_mels, frames), got shape {tuple(t.shape)}")
    check(
        t.shape[-2] == config.n_mels,
        f"mel has {t.shape[-2]} mel bins (shape {tuple(t.shape)}) but the config has n_mels={config.n_mels}"
        + ("; is it time-first? transpose it" if t.shape[-1] == config.n_mels else ""),
    )
    report = config.compression.check_range(t, strict=strict_range)
    t = report.raise_for_error()
    if report.notice:
        notify(f"mel: {report.notice}")
    return t, was_numpy, dtype


@contextlib.contextmanager
def _flush_denormals() -> Iterator[None]:
    """Treat denormal floats as zero while inverting (CPU): spectra of near-silent frames
    square into the denormal range, where x86 arithmetic is many times slower."""
    previous = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if previous:  # True means the CPU supports it; switch it back off
            torch.set_flush_denormal(False)


def make_context(
    lin: torch.Tensor,
    config: MelConfig,
    *,
    length: int,
    boundary: Boundary | None = None,
    generator: torch.Generator | None = None,
    progress: Reporter | None = None,
    models: Mapping[str, Any] | None = None,
) -> Context:
    """The :class:`Context` of one block: linear mel ``(B, n_mels, frames)`` -> ``length`` samples."""
    op = mel_operator(config, dtype=lin.dtype, device=lin.device)
    frames = FrameOps(config, length, dtype=lin.dtype, device=lin.device, boundary=boundary)
    check(
        frames.n_frames == op.stft_frames(lin.shape[-1]),
        f"internal frame mismatch: {frames.n_frames} STFT frames for {lin.shape[-1]} mel frames",
    )
    return Context(
        config,
        op,
        frames,
        lin,
        length,
        generator,
        frames.boundary,
        progress if progress is not None else Reporter(None, 0),
        dict(models or {}),
    )


def invert_block(plan: Plan, ctx: Context) -> torch.Tensor:
    """Run ``plan``'s steps on one block: the context's mel -> audio ``(B, ctx.length)``.

    Each step's iterations are reported through ``ctx.progress``; a plan that ends before a
    waveform (no stage 2) is synthesised from its magnitude and initial phase.
    """
    state = State(mel=ctx.target)
    for step in plan.steps:
        ctx.progress.begin(step.stage.name, int(step.params.get("iters", 0)))
        state = step.stage.fn(state, ctx, **step.params)
        ctx.progress.finish(state)
    return ctx.waveform(state)


def quick_estimate(ctx: Context) -> torch.Tensor:
    """A waveform from what the block's progress has, for an interrupt before any stage made one:
    the magnitude so far (else the clipped pseudo-inverse), its phase (else PGHI), one synthesis."""
    state = ctx.progress.state if ctx.progress.state.mel is not None else State(mel=ctx.target)
    mag = state.mag if state.mag is not None else ctx.stage_magnitude(pinv(state.mel, ctx.config))
    angles = state.angles
    if angles is None:
        angles = init_pghi(mag, ctx.config, anchor=ctx.frames.known_angles())
    return ctx.frames.synthesis(torch.polar(mag, angles))


class BlockStream:
    """Iterator over output audio chunks ``(B, samples)`` of one inversion (see :func:`invert_blocks`).

    Iterate it once (a second iteration raises). After a ``KeyboardInterrupt`` escaped from the
    iteration, :meth:`partial` returns the best estimate of the block that was in hand (the part
    not yet yielded), from whichever stage was running.
    """

    def __init__(
        self,
        mel: torch.Tensor,
        config: MelConfig,
        plan: Plan,
        *,
        total_length: int,
        block_frames: int,
        overlap_frames: int,
        generator: torch.Generator | None,
        callback: Callable[[Progress], Any] | None,
        models: Mapping[str, Any],
        lead: tuple[int, ...] = (),
        was_numpy: bool = False,
        out_dtype: torch.dtype = torch.float32,
    ):
        self.mel, self.config, self.plan = mel, config, plan
        self.total_length, self.block_frames, self.overlap_frames = total_length, block_frames, overlap_frames
        self.generator, self.callback, self.models = generator, callback, models
        self.lead, self.was_numpy, self.out_dtype = lead, was_numpy, out_dtype
        self._started = False
        self._ctx: Context | None = None
        self._emitted = 0
        self._block_start = 0

    @property
    def n_blocks(self) -> int:
        """How many blocks the input is cut into."""
        t, b, o = self.mel.shape[-1], self.block_frames, self.overlap_frames
        return 1 if t <= b else 1 + -(-(t - b) // (b - o))

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._started:
            raise MelinvertError(
                "this BlockStream was iterated already: call invert_blocks() again for a new run"
            )
        self._started = True
        return self._blocks()

    def _context(self, start: int, end: int, length: int, boundary: Boundary | None, index: int) -> Context:
        reporter = _BlockReporter(self.callback, self.plan.total_iterations(), index, self.n_blocks)
        lin = decode_mel(self.mel[..., start:end], self.config)
        return make_context(
            lin,
            self.config,
            length=length,
            boundary=boundary,
            generator=self.generator,
            progress=reporter,
            models=self.models,
        )

    def _blocks(self) -> Iterator[torch.Tensor]:
        cfg = self.config
        hop = cfg.hop_length
        t_total = self.mel.shape[-1]
        edge = -(-cfg.n_fft // hop) + 1  # frames near a block edge that see its padding
        start, index = 0, 0
        boundary: Boundary | None = None
        if self.mel.device.type == "cpu":
            keep_freed_memory()
        while True:
            end = min(start + self.block_frames, t_total)
            last = end == t_total
            self._block_start = start * hop
            length = self.total_length - start * hop if last else cfg.n_samples(end - start)
            with torch.no_grad(), _flush_denormals(), threads_for_load(self.mel.device):
                self._ctx = self._context(start, end, length, boundary, index)
                y = invert_block(self.plan, self._ctx)
            if last:
                chunk = y[:, self._emitted - start * hop :]
                self._emitted = self.total_length
                self._ctx = None
                yield chunk
                return
            trusted = (end - edge) * hop  # global sample index up to which this block is final
            # the next block holds [next_start * hop, trusted) to these samples and cross-fades
            # into its own estimate over their last `ramp`; emit up to the start of that fade
            ramp = min(FrameOps.KNOWN_RAMP_HOPS, self.overlap_frames - edge) * hop
            chunk = y[:, self._emitted - start * hop : trusted - ramp - start * hop]
            self._emitted = trusted - ramp
            yield chunk
            next_start = end - self.overlap_frames
            boundary = Boundary(y[:, next_start * hop - start * hop : trusted - start * hop], hop)
            start, index = next_start, index + 1

    def partial(self) -> torch.Tensor | None:
        """Best estimate so far of the unfinished block (samples not yet yielded), or None."""
        ctx = self._ctx
        if ctx is None:
            return None
        best = ctx.progress.best_so_far()
        if best is None:
            with torch.no_grad():
                best = quick_estimate(ctx)
        return best[:, self._emitted - self._block_start :]


class _BlockReporter(Reporter):
    """A :class:`Reporter` that also says where the block stands in the whole input."""

    def __init__(self, callback: Callable[[Progress], Any] | None, planned: int, index: int, blocks: int):
        super().__init__(callback, planned)
        self.index, self.blocks = index, blocks

    def fraction(self) -> float:
        """Share of the whole inversion done, in [0, 1]."""
        within = self.done / self.planned if self.planned else 1.0
        return (self.index + within) / self.blocks


def _prepare(
    mel: Any,
    config: MelConfig | str,
    method: str,
    n_iter: int | None,
    device: Any,
    model: Any,
    params: Mapping[str, Mapping[str, Any]] | None,
    strict_range: bool = False,
) -> tuple[torch.Tensor, bool, torch.dtype, MelConfig, Plan, dict[str, Any], tuple[int, ...]]:
    config = resolve_config(config)
    plan = parse_method(method, n_iter, params)
    models: dict[str, Any] = {}
    if plan.models or model is not None:
        from .neural.stages import resolve

        models = resolve(plan.models, model, config, plan.name)
    t, was_numpy, dtype = _validate_mel(mel, config, device, strict_range)
    lead = tuple(t.shape[:-2])
    return t.reshape(-1, *t.shape[-2:]), was_numpy, dtype, config, plan, models, lead


def invert_blocks(
    mel: Any,
    config: MelConfig | str,
    *,
    method: str = "default",
    n_iter: int | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    callback: Callable[..., Any] | None = None,
    length: int | None = None,
    block_frames: int = 2048,
    overlap_frames: int = 24,
    model: Any = None,
    strict_range: bool = False,
) -> BlockStream:
    """Invert block by block: a :class:`BlockStream` of torch chunks ``(B, samples)``.

    Blocks of ``block_frames`` frames overlap by ``overlap_frames``; each block's phase
    retrieval is held to the previous block's output in the overlap, so the joins are
    seamless and memory does not grow with the input's length. Arguments as :func:`invert`.
    """
    mel_t, was_numpy, dtype, config, plan, models, lead = _prepare(
        mel, config, method, n_iter, device, model, params, strict_range
    )
    edge = -(-config.n_fft // config.hop_length) + 1
    check(
        isinstance(block_frames, int) and isinstance(overlap_frames, int) and overlap_frames >= edge + 2,
        f"overlap_frames={overlap_frames} must be an integer >= {edge + 2} for this config",
    )
    check(block_frames >= 2 * overlap_frames, f"block_frames={block_frames} must be >= 2 * overlap_frames")
    frames = mel_t.shape[-1]
    total = config.n_samples(frames) if length is None else length
    check(isinstance(total, int) and total >= 1, f"length={length!r} must be an integer >= 1")
    if config.n_frames(total) != frames:
        lo = config.n_samples(frames)
        hi = lo + config.hop_length - 1
        raise MelinvertError(
            f"length={total} does not fit a mel of {frames} frames (its audio had about {lo}..{hi} samples)"
        )
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return BlockStream(
        mel_t,
        config,
        plan,
        total_length=total,
        block_frames=block_frames,
        overlap_frames=overlap_frames,
        generator=gen,
        callback=as_progress_callback(callback),
        models=models,
        lead=lead,
        was_numpy=was_numpy,
        out_dtype=dtype,
    )


def invert(
    mel: Any,
    config: MelConfig | str,
    *,
    method: str = "default",
    n_iter: int | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    callback: Callable[..., Any] | None = None,
    length: int | Sequence[int] | None = None,
    block_frames: int = 2048,
    model: Any = None,
    strict_range: bool = False,
) -> Any:
    """Turn a mel spectrogram (or a list of them) back into audio.

    Parameters
    ----------
    mel : np.ndarray or torch.Tensor [shape=(..., n_mels, frames)], or a list of them
        The mel in the config's compression (e.g. ln-compressed for HiFi-GAN), as the
        original project made it. A list may hold mels of different lengths: the result is a
        list, each item equal to its own inversion (items of one shape run as one batch).
    config : MelConfig or str
        Its configuration or a preset name.
    method : str
        A pipeline name (``"default"``, ``"fast"``; see :func:`list_methods`) or a ``+``
        composition of stages with optional parameters, e.g. ``"nnls+pghi+fgla(iters=50)"``.
    n_iter : int, optional
        Iterations of the stage-2 step (of the last iterative step when there is none).
    params : mapping, optional
        Stage parameters over the method's own, e.g. ``{"magla": {"alpha": 0.9}}``.
    seed : int, optional
        Seed for random initial phases (results are deterministic for a given seed).
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"auto"``; default: where the input is.
    callback : callable, optional
        ``callback(progress)`` after every iteration of every iterative step, with a
        :class:`~melinvert.stage.Progress` (stage, iteration, total, estimate ``(B, samples)``
        or None in stage 1, loss ``(B,)``); returning True ends that step early. The older
        ``callback(iteration, estimate, loss)`` is accepted and sees the steps with a waveform.
    length : int, optional
        Output length in samples (default ``config.n_samples(frames)``); a list for a list.
    block_frames : int
        Frames per block for long inputs (memory stays bounded; joins are seamless).
    model : str, PathLike, Checkpoint or a sequence of them, optional
        Trained weights for the learned stages (``refiner``, ``degli``, ``cnn_vocoder``): a
        run folder from ``melinvert train``, a ``.safetensors`` checkpoint or a loaded
        :class:`melinvert.neural.Checkpoint`. Learned stages without one use the weights
        shipped for the config; a checkpoint trained for another config is refused.
    strict_range : bool
        Values a little below the compression's floor (as predicted mels have) are clamped to
        it with a :class:`~melinvert.errors.MelinvertNotice` saying how many and how far;
        ``True`` makes them an error instead.

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., samples)], or a list of them
        Audio at ``config.sample_rate``, same kind and dtype as ``mel``.
    """
    kw = dict(
        method=method,
        n_iter=n_iter,
        params=params,
        seed=seed,
        device=device,
        callback=callback,
        block_frames=block_frames,
        model=model,
        strict_range=strict_range,
    )
    if isinstance(mel, (list, tuple)):
        return _invert_list(list(mel), config, length, kw)
    check(length is None or isinstance(length, int), f"length={length!r} must be an integer for one mel")
    stream = invert_blocks(mel, config, length=length, **kw)
    audio = torch.cat(list(stream), dim=-1)
    return to_output(audio.reshape(*stream.lead, audio.shape[-1]), stream.was_numpy, stream.out_dtype)


def _invert_list(mels: list[Any], config: MelConfig | str, length: Any, kw: dict[str, Any]) -> list[Any]:
    """Invert a ragged list: items of one shape, dtype and kind run as one batch."""
    check(len(mels) > 0, "mel is an empty list")
    lengths = list(length) if isinstance(length, (list, tuple)) else [length] * len(mels)
    check(len(lengths) == len(mels), f"length has {len(lengths)} entries for {len(mels)} mels")
    groups: dict[tuple, list[int]] = {}
    for i, (m, n) in enumerate(zip(mels, lengths)):
        shape = tuple(getattr(m, "shape", ()))
        check(len(shape) >= 2, f"mel[{i}] must be shaped (..., n_mels, frames), got shape {shape}")
        key = (shape, str(getattr(m, "dtype", "")), isinstance(m, torch.Tensor), n)
        groups.setdefault(key, []).append(i)
    out: list[Any] = [None] * len(mels)
    for (_, _, is_torch, n), idx in groups.items():
        stack = torch.stack([torch.as_tensor(mels[i]) for i in idx]) if is_torch else _np_stack(mels, idx)
        audio = invert(stack, config, length=n, **kw)
        for j, i in enumerate(idx):
            out[i] = audio[j]
    return out


def _np_stack(mels: list[Any], idx: list[int]) -> Any:
    import numpy as np

    try:
        return np.stack([np.asarray(mels[i]) for i in idx])
    except (TypeError, ValueError) as e:
        raise MelinvertError(f"mel list items must be numpy arrays or torch tensors: {e}") from None

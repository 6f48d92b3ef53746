"""Method names -> stages, their composition, long-audio blocks, progress and interruption.

A method is either a registered pipeline name (``default``, ``fast``, ...) or a composition of
stage names joined by ``+``, e.g. ``nnls+fgla`` or ``pinv+pghi+agla``:

- stage 1, mel -> magnitude: :data:`melinvert.magnitude.MAGNITUDE_METHODS`
- initial phase: :data:`melinvert.phase.INIT_METHODS` (default ``pghi``)
- stage 2, iterative phase retrieval: :data:`melinvert.phase.PHASE_METHODS`

:func:`invert` is the public entry; :func:`invert_blocks` yields the same audio block by
block, so that long inputs are processed (and written) in bounded memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import torch

from .config import MelConfig, resolve_config
from .dsp import FrameOps, as_tensor, to_output
from .errors import MelinvertError, check
from .magnitude import MAGNITUDE_METHODS, decode_mel
from .optimize import OPTIMIZERS
from .phase import INIT_METHODS, PHASE_METHODS, Callback, MelRefit


@dataclasses.dataclass(frozen=True)
class Plan:
    """A resolved method: which function runs each stage and how many iterations."""

    magnitude: str = "nnls"
    init: str = "pghi"
    phase: str | None = "mfgla"
    n_iter: int = 32
    nnls_iter: int | None = None
    optimizer: str | None = None
    opt_iter: int = 0
    vocoder: str | None = None  # a whole-pipeline learned method (melinvert.neural.VOCODERS)
    model: Any = None  # learned stages' checkpoints, {kind: Checkpoint} (melinvert.neural.bind)

    @property
    def name(self) -> str:
        if self.vocoder:
            return self.vocoder
        return "+".join(s for s in (self.magnitude, self.init, self.phase, self.optimizer) if s)


#: Named pipelines: name -> (plan, one line). Chosen from measurements (benchmarks/RESULTS.md).
PIPELINES: dict[str, tuple[Plan, str]] = {
    "default": (
        Plan("nnls", "pghi", "magla", 16, nnls_iter=20),
        "NNLS magnitude, PGHI phase, 16 accelerated Griffin-Lim iterations re-fitted to the mel",
    ),
    "fast": (
        Plan("nnls", "pghi", "magla", 6, nnls_iter=10),
        "as default with 6 iterations and a shorter NNLS: about twice as fast",
    ),
}
# Stage-3 optimisers as bare names: the default cascade, then the optimiser (iteration counts
# and the quality schedule from benchmarks/optimizers.md).
PIPELINES.update(
    {
        "stft_gd": (
            dataclasses.replace(PIPELINES["default"][0], optimizer="stft_gd", opt_iter=100),
            "default, then 100 Adam steps on a free STFT (consistency + log-mel fit)",
        ),
        "wave_lbfgs": (
            dataclasses.replace(PIPELINES["default"][0], optimizer="wave_lbfgs", opt_iter=40),
            "default, then 40 L-BFGS iterations on the waveform against the log mel",
        ),
        "joint": (
            dataclasses.replace(PIPELINES["default"][0], optimizer="joint", opt_iter=60),
            "default, then 60 ADMM iterations on magnitude and phase together (power-1 mels)",
        ),
        "quality": (
            Plan("nnls", "pghi", "mfgla", 200, optimizer="wave_lbfgs", opt_iter=20),
            "the best without training at librosa's speed or better: NNLS, PGHI, 200 mel-refitted "
            "fast Griffin-Lim iterations, then 20 waveform L-BFGS iterations",
        ),
    }
)


def list_methods() -> dict[str, str]:
    """Every name :func:`invert` accepts as ``method`` (or as a ``+`` stage), with one line each."""
    out = {name: desc for name, (_, desc) in PIPELINES.items()}
    out.update({f"{n} (stage 1)": d for n, (_, d) in MAGNITUDE_METHODS.items()})
    out.update({f"{n} (initial phase)": d for n, (_, d) in INIT_METHODS.items()})
    out.update({f"{n} (stage 2)": d for n, (_, _, d) in PHASE_METHODS.items()})
    out.update({f"{n} (stage 3)": d for n, (_, d) in OPTIMIZERS.items()})
    return out


def parse_method(method: str, n_iter: int | None = None) -> Plan:
    """Resolve a pipeline name or a ``+`` composition into a :class:`Plan`.

    Missing stages take the defaults: ``nnls`` magnitude, ``pghi`` initial phase, and no
    iterations when no stage-2 name is given. A stage-3 optimiser (:data:`OPTIMIZERS`) may
    follow; ``n_iter`` then sets the optimiser's iterations and stage 2 keeps 32.
    """
    check(isinstance(method, str) and method.strip() != "", f"method={method!r} must be a non-empty name")
    if method in PIPELINES:
        plan = PIPELINES[method][0]
    else:
        mag, init, phase, opt = None, None, None, None
        for tok in method.split("+"):
            tok = tok.strip()
            if tok in OPTIMIZERS and opt is None:
                opt = tok
            elif tok in MAGNITUDE_METHODS and mag is None:
                mag = tok
            elif tok in INIT_METHODS and init is None:
                init = tok
            elif tok in PHASE_METHODS and phase is None:
                phase = tok
            else:
                known = sorted(
                    set(PIPELINES) | set(MAGNITUDE_METHODS) | set(INIT_METHODS) | set(PHASE_METHODS)
                )
                import difflib

                if tok in known or tok in OPTIMIZERS:
                    raise MelinvertError(
                        f"method {method!r} names two stages of the same kind ({tok!r} comes after another "
                        "of its kind): give at most one stage-1, initial-phase, stage-2 and stage-3 name"
                    )
                near = difflib.get_close_matches(tok, known, n=3)
                hint = f"; did you mean {' or '.join(near)}?" if near else f"; known: {', '.join(known)}"
                raise MelinvertError(f"unknown method {tok!r} in method {method!r}{hint}")
        plan = Plan(
            mag or "nnls",
            init or "pghi",
            phase,
            32 if phase else 0,
            optimizer=opt,
            opt_iter=100 if opt else 0,
        )
    if n_iter is not None:
        check(isinstance(n_iter, int) and n_iter >= 0, f"n_iter={n_iter!r} must be an integer >= 0")
        field = "opt_iter" if plan.optimizer else "n_iter"
        plan = dataclasses.replace(plan, **{field: n_iter})
    return plan


def _validate_mel(mel: Any, config: MelConfig, device: Any) -> tuple[torch.Tensor, bool, torch.dtype]:
    t, was_numpy, dtype = as_tensor(mel, name="mel", device=device)
    check(t.dim() >= 2, f"mel must be shaped (..., n_mels, frames), got shape {tuple(t.shape)}")
    check(
        t.shape[-2] == config.n_mels,
        f"mel has {t.shape[-2]} mel bins (shape {tuple(t.shape)}) but the config has n_mels={config.n_mels}"
        + ("; is it time-first? transpose it" if t.shape[-1] == config.n_mels else ""),
    )
    problem = config.compression.range_problem(t)
    check(problem is None, f"mel does not fit the config: {problem}")
    return t, was_numpy, dtype


class _Best:
    """Keeps the lowest-loss estimate seen through the callback, per run."""

    def __init__(self, user: Callback | None):
        self.user = user
        self.best: torch.Tensor | None = None
        self.best_loss = float("inf")

    def __call__(self, i: int, x: torch.Tensor, loss: torch.Tensor) -> bool:
        mean = float(loss.mean())
        if mean <= self.best_loss:
            self.best_loss = mean
            self.best = x.detach().clone()
        return bool(self.user(i, x, loss)) if self.user is not None else False


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


def _run_block(
    lin: torch.Tensor,
    config: MelConfig,
    plan: Plan,
    *,
    length: int,
    generator: torch.Generator | None,
    callback: Callback | None,
    known: torch.Tensor | None = None,
) -> torch.Tensor:
    """Invert linear mels ``(B, n_mels, T)`` to audio ``(B, length)``."""
    if plan.vocoder:  # learned mel -> waveform in one step
        return _neural.VOCODERS[plan.vocoder][0](lin, config, length=length, model=plan.model)
    mag_fn = MAGNITUDE_METHODS[plan.magnitude][0]
    kw = {"n_iter": plan.nnls_iter} if plan.magnitude == "nnls" and plan.nnls_iter else {}
    if getattr(mag_fn, "uses_model", False):
        kw["model"] = plan.model
    mag = mag_fn(lin, config, **kw)
    if config.drop_last_frame:  # Whisper: the STFT has one frame more than the mel
        mag = torch.cat([mag, mag[..., -1:]], dim=-1)
        lin = torch.cat([lin, lin[..., -1:]], dim=-1)
    mag = mag.transpose(-1, -2).contiguous()  # (B, T, F)
    ops = FrameOps(config, length, dtype=mag.dtype, device=mag.device)
    check(
        ops.n_frames == mag.shape[1],
        f"internal frame mismatch: {ops.n_frames} STFT frames for {mag.shape[1]} mel frames",
    )
    if known is not None:
        ops.known = known
    angles = INIT_METHODS[plan.init][0](mag, config, generator=generator, anchor=ops.known_angles())
    if plan.phase is None or plan.n_iter == 0:
        y = ops.synthesis(torch.polar(mag, angles))
    else:
        fn, uses_refit, _ = PHASE_METHODS[plan.phase]
        refit = MelRefit(lin.transpose(-1, -2).contiguous(), config) if uses_refit else None
        pkw = {"model": plan.model} if getattr(fn, "uses_model", False) else {}
        y = fn(
            mag,
            ops,
            angles,
            n_iter=plan.n_iter,
            refit=refit,
            callback=None if plan.optimizer else callback,
            **pkw,
        )
    if plan.optimizer is None:
        return y
    if config.drop_last_frame:
        lin = lin[..., :-1]
    opt = OPTIMIZERS[plan.optimizer][0]
    return opt(lin, config, y, n_iter=plan.opt_iter, callback=callback, known=known)


@dataclasses.dataclass
class BlockStream:
    """Iterator over output audio chunks ``(B, samples)`` of one inversion (see :func:`invert_blocks`).

    After a ``KeyboardInterrupt`` escaped from iteration, :meth:`partial` returns the best
    estimate of the block that was in hand (the part not yet yielded), or ``None``.
    """

    mel: torch.Tensor
    config: MelConfig
    plan: Plan
    total_length: int
    block_frames: int
    overlap_frames: int
    generator: torch.Generator | None
    callback: Callback | None
    lead: tuple[int, ...] = ()
    was_numpy: bool = False
    out_dtype: torch.dtype = torch.float32
    _best: _Best | None = None
    _emitted: int = 0
    _block_start: int = 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        cfg = self.config
        hop = cfg.hop_length
        t_total = self.mel.shape[-1]
        edge = -(-cfg.n_fft // hop) + 1  # frames near a block edge that see its padding
        start = 0
        known: torch.Tensor | None = None
        while True:
            end = min(start + self.block_frames, t_total)
            last = end == t_total
            self._block_start = start * hop
            length = self.total_length - start * hop if last else cfg.n_samples(end - start)
            self._best = _Best(self.callback)
            with torch.no_grad(), _flush_denormals():
                y = _run_block(
                    decode_mel(self.mel[..., start:end], cfg),
                    cfg,
                    self.plan,
                    length=length,
                    generator=self.generator,
                    callback=self._best,
                    known=known,
                )
            if last:
                chunk = y[:, self._emitted - start * hop :]
                self._emitted = self.total_length
                self._best = None
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
            known = y[:, next_start * hop - start * hop : trusted - start * hop]
            start = next_start

    def partial(self) -> torch.Tensor | None:
        """Best estimate so far of the unfinished block (samples not yet yielded), or None."""
        if self._best is None or self._best.best is None:
            return None
        return self._best.best[:, self._emitted - self._block_start :]


def _prepare(
    mel: Any, config: MelConfig | str, method: str, n_iter: int | None, device: Any, model: Any = None
) -> tuple[torch.Tensor, bool, torch.dtype, MelConfig, Plan, tuple[int, ...]]:
    config = resolve_config(config)
    plan = _neural.bind(parse_method(method, n_iter), model, config)
    t, was_numpy, dtype = _validate_mel(mel, config, device)
    lead = tuple(t.shape[:-2])
    return t.reshape(-1, *t.shape[-2:]), was_numpy, dtype, config, plan, lead


def invert_blocks(
    mel: Any,
    config: MelConfig | str,
    *,
    method: str = "default",
    n_iter: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    length: int | None = None,
    block_frames: int = 2048,
    overlap_frames: int = 24,
    model: Any = None,
) -> BlockStream:
    """Invert block by block: a :class:`BlockStream` of torch chunks ``(B, samples)``.

    Blocks of ``block_frames`` frames overlap by ``overlap_frames``; each block's phase
    retrieval is held to the previous block's output in the overlap, so the joins are
    seamless and memory does not grow with the input's length. Arguments as :func:`invert`.
    """
    mel_t, was_numpy, dtype, config, plan, lead = _prepare(mel, config, method, n_iter, device, model)
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
        mel_t, config, plan, total, block_frames, overlap_frames, gen, callback, lead, was_numpy, dtype
    )


def invert(
    mel: Any,
    config: MelConfig | str,
    *,
    method: str = "default",
    n_iter: int | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
    callback: Callback | None = None,
    length: int | None = None,
    block_frames: int = 2048,
    model: Any = None,
) -> Any:
    """Turn a mel spectrogram back into audio.

    Parameters
    ----------
    mel : np.ndarray or torch.Tensor [shape=(..., n_mels, frames)]
        The mel in the config's compression (e.g. ln-compressed for HiFi-GAN), as the
        original project made it.
    config : MelConfig or str
        Its configuration or a preset name.
    method : str
        A pipeline name (``"default"``, ``"fast"``; see :func:`list_methods`) or a ``+``
        composition of stages such as ``"nnls+pghi+fgla"``.
    n_iter : int, optional
        Iterations of the stage-2 algorithm (the pipeline's own count when None).
    seed : int, optional
        Seed for random initial phases (results are deterministic for a given seed).
    device : str or torch.device, optional
        ``"cpu"``, ``"cuda"``, ``"auto"``; default: where the input is.
    callback : callable, optional
        ``callback(iteration, estimate, loss)`` after every iteration; ``estimate`` is the
        current audio ``(B, samples)`` of the block in hand and ``loss`` its loss ``(B,)``
        (mel L1 in the log domain for the ``m*`` methods, spectral convergence otherwise).
        Returning True stops the iterations of that block.
    length : int, optional
        Output length in samples (default ``config.n_samples(frames)``).
    block_frames : int
        Frames per block for long inputs (memory stays bounded; joins are seamless).
    model : str, PathLike, Checkpoint or a sequence of them, optional
        Trained weights for the learned stages (``refiner``, ``degli``, ``cnn_vocoder``): a
        run folder from ``melinvert train``, a ``.safetensors`` checkpoint or a loaded
        :class:`melinvert.neural.Checkpoint`. Learned stages without one use the weights
        shipped for the config; a checkpoint trained for another config is refused.

    Returns
    -------
    np.ndarray or torch.Tensor [shape=(..., samples)]
        Audio at ``config.sample_rate``, same kind and dtype as ``mel``.
    """
    stream = invert_blocks(
        mel,
        config,
        method=method,
        n_iter=n_iter,
        seed=seed,
        device=device,
        callback=callback,
        length=length,
        block_frames=block_frames,
        model=model,
    )
    audio = torch.cat(list(stream), dim=-1)
    return to_output(audio.reshape(*stream.lead, audio.shape[-1]), stream.was_numpy, stream.out_dtype)


from . import neural as _neural  # noqa: E402  (registers refiner, degli, cnn_vocoder, learned)

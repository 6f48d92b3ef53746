"""Training: ``melinvert train MODEL AUDIO... --preset NAME -o RUN``.

The loop (:func:`train`) is seeded and resumable exactly: the crops and noise of step ``k``
are a function of ``(seed, k)`` alone (:func:`~melinvert.neural.tasks.step_generator`), the
learning rate a function of ``k`` (:func:`~melinvert.neural.tasks.lr_at`), and the last
checkpoint holds the model and the optimiser state, so stopping (Ctrl-C, ``--max-minutes``)
and ``--resume`` reproduce the uninterrupted run bit for bit on the same machine.

A run folder holds:

- ``last.safetensors`` + ``last.json``: model, optimiser and training state (for ``--resume``),
  written at each validation and when the run stops;
- ``best.safetensors`` + ``best.json``: the model with the lowest validation loss (no
  optimiser: this is what ``invert(..., model=RUN)`` loads, falling back to ``last`` in a run
  stopped before its first validation, which has no ``best``);
- ``log.jsonl``: one JSON line per validation (step, minutes, losses, log-mel L1, spectral
  convergence, PESQ-WB when ``pesq`` is installed), and one ``{"event": "stopped", ...}`` line
  when the run stops after its last validation (or before any).
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import MelConfig
from ..errors import MelinvertError, check
from .augment import Augmentation, Draw, augment_generator, degraded_copy, parse_augment
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import Clip, Crops, collect_audio, load_clips, split_files, summary
from .models import build_model, count_parameters
from .tasks import TASKS, compressed_mel, decoded_mel, lr_at, step_generator

TRAIN_ARGS = (
    "batch_size",
    "crop_frames",
    "lr",
    "steps",
    "val_every",
    "gain_db",
    "val_method",
    "val_n_iter",
    "augment",
)


@dataclasses.dataclass
class TrainResult:
    """How a run ended: ``status`` is ``done``, ``time`` (``max_minutes`` reached) or
    ``interrupted`` (Ctrl-C or SIGTERM: ``signal`` is its number); ``step`` the steps
    completed; ``best`` the best validation."""

    status: str
    step: int
    run_dir: Path
    best: dict[str, Any] | None
    last: dict[str, Any] | None
    signal: int | None = None
    #: Files left out because they could not be read, each ``"PATH: reason"``.
    skipped: tuple[str, ...] = ()


class _StopFlag:
    """SIGINT and SIGTERM set a flag (the step in hand finishes, then the run saves and stops);
    a second signal interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for s in self.SIGNALS:
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: the signals keep their behaviour
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signum

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


def validate(
    kind: str,
    model: torch.nn.Module,
    clips: Sequence[Clip],
    config: MelConfig,
    args: dict[str, Any],
    hparams: dict[str, Any],
    *,
    seconds: float,
    alt_mels: dict[str, Sequence[torch.Tensor]] | None = None,
) -> dict[str, float | None]:
    """Validation measures of ``model`` on ``clips`` (each cut to ``seconds``).

    ``val_loss``: the task's loss on the whole clips, without gain changes, on the mels of the
    audio. With ``alt_mels`` (name -> one linear mel ``(n_mels, frames)`` per cut clip: the
    given mels of pairs, a fixed degraded copy), also ``val_loss_NAME`` on those and
    ``val_loss_clean`` on the audio's mels, and ``val_loss`` is the mean of them all.
    ``log_mel_l1``
    (nepers, the config's mel), ``spectral_convergence`` (the config's STFT) and ``pesq_wb``
    (``None`` without the ``pesq`` package) of the audio that ``invert(mel, config,
    method=val_method, model=...)`` makes. Means over the clips.
    """
    from ..dsp import mel_spectrogram
    from ..metrics import UnscorableError, log_mel_l1, pesq_wb, waveform_spectral_convergence
    from ..pipeline import invert

    task = TASKS[kind]
    ck = Checkpoint(kind, config, hparams, {}, model)
    losses, l1s, scs, pesqs = [], [], [], []
    alt = {name: [] for name in alt_mels or {}}
    gen = torch.Generator().manual_seed(0)
    n_max = int(seconds * config.sample_rate)
    dev = next(model.parameters()).device  # validate where the model trains
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i, c in enumerate(clips):
            y = c.audio[:n_max]
            nyq = torch.tensor([c.source_rate / 2.0], device=dev)
            yt = torch.from_numpy(y)[None].to(dev)
            loss, _ = task.loss(model, yt, nyq, config, gen)
            losses.append(float(loss))
            for name, mels in (alt_mels or {}).items():
                loss, _ = task.loss(model, yt, nyq, config, gen, mel=mels[i][None].to(dev))
                alt[name].append(float(loss))
            mel = mel_spectrogram(y, config)
            est = invert(
                mel,
                config,
                method=args["val_method"],
                n_iter=args["val_n_iter"] or None,
                model=ck,
                length=y.shape[0],
                device=dev,
            )
            l1s.append(float(log_mel_l1(y, est, config)))
            scs.append(float(waveform_spectral_convergence(y, est, config)))
            try:
                p = pesq_wb(y, est, config.sample_rate)
            except UnscorableError:
                p = None
            if p is not None:
                pesqs.append(float(p))
    model.train(was_training)
    parts = {f"val_loss_{name}": float(np.mean(v)) for name, v in alt.items()}
    if parts:
        parts = {"val_loss_clean": float(np.mean(losses)), **parts}
    return {
        "val_loss": float(np.mean(list(parts.values()))) if parts else float(np.mean(losses)),
        **parts,
        "log_mel_l1": float(np.mean(l1s)),
        "spectral_convergence": float(np.mean(scs)),
        "pesq_wb": float(np.mean(pesqs)) if pesqs else None,
    }


def _optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99), foreach=False)


def train(
    kind: str,
    inputs: Sequence[str | Path],
    config: MelConfig,
    run_dir: str | Path,
    *,
    val: Sequence[str | Path] | None = None,
    val_fraction: float = 0.05,
    val_seconds: float = 10.0,
    seed: int | None = None,
    hparams: dict[str, Any] | None = None,
    mels: str | Path | None = None,
    max_minutes: float | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    **train_args: Any,
) -> TrainResult:
    """Train a ``kind`` model on audio files for ``config``; checkpoints go to ``run_dir``.

    Parameters
    ----------
    kind : {"refiner", "degli", "cnn_vocoder"}
    inputs : sequence of paths
        Audio files or folders (walked recursively). Read once, resampled to the config's rate.
    config : MelConfig
    run_dir : path
        Created if missing; must not hold a run unless ``resume``.
    val : sequence of paths, optional
        Validation audio; default: ``val_fraction`` of the files (at least one), by ``seed``.
    val_seconds : float
        Validation clips are cut to this length.
    seed : int, optional
        Seeds the initial weights, the split, the crops and the noise (default 0; a resumed
        run keeps its own).
    hparams : dict, optional
        Model hyperparameters (see :data:`melinvert.neural.models.MODEL_CLASSES`).
    mels : path, optional
        A folder of mel files paired with the audio by relative path and stem
        (:mod:`melinvert.neural.pairs`): the model then trains (and is also validated) on
        these mels instead of ones computed from the audio, the audio staying the target.
        A resumed run needs the same ones again.
    max_minutes : float, optional
        Stop (and save) after this many minutes of this invocation.
    resume : bool
        Continue the run in ``run_dir`` from its last checkpoint (same data, same settings;
        only ``steps`` may be raised).
    device : str or torch.device
        ``cpu`` (default), ``cuda``, ``auto``.
    progress : bool
        A tqdm bar (loss, steps/s, ETA) on stderr.
    log : callable, optional
        Receives one line per validation and notice.
    on_step : callable, optional
        ``on_step(step, loss)`` after each step (tests use it).
    **train_args :
        ``batch_size``, ``crop_frames``, ``lr``, ``steps``, ``val_every``, ``gain_db``,
        ``val_method``, ``val_n_iter`` (defaults: :data:`melinvert.neural.tasks.TASKS`), and
        ``augment``: a ``SPEC`` string or :class:`~melinvert.neural.augment.Augmentation`
        (off by default) degrading each training crop's mel with the predicted-mel families
        (:mod:`melinvert.neural.augment`); validation then also reports the loss on a fixed
        degraded copy of the validation mels.

    Returns
    -------
    TrainResult
    """
    from ..dsp import resolve_device

    check(kind in TASKS, f"unknown model {kind!r}; trainable: {', '.join(TASKS)}")
    unknown = sorted(set(train_args) - set(TRAIN_ARGS))
    check(not unknown, f"unknown training argument(s): {', '.join(unknown)}")
    say = log or (lambda s: None)
    run = Path(run_dir)
    given = {k: v for k, v in train_args.items() if v is not None}
    if "augment" in given:
        aug = parse_augment(given["augment"])
        given["augment"] = aug.spec if aug is not None else None
    resumed, targs, hp, seed, val_fraction = _settings(
        kind, config, run, resumed=resume, seed=seed, hparams=hparams, val_fraction=val_fraction, given=given
    )
    augment = parse_augment(targs.get("augment"))
    _check_mel_inputs(kind, augment, mels)
    skipped: list[str] = []
    train_clips, val_clips, data_info = _load_data(
        inputs, val, val_fraction, seed, config, resumed, say, skipped, mels=mels
    )
    dev = resolve_device(device)
    session = _Session.start(
        kind, config, run, targs, hp, seed, val_fraction, data_info, resumed, train_clips, val_clips, dev
    )
    session.set_mel_inputs(augment, val_seconds)
    say(
        f"{kind}: {count_parameters(session.model):,} parameters, {data_info['train']['minutes']:.1f} min of "
        f"training audio, steps {session.step}->{targs['steps']}, batch {targs['batch_size']} x "
        f"{targs['crop_frames']} frames, device {dev}"
    )
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MelinvertError(f"cannot create run folder {str(run)!r}: {e.strerror or e}") from None
    result = session.loop(
        max_minutes=max_minutes, progress=progress, on_step=on_step, val_seconds=val_seconds, say=say
    )
    return dataclasses.replace(result, skipped=tuple(skipped))


def _check_mel_inputs(kind: str, augment: Augmentation | None, mels: str | Path | None) -> None:
    """Augmentation and pairs need a model that reads the mel; masked mixtures need the audio's mel."""
    if augment is None and mels is None:
        return
    what = "--augment" if mels is None else "--mels"
    check(
        TASKS[kind].reads_mel,
        f"{what} applies to the models that read the mel ("
        + ", ".join(k for k, t in TASKS.items() if t.reads_mel)
        + f"); {kind} learns from STFTs",
    )
    check(
        mels is None or augment is None or augment.mask == 0,
        "--augment mask mixes the audio's mels; it cannot be combined with --mels (given mels)",
    )


def _settings(
    kind: str,
    config: MelConfig,
    run: Path,
    *,
    resumed: bool,
    seed: int | None,
    hparams: dict[str, Any] | None,
    val_fraction: float,
    given: dict[str, Any],
) -> tuple[Checkpoint | None, dict[str, Any], dict[str, Any], int, float]:
    """The run's settings, fresh or from the checkpoint it resumes: (checkpoint or None,
    training arguments, model hyperparameters, seed, validation fraction)."""
    last_path = run / "last.safetensors"
    ck: Checkpoint | None = None
    if resumed:
        check(last_path.is_file(), f"nothing to resume: {str(last_path)!r} does not exist")
        ck = load_checkpoint(last_path, kind=kind, with_optimizer=True)
        problem = ck.config.differences(config)
        check(
            not problem,
            f"the run in {str(run)!r} was trained for another mel config ({', '.join(problem)} differ)",
        )
        targs = dict(ck.train["args"])
        for k, v in given.items():
            if k == "steps":
                targs["steps"] = int(v)
            elif targs.get(k) != v:
                raise MelinvertError(
                    f"--resume continues the run's settings; {k}={v!r} differs from its {targs.get(k)!r}"
                )
        if hparams:
            diff = {k: v for k, v in hparams.items() if ck.hparams.get(k) != v}
            check(not diff, f"--resume keeps the model's hyperparameters; {diff} differ from the run's")
        hp = dict(ck.hparams)
        check(
            seed is None or seed == int(ck.train["seed"]),
            f"--resume keeps the run's seed {ck.train['seed']}; seed={seed} differs",
        )
        seed = int(ck.train["seed"])
        val_fraction = float(ck.train.get("val_fraction", val_fraction))
    else:
        check(
            not last_path.exists() and not (run / "best.safetensors").exists(),
            f"{str(run)!r} already holds a run; pass --resume to continue it or choose another -o",
        )
        targs = {**TASKS[kind].defaults, **given}
        hp = dict(hparams or {})
        seed = 0 if seed is None else seed
    for k in ("batch_size", "crop_frames", "steps", "val_every"):
        check(isinstance(targs[k], int) and targs[k] >= 1, f"{k}={targs[k]!r} must be an integer >= 1")
    check(targs["lr"] > 0, f"lr={targs['lr']!r} must be > 0")
    check(config.n_samples(targs["crop_frames"]) >= config.min_samples, "crop_frames too small for one frame")
    return ck, targs, hp, seed, val_fraction


def _load_data(
    inputs: Sequence[str | Path],
    val: Sequence[str | Path] | None,
    val_fraction: float,
    seed: int,
    config: MelConfig,
    resumed: Checkpoint | None,
    say: Callable[[str], None],
    skipped: list[str] | None = None,
    *,
    mels: str | Path | None = None,
) -> tuple[list[Clip], list[Clip], dict[str, Any]]:
    """The training and validation clips and their summary (a resumed run's must match).

    A file that cannot be read is left out with a notice (and appended to ``skipped``), not an
    error: one bad file in a corpus does not stop a run. With ``mels``, every clip carries its
    paired mel (:func:`melinvert.neural.pairs.load_pairs`; ``--val`` files are matched relative
    to their own folders) and the summary says where the mels came from.
    """

    def skip(p: Path, reason: str) -> None:
        say(f"skipping {p}: {reason}")
        if skipped is not None:
            skipped.append(f"{p}: {reason}")

    files = collect_audio(inputs)
    if val:
        val_files = collect_audio(val)
        vset = {str(p.resolve()) for p in val_files}
        train_files = [p for p in files if str(p.resolve()) not in vset]
        check(bool(train_files), "every training file is also a validation file")
    else:
        train_files, val_files = split_files(files, val_fraction, seed)
    say(f"reading {len(train_files)} training and {len(val_files)} validation files")
    read: list[Path] = []
    train_clips = load_clips(train_files, config, on_skip=skip, on_file=read.append)
    val_clips = load_clips(val_files, config, on_skip=skip, on_file=read.append)
    data_info: dict[str, Any] = {"train": summary(train_clips), "val": summary(val_clips)}
    if mels is not None:
        train_clips, val_clips, data_info["mels"] = _attach_mels(
            inputs, val, mels, read, train_clips, val_clips, config, say
        )
    if resumed is not None:
        old = resumed.train.get("data", {})
        for part in ("train", "val"):
            check(
                old.get(part, {}).get("digest") == data_info[part]["digest"],
                f"the {part} audio differs from the run's (files, rates or lengths); --resume needs the same data",
            )
        was, now = old.get("mels"), data_info.get("mels")
        check(
            (was is None) == (now is None),
            "the run trained on mels paired with its audio; --resume needs the same --mels DIR"
            if now is None
            else "the run trained on mels computed from its audio; --resume cannot add --mels",
        )
        check(
            was is None or was.get("digest") == now.get("digest"),
            "the --mels files differ from the run's (names, lengths or values); --resume needs the same data",
        )
    return train_clips, val_clips, data_info


def _attach_mels(
    inputs: Sequence[str | Path],
    val: Sequence[str | Path] | None,
    mel_dir: str | Path,
    read: list[Path],
    train_clips: list[Clip],
    val_clips: list[Clip],
    config: MelConfig,
    say: Callable[[str], None],
) -> tuple[list[Clip], list[Clip], dict[str, Any]]:
    """The clips with their paired mels (``read``: the files of the clips, in order) and the
    record of the pairs: folder, count, mels reconciled, digest."""
    from .pairs import audio_keys, load_pairs, mels_digest

    keys = audio_keys(inputs)
    if val:
        keys.update(audio_keys(val))
    clips = [*train_clips, *val_clips]
    frames = {p: config.n_frames(c.audio.shape[0]) for p, c in zip(read, clips, strict=True)}
    mels, reconciled = load_pairs(keys, frames, mel_dir, config, say=say)
    paired = [dataclasses.replace(c, mel=mels[p]) for p, c in zip(read, clips, strict=True)]
    record = {
        "dir": str(Path(mel_dir).resolve()),
        "files": len(paired),
        "reconciled": reconciled,
        "digest": mels_digest([c.mel for c in paired if c.mel is not None]),
    }
    return paired[: len(train_clips)], paired[len(train_clips) :], record


@dataclasses.dataclass
class Batch:
    """One training step's inputs.

    Attributes
    ----------
    audio : torch.Tensor [shape=(B, samples), float32]
        The crops: the target, never augmented.
    nyquist : torch.Tensor [shape=(B,)]
        Half the rate of each crop's file, Hz.
    mel : torch.Tensor [shape=(B, n_mels, frames)] or None
        The linear mel the model reads (augmented and/or given); ``None``: the task computes
        it from ``audio``.
    draws : list of Draw
        Each crop's augmentation (empty without).
    generator : torch.Generator
        The step's generator for the task's own noise.
    """

    audio: torch.Tensor
    nyquist: torch.Tensor
    mel: torch.Tensor | None
    draws: list[Draw]
    generator: torch.Generator


def training_batch(
    crops: Crops,
    config: MelConfig,
    seed: int,
    step: int,
    batch_size: int,
    augment: Augmentation | None = None,
) -> Batch:
    """The batch of ``step``, a pure function of ``(seed, step)`` and the data.

    Crops come from :func:`~melinvert.neural.tasks.step_generator` (paired crops when the clips
    carry mels), augmentation strengths from :func:`~melinvert.neural.augment.augment_generator`,
    so turning augmentation on does not move the crops.
    """
    rng, gen = step_generator(seed, step)
    comp: torch.Tensor | None = None
    if crops.paired:
        audio, nyq, comp = crops.paired_batch(rng, batch_size)
    else:
        audio, nyq = crops.batch(rng, batch_size)
    draws: list[Draw] = []
    if augment is not None:
        arng, agen = augment_generator(seed, step)
        if comp is None:
            comp = compressed_mel(audio, config)
        draws = augment.draw(arng, batch_size)
        comp = augment.apply(comp, audio, draws, config, agen)
    mel = decoded_mel(comp, config) if comp is not None else None
    return Batch(audio, nyq, mel, draws, gen)


def _val_mels(
    clips: Sequence[Clip], config: MelConfig, seconds: float, augment: Augmentation | None, seed: int
) -> dict[str, list[torch.Tensor]]:
    """The validation's other linear mels, per clip cut to ``seconds``: ``pairs`` (the given
    mels) and ``degraded`` (a fixed degraded copy of the mels training starts from)."""
    n_max = int(seconds * config.sample_rate)
    cut = [c.audio[:n_max] for c in clips]
    out: dict[str, list[torch.Tensor]] = {}
    base: list[torch.Tensor] | None = None
    if clips and all(c.mel is not None for c in clips):
        base = [torch.from_numpy(c.mel[:, : config.n_frames(y.shape[0])]) for c, y in zip(clips, cut)]
        out["pairs"] = [decoded_mel(m, config) for m in base]
    if augment is not None:
        if base is None:
            base = [compressed_mel(torch.from_numpy(y)[None], config)[0] for y in cut]
        out["degraded"] = [decoded_mel(m, config) for m in degraded_copy(base, cut, augment, config, seed)]
    return out


@dataclasses.dataclass
class _Session:
    """A run in hand: its settings, model, optimiser and counters."""

    kind: str
    config: MelConfig
    run: Path
    targs: dict[str, Any]
    hp: dict[str, Any]
    seed: int
    val_fraction: float
    data_info: dict[str, Any]
    model: torch.nn.Module
    crops: Crops
    val_clips: list[Clip]
    opt: Any = None
    step: int = 0
    elapsed: float = 0.0
    best_loss: float = math.inf
    best_step: int | None = None
    last_val: dict[str, Any] | None = None
    t_mark: float = 0.0
    augment: Augmentation | None = None
    val_mels: dict[str, list[torch.Tensor]] = dataclasses.field(default_factory=dict)

    @classmethod
    def start(
        cls,
        kind: str,
        config: MelConfig,
        run: Path,
        targs: dict[str, Any],
        hp: dict[str, Any],
        seed: int,
        val_fraction: float,
        data_info: dict[str, Any],
        resumed: Checkpoint | None,
        train_clips: list[Clip],
        val_clips: list[Clip],
        device: torch.device,
    ) -> _Session:
        """Seeded weights (a fresh model fitted to a first batch, or the resumed one's) on
        ``device``, the optimiser, and the counters of the checkpoint resumed."""
        crops = Crops(train_clips, config, targs["crop_frames"], targs["gain_db"])
        with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's generator untouched
            torch.manual_seed(seed)
            model = build_model(kind, config, hp)
        if resumed is not None:
            model.load_state_dict(resumed.model.state_dict())
        else:
            rng, _ = step_generator(seed, 2**31)
            if crops.paired:
                audio, _, given = crops.paired_batch(rng, 64)
                TASKS[kind].fit(model, audio, config, decoded_mel(given, config))
            else:
                audio, _ = crops.batch(rng, 64)
                TASKS[kind].fit(model, audio, config)
        s = cls(
            kind,
            config,
            run,
            targs,
            _complete_hparams(kind, hp),
            seed,
            val_fraction,
            data_info,
            model,
            crops,
            val_clips,
        )
        s.model.to(device).train()
        s.opt = _optimizer(s.model, targs["lr"])
        if resumed is not None:
            assert resumed.optimizer is not None
            s.opt.load_state_dict(resumed.optimizer)
        state = dict(resumed.train) if resumed is not None else {}
        s.step = int(state.get("step", 0))
        s.elapsed = float(state.get("elapsed_s", 0.0))
        s.best_loss = float(state["best_val_loss"]) if state.get("best_val_loss") is not None else math.inf
        s.best_step = state.get("best_step")
        s.last_val = state.get("last_val")
        return s

    def set_mel_inputs(self, augment: Augmentation | None, val_seconds: float) -> None:
        """Augment the training mels with ``augment``; prepare the validation's other mels."""
        self.augment = augment
        self.val_mels = _val_mels(self.val_clips, self.config, val_seconds, augment, self.seed)

    def record(self) -> dict[str, Any]:
        """The training state stored with a checkpoint."""
        return {
            "step": self.step,
            "elapsed_s": round(self.elapsed, 3),
            "minutes": round(self.elapsed / 60.0, 3),
            "seed": self.seed,
            "args": self.targs,
            "val_fraction": self.val_fraction,
            "best_val_loss": self.best_loss if math.isfinite(self.best_loss) else None,
            "best_step": self.best_step,
            "last_val": self.last_val,
            "data": self.data_info,
            "augment": self.augment.to_dict() if self.augment is not None else None,
            "parameters": count_parameters(self.model),
            "torch": torch.__version__,
        }

    def save(self, name: str) -> None:
        """``last`` (with the optimiser, for resuming) or ``best``."""
        opt = {"optimizer": self.opt.state_dict()} if name == "last" else {}
        save_checkpoint(
            self.run / f"{name}.safetensors",
            self.model,
            kind=self.kind,
            config=self.config,
            hparams=self.hp,
            train=self.record(),
            **opt,
        )

    def tick(self) -> None:
        """Add the time since the last tick to ``elapsed``."""
        now = time.monotonic()
        self.elapsed += now - self.t_mark
        self.t_mark = now

    def train_step(self) -> float:
        """One optimiser step on the crops and noise of ``(seed, step)``; returns the loss."""
        b = training_batch(
            self.crops, self.config, self.seed, self.step, self.targs["batch_size"], self.augment
        )
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.targs["steps"], self.targs["lr"])
        dev = next(self.model.parameters()).device
        mel = {"mel": b.mel.to(dev)} if b.mel is not None else {}
        loss, _ = TASKS[self.kind].loss(
            self.model, b.audio.to(dev), b.nyquist.to(dev), self.config, b.generator, **mel
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.step += 1
        lv = float(loss.detach())
        check(math.isfinite(lv), f"the loss became {lv} at step {self.step}; lower --lr")
        return lv

    def validate_and_save(self, train_loss: float, val_seconds: float) -> str:
        """Validate, keep ``best`` when it improved, save ``last``, log; returns the log line."""
        from ..io import append_text

        v = validate(
            self.kind,
            self.model,
            self.val_clips,
            self.config,
            self.targs,
            self.hp,
            seconds=val_seconds,
            alt_mels=self.val_mels,
        )
        self.last_val = {"step": self.step, "train_loss": round(train_loss, 6), **v}
        self.tick()
        self.last_val["minutes"] = round(self.elapsed / 60.0, 3)
        if self.last_val["val_loss"] < self.best_loss:
            self.best_loss = float(self.last_val["val_loss"])
            self.best_step = self.step
            self.save("best")
        self.save("last")
        append_text(self.run / "log.jsonl", json.dumps(self.last_val) + "\n")
        return _format_val(self.last_val)

    def _log_end(self, status: str, train_loss: float | None) -> None:
        """A ``log.jsonl`` line for a run that stopped after its last validation (or before any):
        ``{"event": "stopped", "status", "step", "minutes", "train_loss", "validated": false}``."""
        from ..io import append_text

        self.tick()
        line = {
            "event": "stopped",
            "status": status,
            "step": self.step,
            "minutes": round(self.elapsed / 60.0, 3),
            "train_loss": None if train_loss is None else round(train_loss, 6),
            "validated": False,
        }
        append_text(self.run / "log.jsonl", json.dumps(line) + "\n")

    def loop(
        self,
        *,
        max_minutes: float | None,
        progress: bool,
        on_step: Callable[[int, float], None] | None,
        val_seconds: float,
        say: Callable[[str], None],
    ) -> TrainResult:
        """Train to ``steps`` (or until stopped), validating every ``val_every`` steps."""
        from tqdm.auto import tqdm

        steps, status, stopped_by = int(self.targs["steps"]), "done", None
        t_start = self.t_mark = time.monotonic()
        bar = tqdm(
            total=steps,
            initial=self.step,
            desc=f"train {self.kind}",
            unit="step",
            disable=not progress,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
        )
        ema = None
        try:
            with _StopFlag() as stop:
                while self.step < steps:
                    lv = self.train_step()
                    ema = lv if ema is None else 0.98 * ema + 0.02 * lv
                    self.tick()
                    bar.update(1)
                    best = f" val {self.best_loss:.4f}" if math.isfinite(self.best_loss) else ""
                    bar.set_postfix_str(f"loss {ema:.4f}{best}", refresh=False)
                    if on_step is not None:
                        on_step(self.step, lv)
                    if self.step % self.targs["val_every"] == 0 or self.step == steps:
                        line = self.validate_and_save(ema, val_seconds)
                        bar.write(line, file=sys.stderr) if progress else say(line)
                    if stop.requested is not None:
                        status, stopped_by = "interrupted", stop.requested
                        break
                    if max_minutes is not None and (time.monotonic() - t_start) / 60.0 >= max_minutes:
                        status = "time"
                        break
        finally:
            bar.close()
        if self.step % self.targs["val_every"] != 0 or status != "done":
            self.save("last")
        if self.last_val is None or self.last_val.get("step") != self.step:  # steps since the last log line
            self._log_end(status, ema)
        best = {"step": self.best_step, "val_loss": self.best_loss if math.isfinite(self.best_loss) else None}
        return TrainResult(status, self.step, self.run, best, self.last_val, stopped_by)


def _complete_hparams(kind: str, hp: dict[str, Any]) -> dict[str, Any]:
    from .models import MODEL_CLASSES

    return {**MODEL_CLASSES[kind][1], **hp}


def _format_val(v: dict[str, Any]) -> str:
    pesq = f" pesq_wb {v['pesq_wb']:.3f}" if v.get("pesq_wb") is not None else ""
    parts = "".join(
        f" {k[len('val_loss_') :]} {x:.4f}"
        for k, x in v.items()
        if k.startswith("val_loss_") and x is not None
    )
    parts = f" ({parts.strip()})" if parts else ""
    return (
        f"step {v['step']} ({v['minutes']:.1f} min): train {v['train_loss']:.4f} val {v['val_loss']:.4f}{parts} "
        f"log_mel_l1 {v['log_mel_l1']:.4f} sc {v['spectral_convergence']:.4f}{pesq}"
    )

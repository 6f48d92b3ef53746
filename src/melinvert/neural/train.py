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
  optimiser: this is what ``invert(..., model=RUN)`` loads);
- ``log.jsonl``: one JSON line per validation (step, minutes, losses, log-mel L1, spectral
  convergence, PESQ-WB when ``pesq`` is installed).
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
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import Clip, Crops, collect_audio, load_clips, split_files, summary
from .models import build_model, count_parameters
from .tasks import TASKS, lr_at, step_generator

TRAIN_ARGS = ("batch_size", "crop_frames", "lr", "steps", "val_every", "gain_db", "val_method", "val_n_iter")


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
) -> dict[str, float | None]:
    """Validation measures of ``model`` on ``clips`` (each cut to ``seconds``).

    ``val_loss``: the task's loss on the whole clips, without gain changes. ``log_mel_l1``
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
    gen = torch.Generator().manual_seed(0)
    n_max = int(seconds * config.sample_rate)
    dev = next(model.parameters()).device  # validate where the model trains
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for c in clips:
            y = c.audio[:n_max]
            nyq = torch.tensor([c.source_rate / 2.0], device=dev)
            loss, _ = task.loss(model, torch.from_numpy(y)[None].to(dev), nyq, config, gen)
            losses.append(float(loss))
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
    return {
        "val_loss": float(np.mean(losses)),
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
        ``val_method``, ``val_n_iter`` (defaults: :data:`melinvert.neural.tasks.TASKS`).

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
    resumed, targs, hp, seed, val_fraction = _settings(
        kind, config, run, resumed=resume, seed=seed, hparams=hparams, val_fraction=val_fraction, given=given
    )
    skipped: list[str] = []
    train_clips, val_clips, data_info = _load_data(
        inputs, val, val_fraction, seed, config, resumed, say, skipped
    )
    dev = resolve_device(device)
    session = _Session.start(
        kind, config, run, targs, hp, seed, val_fraction, data_info, resumed, train_clips, val_clips, dev
    )
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
) -> tuple[list[Clip], list[Clip], dict[str, Any]]:
    """The training and validation clips and their summary (a resumed run's must match).

    A file that cannot be read is left out with a notice (and appended to ``skipped``), not an
    error: one bad file in a corpus does not stop a run.
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
    train_clips = load_clips(train_files, config, on_skip=skip)
    val_clips = load_clips(val_files, config, on_skip=skip)
    data_info = {"train": summary(train_clips), "val": summary(val_clips)}
    if resumed is not None:
        old = resumed.train.get("data", {})
        for part in ("train", "val"):
            check(
                old.get(part, {}).get("digest") == data_info[part]["digest"],
                f"the {part} audio differs from the run's (files, rates or lengths); --resume needs the same data",
            )
    return train_clips, val_clips, data_info


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
        rng, gen = step_generator(self.seed, self.step)
        audio, nyq = self.crops.batch(rng, self.targs["batch_size"])
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, self.targs["steps"], self.targs["lr"])
        dev = next(self.model.parameters()).device
        loss, _ = TASKS[self.kind].loss(self.model, audio.to(dev), nyq.to(dev), self.config, gen)
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
            self.kind, self.model, self.val_clips, self.config, self.targs, self.hp, seconds=val_seconds
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
        if not (self.run / "best.safetensors").exists():  # stopped before the first validation
            self.save("best")
        best = {"step": self.best_step, "val_loss": self.best_loss if math.isfinite(self.best_loss) else None}
        return TrainResult(status, self.step, self.run, best, self.last_val, stopped_by)


def _complete_hparams(kind: str, hp: dict[str, Any]) -> dict[str, Any]:
    from .models import MODEL_CLASSES

    return {**MODEL_CLASSES[kind][1], **hp}


def _format_val(v: dict[str, Any]) -> str:
    pesq = f" pesq_wb {v['pesq_wb']:.3f}" if v.get("pesq_wb") is not None else ""
    return (
        f"step {v['step']} ({v['minutes']:.1f} min): train {v['train_loss']:.4f} val {v['val_loss']:.4f} "
        f"log_mel_l1 {v['log_mel_l1']:.4f} sc {v['spectral_convergence']:.4f}{pesq}"
    )

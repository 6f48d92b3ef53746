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

import argparse
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
    ``interrupted`` (Ctrl-C); ``step`` the steps completed; ``best`` the best validation."""

    status: str
    step: int
    run_dir: Path
    best: dict[str, Any] | None
    last: dict[str, Any] | None


class _StopFlag:
    """SIGINT sets a flag (the step in hand finishes, then the run saves and stops); a second
    Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C keeps its default behaviour
            self._old = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


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
    from tqdm.auto import tqdm

    from ..dsp import resolve_device

    check(kind in TASKS, f"unknown model {kind!r}; trainable: {', '.join(TASKS)}")
    task = TASKS[kind]
    unknown = sorted(set(train_args) - set(TRAIN_ARGS))
    check(not unknown, f"unknown training argument(s): {', '.join(unknown)}")
    say = log or (lambda s: None)
    run = Path(run_dir)
    last_path, best_path, log_path = run / "last.safetensors", run / "best.safetensors", run / "log.jsonl"
    dev = resolve_device(device)
    given = {k: v for k, v in train_args.items() if v is not None}

    # ------------------------------------------------------------- settings (fresh or resumed)
    resumed: Checkpoint | None = None
    if resume:
        check(last_path.is_file(), f"nothing to resume: {str(last_path)!r} does not exist")
        resumed = load_checkpoint(last_path, kind=kind, with_optimizer=True)
        problem = resumed.config.differences(config)
        check(
            not problem,
            f"the run in {str(run)!r} was trained for another mel config ({', '.join(problem)} differ)",
        )
        targs = dict(resumed.train["args"])
        for k, v in given.items():
            if k == "steps":
                targs["steps"] = int(v)
            elif targs.get(k) != v:
                raise MelinvertError(
                    f"--resume continues the run's settings; {k}={v!r} differs from its {targs.get(k)!r}"
                )
        if hparams:
            diff = {k: v for k, v in hparams.items() if resumed.hparams.get(k) != v}
            check(not diff, f"--resume keeps the model's hyperparameters; {diff} differ from the run's")
        hp = dict(resumed.hparams)
        check(
            seed is None or seed == int(resumed.train["seed"]),
            f"--resume keeps the run's seed {resumed.train['seed']}; seed={seed} differs",
        )
        seed = int(resumed.train["seed"])
        val_fraction = float(resumed.train.get("val_fraction", val_fraction))
    else:
        check(
            not last_path.exists() and not best_path.exists(),
            f"{str(run)!r} already holds a run; pass --resume to continue it or choose another -o",
        )
        targs = {**task.defaults, **given}
        hp = dict(hparams or {})
        seed = 0 if seed is None else seed
    for k in ("batch_size", "crop_frames", "steps", "val_every"):
        check(isinstance(targs[k], int) and targs[k] >= 1, f"{k}={targs[k]!r} must be an integer >= 1")
    check(targs["lr"] > 0, f"lr={targs['lr']!r} must be > 0")
    check(config.n_samples(targs["crop_frames"]) >= config.min_samples, "crop_frames too small for one frame")

    # ------------------------------------------------------------- data
    files = collect_audio(inputs)
    if val:
        val_files = collect_audio(val)
        vset = {str(p.resolve()) for p in val_files}
        train_files = [p for p in files if str(p.resolve()) not in vset]
        check(bool(train_files), "every training file is also a validation file")
    else:
        train_files, val_files = split_files(files, val_fraction, seed)
    say(f"reading {len(train_files)} training and {len(val_files)} validation files")
    train_clips = load_clips(train_files, config)
    val_clips = load_clips(val_files, config)
    data_info = {"train": summary(train_clips), "val": summary(val_clips)}
    if resumed is not None:
        old = resumed.train.get("data", {})
        for part in ("train", "val"):
            check(
                old.get(part, {}).get("digest") == data_info[part]["digest"],
                f"the {part} audio differs from the run's (files, rates or lengths); --resume needs the same data",
            )
    crops = Crops(train_clips, config, targs["crop_frames"], targs["gain_db"])

    # ------------------------------------------------------------- model and optimiser
    with torch.random.fork_rng(devices=[]):  # seeded weights, the caller's generator untouched
        torch.manual_seed(seed)
        model = build_model(kind, config, hp)
    full_hp = _complete_hparams(kind, hp)
    if resumed is not None:
        model.load_state_dict(resumed.model.state_dict())
    else:
        rng, _ = step_generator(seed, 2**31)
        audio, _ = crops.batch(rng, 64)
        task.fit(model, audio, config)
    model.to(dev).train()
    opt = _optimizer(model, targs["lr"])
    if resumed is not None:
        assert resumed.optimizer is not None
        opt.load_state_dict(resumed.optimizer)
    state = dict(resumed.train) if resumed is not None else {}
    step = int(state.get("step", 0))
    elapsed = float(state.get("elapsed_s", 0.0))
    best_loss = float(state["best_val_loss"]) if state.get("best_val_loss") is not None else math.inf
    best_step = state.get("best_step")
    last_val: dict[str, Any] | None = state.get("last_val")
    steps = int(targs["steps"])
    say(
        f"{kind}: {count_parameters(model):,} parameters, {data_info['train']['minutes']:.1f} min of training "
        f"audio, steps {step}->{steps}, batch {targs['batch_size']} x {targs['crop_frames']} frames, device {dev}"
    )

    def record(at: int) -> dict[str, Any]:
        return {
            "step": at,
            "elapsed_s": round(elapsed, 3),
            "minutes": round(elapsed / 60.0, 3),
            "seed": seed,
            "args": targs,
            "val_fraction": val_fraction,
            "best_val_loss": best_loss if math.isfinite(best_loss) else None,
            "best_step": best_step,
            "last_val": last_val,
            "data": data_info,
            "parameters": count_parameters(model),
            "torch": torch.__version__,
        }

    def save_last() -> None:
        save_checkpoint(
            last_path,
            model,
            kind=kind,
            config=config,
            hparams=full_hp,
            train=record(step),
            optimizer=opt.state_dict(),
        )

    run.mkdir(parents=True, exist_ok=True)
    status = "done"
    t_start = time.monotonic()
    t_mark = t_start
    bar = tqdm(
        total=steps,
        initial=step,
        desc=f"train {kind}",
        unit="step",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
    )
    ema = None
    try:
        with _StopFlag() as stop:
            while step < steps:
                rng, gen = step_generator(seed, step)
                audio, nyq = crops.batch(rng, targs["batch_size"])
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, steps, targs["lr"])
                loss, _ = task.loss(model, audio.to(dev), nyq.to(dev), config, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                lv = float(loss.detach())
                check(math.isfinite(lv), f"the loss became {lv} at step {step}; lower --lr")
                ema = lv if ema is None else 0.98 * ema + 0.02 * lv
                now = time.monotonic()
                elapsed += now - t_mark
                t_mark = now
                bar.update(1)
                bar.set_postfix_str(
                    f"loss {ema:.4f}" + (f" val {best_loss:.4f}" if math.isfinite(best_loss) else ""),
                    refresh=False,
                )
                if on_step is not None:
                    on_step(step, lv)
                if step % targs["val_every"] == 0 or step == steps:
                    last_val = validate(kind, model, val_clips, config, targs, full_hp, seconds=val_seconds)
                    last_val = {"step": step, "train_loss": round(ema, 6), **last_val}
                    now = time.monotonic()
                    elapsed += now - t_mark
                    t_mark = now
                    last_val["minutes"] = round(elapsed / 60.0, 3)
                    if last_val["val_loss"] < best_loss:
                        best_loss = float(last_val["val_loss"])
                        best_step = step
                        save_checkpoint(
                            best_path, model, kind=kind, config=config, hparams=full_hp, train=record(step)
                        )
                    save_last()
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(last_val) + "\n")
                    line = _format_val(last_val)
                    if progress:
                        bar.write(line, file=sys.stderr)
                    else:
                        say(line)
                if stop.requested:
                    status = "interrupted"
                    break
                if max_minutes is not None and (time.monotonic() - t_start) / 60.0 >= max_minutes:
                    status = "time"
                    break
    finally:
        bar.close()
    if step % targs["val_every"] != 0 or status != "done":
        save_last()
    if not best_path.exists():  # stopped before the first validation: keep what there is
        save_checkpoint(best_path, model, kind=kind, config=config, hparams=full_hp, train=record(step))
    best = {"step": best_step, "val_loss": best_loss if math.isfinite(best_loss) else None}
    return TrainResult(status, step, run, best, last_val)


def _complete_hparams(kind: str, hp: dict[str, Any]) -> dict[str, Any]:
    from .models import MODEL_CLASSES

    return {**MODEL_CLASSES[kind][1], **hp}


def _format_val(v: dict[str, Any]) -> str:
    pesq = f" pesq_wb {v['pesq_wb']:.3f}" if v.get("pesq_wb") is not None else ""
    return (
        f"step {v['step']} ({v['minutes']:.1f} min): train {v['train_loss']:.4f} val {v['val_loss']:.4f} "
        f"log_mel_l1 {v['log_mel_l1']:.4f} sc {v['spectral_convergence']:.4f}{pesq}"
    )


# ---------------------------------------------------------------------- the command


def _parse_hparam(text: str) -> tuple[str, Any]:
    check("=" in text, f"--hparam {text!r} must be KEY=VALUE (e.g. channels=128)")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def cmd_train(args: argparse.Namespace, ui: Any) -> int:
    """``melinvert train``: parse, train, report; exit 130 after Ctrl-C (a checkpoint is saved)."""
    from ..cli import config_from_args

    cfg = config_from_args(args, required=True)
    assert cfg is not None
    if args.threads is not None:
        check(args.threads >= 1, f"--threads {args.threads} must be >= 1")
        torch.set_num_threads(args.threads)
    hp = dict(_parse_hparam(h) for h in (args.hparam or []))
    targs = {k: getattr(args, k) for k in TRAIN_ARGS}
    result = train(
        args.model,
        args.inputs,
        cfg,
        args.output,
        val=args.val,
        val_fraction=args.val_fraction,
        seed=args.seed,
        hparams=hp,
        max_minutes=args.max_minutes,
        resume=args.resume,
        device=args.device,
        progress=not args.quiet,
        log=ui.note,
        **targs,
    )
    where = result.run_dir
    if result.status == "interrupted":
        ui.error(
            f"interrupted at step {result.step}; saved {where / 'last.safetensors'} (continue with --resume)"
        )
        return 130
    if result.status == "time":
        ui.note(f"--max-minutes reached at step {result.step}; saved {where / 'last.safetensors'}")
    best = result.best or {}
    ui.out(
        f"{args.model}: {result.step} steps; best validation loss {best.get('val_loss')} at step "
        f"{best.get('step')}: {where / 'best.safetensors'}"
    )
    return 0


def add_train_options(p: argparse.ArgumentParser) -> None:
    """The arguments of ``melinvert train``."""
    from ..cli import add_required_config

    p.add_argument("model", choices=tuple(TASKS), help="what to train")
    p.add_argument("inputs", nargs="+", metavar="AUDIO", help="audio files or folders (walked recursively)")
    p.add_argument(
        "-o", "--output", required=True, metavar="RUN_DIR", help="run folder for checkpoints and log"
    )
    add_required_config(p)
    p.add_argument(
        "--val", action="append", metavar="PATH", help="validation audio (file or folder; repeatable)"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.05, help="files held out when no --val (default 0.05)"
    )
    p.add_argument("--steps", type=int, help="total optimiser steps (default per model)")
    p.add_argument("--batch-size", type=int, help="crops per step")
    p.add_argument("--crop-frames", type=int, help="mel frames per crop")
    p.add_argument("--lr", type=float, help="peak learning rate (Adam; warm-up then cosine decay)")
    p.add_argument("--gain-db", type=float, help="random gain range of the crops, +-dB")
    p.add_argument("--val-every", type=int, help="validate (and save) every N steps")
    p.add_argument("--val-method", help="method the validation inverts with (default per model)")
    p.add_argument("--val-n-iter", type=int, help="iterations of the validation method's stage 2")
    p.add_argument("--hparam", action="append", metavar="KEY=VALUE", help="model hyperparameter (repeatable)")
    p.add_argument("--seed", type=int, help="seed for weights, split, crops and noise (default 0)")
    p.add_argument("--max-minutes", type=float, help="stop and save after this many minutes")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint"
    )
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu (default), auto, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads torch may use")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

"""``melinvert train``: train a learned stage (the work is :func:`melinvert.neural.train.train`;
this module parses and reports)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from ..errors import check
from .common import (
    EXIT_INTERRUPTED,
    Command,
    Console,
    add_required_config,
    config_from_args,
    device_name,
    seed_value,
)


class _Trainable:
    """The trainable models, as argparse ``choices``: read from the task table (which needs
    torch) only when an argument is checked or listed, so that building the parser stays light."""

    def _names(self) -> tuple[str, ...]:
        from ..neural.tasks import TASKS

        return tuple(TASKS)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def _parse_hparam(text: str) -> tuple[str, Any]:
    check("=" in text, f"--hparam {text!r} must be KEY=VALUE (e.g. channels=128)")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def cmd_train(args: argparse.Namespace, ui: Console) -> int:
    """Parse, train, report; exit 130 after Ctrl-C, 143 after SIGTERM (a checkpoint is saved)."""
    import torch

    from ..neural.train import TRAIN_ARGS, train

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
    if result.skipped:
        ui.note(f"left out {len(result.skipped)} unreadable file(s): " + "; ".join(result.skipped))
    if result.status == "interrupted":
        ui.error(
            f"interrupted at step {result.step}; saved {where / 'last.safetensors'} (continue with --resume)"
        )
        return 128 + result.signal if result.signal else EXIT_INTERRUPTED
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
    p.add_argument(
        "model", choices=_Trainable(), metavar="MODEL", help="what to train: refiner, degli or cnn_vocoder"
    )
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
    p.add_argument("--seed", type=seed_value, help="seed for weights, split, crops and noise (default 0)")
    p.add_argument("--max-minutes", type=float, help="stop and save after this many minutes")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint"
    )
    p.add_argument(
        "--device", default="cpu", type=device_name, metavar="DEV", help="cpu (default), auto, cuda or cuda:N"
    )
    p.add_argument("--threads", type=int, help="CPU threads torch may use")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


COMMAND = Command(
    "train",
    cmd_train,
    "train a learned stage (refiner, degli, cnn_vocoder) on your audio for a mel config",
    options=(add_train_options,),
    examples=(
        "melinvert train refiner speech/ --preset hifigan-22k-80 -o runs/refiner --max-minutes 60",
        "melinvert train refiner speech/ --preset hifigan-22k-80 -o runs/refiner --resume",
        "melinvert invert mels/ -o wavs/ --preset hifigan-22k-80 --method refiner+pghi+fgla --model runs/refiner",
    ),
)

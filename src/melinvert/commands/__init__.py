"""The ``melinvert`` command line: parse, call the library, report. No maths here.

One module per command (``presets``, ``mel``, ``inspect``, ``score``, ``invert``,
``roundtrip``, ``demo``, ``methods``, ``bench``, ``train``), each defining its ``cmd_*``
function and a :class:`~melinvert.commands.common.Command` record ``COMMAND``;
:mod:`melinvert.commands.common` holds what they share. Adding a subcommand is one module
and one line in :data:`COMMANDS` (or :func:`register` from elsewhere)::

    def cmd_hello(args: argparse.Namespace, ui: Console) -> int:
        cfg = config_from_args(args, required=True)
        ui.out(cfg.describe())
        return 0

    register(Command("hello", cmd_hello, "say hello", options=(add_config_options,)))

``options`` are functions that add arguments to the subcommand's parser: the shared ones
(:func:`add_inputs`, :func:`add_output`, :func:`add_config_options`, :func:`add_overwrite`,
:func:`add_layout`, :func:`add_device`, :func:`add_threads`) or :func:`arg` for a one-off
(``arg("--n-iter", type=int, default=100)``). A command returns its exit status (``None`` is 0)
and reports through ``ui``; a :class:`~melinvert.errors.MelinvertError` it raises becomes one
``melinvert: error: ...`` line and exit status 2.

Every command takes ``-q/--quiet``. A command with ``--threads`` (:func:`add_threads`: the
ones that compute) gets torch's thread count set once, here, before it runs
(:func:`apply_threads`: ``--threads``, else ``OMP_NUM_THREADS`` if set, else
:func:`default_threads`, the cores not already busy); library code never sets it.

Nothing in this package imports torch at import time: ``melinvert --version`` and ``--help``
stay fast; each command imports the library it needs when it runs.

Exit statuses: 0 success, 2 bad input or usage (a write failure included; for ``invert`` and
``mel``, the failure of the only input file), 3 some files of a run over several failed
(``invert``, ``mel``: each named at the end), 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM, handled as Ctrl-C: ``invert`` writes its best estimate
with a ``.partial`` marker, ``train`` saves a checkpoint, ``bench`` writes its page), 1
internal error (a bug: one line, the traceback with ``MELINVERT_DEBUG=1``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence

from .. import __version__, _startup
from ..errors import MelinvertError
from . import (
    bench,
    demo,
    inspect,
    invert,
    mel,
    methods,
    presets,
    roundtrip,
    score,
    train,
)
from .common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    ISSUES_URL,
    PROG,
    Command,
    Console,
    Parser,
    Progress,
    Terminated,
    UsageError,
    add_config_options,
    add_device,
    add_inputs,
    add_layout,
    add_method_options,
    add_output,
    add_overwrite,
    add_quiet,
    add_required_config,
    add_subtype,
    add_threads,
    add_write_layout,
    apply_threads,
    arg,
    command_threads,
    config_from_args,
    default_threads,
    flat,
    plan_jobs,
    sigterm_as_interrupt,
)

__all__ = [
    "COMMANDS",
    "Command",
    "Console",
    "Progress",
    "add_config_options",
    "add_device",
    "add_inputs",
    "add_layout",
    "add_method_options",
    "add_output",
    "add_overwrite",
    "add_quiet",
    "add_required_config",
    "add_subtype",
    "add_threads",
    "add_write_layout",
    "apply_threads",
    "arg",
    "build_parser",
    "cli",
    "config_from_args",
    "default_threads",
    "main",
    "plan_jobs",
    "register",
]

_startup.release()  # melinvert/__init__ guarded Ctrl-C while the command line loaded

#: Every subcommand, in ``--help`` order. Add one line here to add a command.
COMMANDS: list[Command] = [
    presets.COMMAND,
    mel.COMMAND,
    inspect.COMMAND,
    score.COMMAND,
    invert.COMMAND,
    roundtrip.COMMAND,
    demo.COMMAND,
    methods.COMMAND,
    bench.COMMAND,
    train.COMMAND,
]


def register(command: Command) -> None:
    """Add (or replace, by name) a subcommand; for commands defined in other modules."""
    for i, c in enumerate(COMMANDS):
        if c.name == command.name:
            COMMANDS[i] = command
            return
    COMMANDS.append(command)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, built from :data:`COMMANDS`."""
    examples = [ex for c in COMMANDS for ex in c.examples[:1]]
    parser = Parser(
        prog=PROG,
        description="Turn mel spectrograms of any convention back into audio.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n"
        "'melinvert COMMAND --help' explains each command. Exit status: 0 ok; 2 bad input or usage "
        "(nothing ran, or the only input file failed); 3 some files of a run over several failed (each "
        "named at the end, the others done); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM); 1 "
        "internal error (MELINVERT_DEBUG=1 shows the traceback).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for c in COMMANDS:
        p = sub.add_parser(
            c.name,
            help=c.help,
            description=c.description or c.help,
            epilog=("examples:\n" + "\n".join(f"  {e}" for e in c.examples)) if c.examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for option in c.options:
            option(p)
        add_quiet(p)  # every command takes --quiet
        p.set_defaults(_run=c.run)
    return parser


@contextlib.contextmanager
def _notices_as_notes(ui: Console) -> Iterator[None]:
    """Show the library's :class:`~melinvert.errors.MelinvertNotice` warnings as note lines."""
    from ..errors import MelinvertNotice

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, MelinvertNotice):
            ui.note(str(message))
        else:
            previous(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", MelinvertNotice)
        warnings.showwarning = show
        yield


def cli() -> int:
    """The ``melinvert`` command (console script, ``python -m melinvert``): :func:`main`, then
    Ctrl-C ignored while the process exits. The work is done and written by then; an interrupt
    that came in the interpreter's shutdown would otherwise end the process by SIGINT, without
    a word, and report a finished command as interrupted."""
    status = main()
    with contextlib.suppress(ValueError):  # (not the main thread)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    ui = Console()
    try:
        with sigterm_as_interrupt(), _notices_as_notes(ui):
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as e:  # --help and --version
                return e.code if isinstance(e.code, int) else 0
            if getattr(args, "_run", None) is None:
                ui.error(f"no command given; try '{PROG} --help'")
                return 2
            if "threads" not in vars(args):
                return int(args._run(args, ui) or 0)
            with command_threads(args):  # a command that computes: torch's threads, set once here
                return int(args._run(args, ui) or 0)
    except MelinvertError as e:
        ui.error(e.cli_message)  # the CLI's spelling (--overwrite, not overwrite=True)
        return 2
    except UsageError as e:
        ui.error(str(e))
        return 2
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        ui.error("terminated" if terminated else "interrupted")
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. 'melinvert presets | head'
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        return 0
    except Exception as e:
        if os.environ.get("MELINVERT_DEBUG"):
            traceback.print_exc()
        detail = flat(str(e))[:200] or "(no message)"
        ui.error(
            f"internal error: {type(e).__name__}: {detail} -- this is a bug in melinvert; please report it "
            f"to {ISSUES_URL} (set MELINVERT_DEBUG=1 to see the traceback)"
        )
        return 1

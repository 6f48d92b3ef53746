"""The one exception type melinvert raises for bad input.

Every problem a user can cause (a bad parameter, a malformed file, NaN in a mel, an output that
already exists) is reported as :class:`MelinvertError` with a one-line message that names the
value at fault. The command-line interface prints that line and exits with status 2; anything
else escaping is a bug in melinvert.
"""

from __future__ import annotations

import math
import warnings


class MelinvertError(ValueError):
    """Bad input or usage: the message is one line that names the problem.

    Parameters
    ----------
    message : str
        The line, in the Python API's spelling (``overwrite=True``).
    cli : str, optional
        The same line in the command line's spelling (``--overwrite``), when it differs: the
        ``melinvert`` command prints :attr:`cli_message`.
    """

    def __init__(self, message: str = "", *, cli: str | None = None) -> None:
        super().__init__(message)
        self.cli = cli

    @property
    def cli_message(self) -> str:
        """The message as the command line shows it."""
        return self.cli if self.cli is not None else str(self)


class MelinvertNotice(UserWarning):
    """Something the user should know that is not an error (values clamped, audio resampled).

    Library calls issue it through :mod:`warnings` (:func:`notify`); the command line prints
    each as one ``melinvert: note: ...`` line.
    """


def notify(message: str) -> None:
    """Issue a :class:`MelinvertNotice` (one line), attributed to the caller outside melinvert."""
    import sys

    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("melinvert"):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, MelinvertNotice, stacklevel=level)


def check(condition: bool, message: str) -> None:
    """Raise :class:`MelinvertError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise MelinvertError(message)


def check_positive(name: str, value: object) -> None:
    """Raise :class:`MelinvertError` unless ``value`` is a finite real number > 0 (a bool is not)."""
    check(
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0,
        f"{name}={value!r} must be a number > 0",
    )

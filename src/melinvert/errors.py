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
    """Bad input or usage: the message is one line that names the problem."""


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

"""The one exception type melinvert raises for bad input.

Every problem a user can cause (a bad parameter, a malformed file, NaN in a mel, an output that
already exists) is reported as :class:`MelinvertError` with a one-line message that names the
value at fault. The command-line interface prints that line and exits with status 2; anything
else escaping is a bug in melinvert.
"""

from __future__ import annotations

import math


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

"""``python -m melinvert``: the same as the ``melinvert`` command."""

from .commands import cli

if __name__ == "__main__":
    raise SystemExit(cli())

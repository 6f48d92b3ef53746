"""``python -m melinvert``: the same as the ``melinvert`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""User-facing errors: one line that names the file, line or field, a non-zero exit and no traceback."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user (a file, a flag, a model dir); the CLI prints it as one line and exits 2."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + " ".join(str(message).split()))


def warn(message: str) -> None:
    """A warning the user must not miss (a result that is probably wrong, a check overridden): one line on
    stderr, after any progress bar."""
    import sys

    print(f"babelscope: WARNING: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

"""Kill -9 at a chosen point of a babelscope run (tests only).

    python tests/killpoint.py fsync:N -- ARGS...     SIGKILL at the N-th fsync: a temporary file being written
                                                     (an atomic write, a checkpoint, a shard) is first cut to half
                                                     its length, as a kill in the middle of writing leaves it
    python tests/killpoint.py replace:N -- ARGS...   SIGKILL instead of the N-th rename (a complete temporary file
                                                     is left behind, never renamed into place)

Every atomic write in babelscope ends in fsync + rename, so these are the points where a kill does the most
harm. `counting()` records the same calls of an uninterrupted in-process run, so a test can pick one of them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install(spec: str) -> None:
    """Patch os.fsync / os.replace so that the process kills itself at the point `spec` names."""
    kind, _, n = spec.partition(":")
    target, seen = int(n), [0]
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        seen[0] += 1
        if seen[0] == target:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if ".tmp" in path:
                os.truncate(path, os.path.getsize(path) // 2)
            _die()
        return real_fsync(fd)

    def replace(src, dst, **kw):
        seen[0] += 1
        if seen[0] == target:
            _die()
        return real_replace(src, dst, **kw)

    if kind == "fsync":
        os.fsync = fsync
    elif kind == "replace":
        os.replace = replace
    else:
        raise SystemExit(f"unknown kill point {spec!r}")


@contextlib.contextmanager
def counting() -> Iterator[dict[str, list[str]]]:
    """Record the path of every fsync and the destination of every rename while the block runs."""
    calls: dict[str, list[str]] = {"fsync": [], "replace": []}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls["fsync"].append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        calls["replace"].append(str(dst))
        return real_replace(src, dst, **kw)

    os.fsync, os.replace = fsync, replace
    try:
        yield calls
    finally:
        os.fsync, os.replace = real_fsync, real_replace


if __name__ == "__main__":
    spec, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: killpoint.py SPEC -- ARGS..."
    install(spec)
    from babelscope.cli import main

    main(args)

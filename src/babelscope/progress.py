"""Progress bars with rate and ETA for every long loop (tqdm on stderr)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             unit_scale: bool = False, initial: float = 0, disable: bool = False, **kwargs: Any) -> tqdm:
    """A tqdm bar; set BABELSCOPE_NO_PROGRESS=1 to silence it (tests do)."""
    disable = disable or os.environ.get("BABELSCOPE_NO_PROGRESS", "") not in ("", "0")
    return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial,
                dynamic_ncols=True, mininterval=0.5, disable=disable, **kwargs)


def close_all() -> None:
    """Close every live bar, so that what is printed next (an error line) starts on a line of its own."""
    for bar in list(getattr(tqdm, "_instances", [])):
        with contextlib.suppress(Exception):
            bar.close()

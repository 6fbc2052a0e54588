"""Writing an export directory whole: staged beside its destination, then swapped in by a rename."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from babelscope.errors import UserError


@contextmanager
def staged(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces `out` (refused if `out` has files, unless
    `overwrite`). A failure leaves `out` as it was."""
    from babelscope.files import check_output

    out = check_output(out, directory=True, what="export")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError("directory is not empty; choose another --out or pass --overwrite", path=out)
    tmp, old = out.with_name(f".{out.name}.tmp"), out.with_name(f".{out.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Writing: outputs checked before a job starts, atomic writes, strict JSON, append-only JSONL journals, and the
sweep of what a killed job left behind. Long jobs never leave a half-written file, and every file gets the
permissions a plain `open` would give it (the umask's), so outputs can be served and shared."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from babelscope.errors import UserError


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return mask


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def check_output(path: str | Path, *, directory: bool, need: int = 0, what: str = "output") -> Path:
    """Fail now, with one line, if `path` cannot take this job's output: it exists as the wrong kind (a file where
    a directory goes, or the reverse), it lies under a file, its directory is not writable, or the disk has less
    than `need` bytes free. Creates nothing."""
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            raise UserError(f"{what} directory exists as a file; remove it or choose another", path=path)
        if not directory and path.is_dir():
            raise UserError(f"{what} file exists as a directory; give a file name", path=path)
    base = path if directory and path.is_dir() else path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise UserError(f"cannot create the {what}: {base} is a file, not a directory", path=path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the {what}: {base} is read-only (permission denied)", path=path)
    if path.is_file() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write the {what}: the file is read-only (permission denied)", path=path)
    if need > 0:
        free = shutil.disk_usage(base).free
        if free < need:
            raise UserError(f"not enough disk space for the {what}: about {_size(need)} needed, {_size(free)} free",
                            path=path)
    return path


def sweep_stale(directory: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Remove what killed writes left in `directory`: atomic writes' `.NAME.*.tmp` files and checkpoints'
    `.NAME.tmp`/`.NAME.old` directories, for every NAME (or only those in `names`). Returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    wanted = None if names is None else set(names)
    removed = []
    for p in directory.iterdir():
        m = _STALE.match(p.name)
        if m is None or (wanted is not None and m.group(1) not in wanted):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


_STALE = re.compile(r"^\.(.+?)(?:\.[A-Za-z0-9_]{8}\.tmp|\.tmp|\.old)$")


@contextlib.contextmanager
def removed_on_error(path: str | Path, keep: Callable[[], bool] = lambda: False) -> Iterator[Path]:
    """Around the start of a job that creates `path`: if the job fails on bad input (a UserError) while nothing in
    `path` is worth resuming (`keep()` is false), remove `path` again, so the failure leaves nothing behind."""
    path = Path(path)
    existed = path.exists()
    try:
        yield path
    except UserError:
        if not existed and not keep():
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path` (with the
    permissions a plain `open` would have given it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def strict(obj: Any) -> Any:
    """`obj` with every NaN and infinity replaced by None: JSON has no NaN, and strict parsers (a browser's
    JSON.parse, jq) reject the bare `NaN` Python writes."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """Strict JSON text (NaN and infinity as null) of `obj`; what babelscope writes to every JSON file."""
    return json.dumps(strict(obj), ensure_ascii=False, allow_nan=False, default=str, **kwargs)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, dumps(obj, indent=2) + "\n")


def write_table_atomic(stem: str | Path, table: Any, formats: tuple[str, ...] = ("parquet", "csv")) -> None:
    """A pyarrow table as `stem.parquet` and `stem.csv` (or the given formats), each written atomically."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    stem = Path(stem)
    for ext in formats:
        with atomic_path(stem.with_name(f"{stem.name}.{ext}")) as tmp:
            (pq.write_table if ext == "parquet" else pacsv.write_csv)(table, tmp)


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(dumps(record) + "\n")
            n += 1
    return n


class Journal:
    """An append-only JSONL file that a killed job can reopen and continue.

    On open, a torn last line (the process died mid-write) is cut off, and `key(record)` of every complete
    line is collected in `done`, so the caller skips work already written and never writes a key twice.
    """

    def __init__(self, path: str | Path, key: Callable[[dict], Any] = lambda r: r["id"], fsync_every: int = 64):
        self.path = Path(path)
        self.key = key
        self.fsync_every = fsync_every
        self.done: set = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_and_scan()
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._pending = 0

    def _repair_and_scan(self) -> None:
        if not self.path.exists():
            return
        good_end = 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError:
                    break
                self.done.add(self.key(record))
                good_end += len(raw)
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)

    def __contains__(self, key: Any) -> bool:
        return key in self.done

    def __len__(self) -> int:
        return len(self.done)

    def append(self, record: dict) -> bool:
        """Write `record` unless its key is already there; returns whether it was written."""
        k = self.key(record)
        if k in self.done:
            return False
        self._f.write(dumps(record) + "\n")
        self._f.flush()
        self.done.add(k)
        self._pending += 1
        if self._pending >= self.fsync_every:
            os.fsync(self._f.fileno())
            self._pending = 0
        return True

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Atomic writes and append-only JSONL journals: long jobs never leave a half-written file behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


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
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
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
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
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

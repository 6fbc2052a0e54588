"""Reading what a user hands babelscope: every input file goes through here.

A file in the wrong encoding (UTF-16, Latin-1), compressed or binary data under a text name, a truncated
Parquet, safetensors, torch or NumPy file, a directory where a file belongs (or the reverse): each becomes one
UserError naming the file, with the byte offset or line where it went wrong and, when the first bytes say what
the file is, what to do about it. Never a traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babelscope.errors import UserError

HEAD = 8192  # bytes looked at to tell what a file is

# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"), (codecs.BOM_UTF16_LE, "UTF-16 LE"),
         (codecs.BOM_UTF16_BE, "UTF-16 BE"))
_MAGIC = ((b"\x1f\x8b", "gzip-compressed data: decompress it or name it .gz"),
          (b"PAR1", "a Parquet file: name it .parquet"),
          (b"PK\x03\x04", "a zip archive (or a torch/NumPy file): extract the text first"),
          (b"BZh", "bzip2-compressed data: decompress it first"),
          (b"\xfd7zXZ\x00", "xz-compressed data: decompress it first"),
          (b"\x28\xb5\x2f\xfd", "zstd-compressed data: decompress it first"),
          (b"\x93NUMPY", "a NumPy array file, not text"))


def diagnose(head: bytes) -> str | None:
    """What a file's first bytes say it is when it is not UTF-8 text (None when they look like text)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{name} text (byte-order mark): convert it to UTF-8, e.g. iconv -f {name.split()[0]} -t UTF-8"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    nul = head.find(b"\x00")
    if nul >= 0:
        even, odd = head[0:64:2], head[1:64:2]
        if odd and odd.count(0) > 0.8 * len(odd) and even.count(0) < 0.2 * len(even):
            return "UTF-16 LE text without a byte-order mark: convert it to UTF-8"
        if even and even.count(0) > 0.8 * len(even) and odd.count(0) < 0.2 * len(odd):
            return "UTF-16 BE text without a byte-order mark: convert it to UTF-8"
        return f"binary data (a NUL byte at byte {nul}), not text"
    return None


def check_file(path: str | Path, what: str = "file") -> Path:
    """`path` as a Path if it is a readable file; otherwise a UserError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise UserError(f"no such {what}: {parent} is a file, not a directory", path=path)
        raise UserError(f"no such {what}", path=path)
    if path.is_dir():
        raise UserError(f"is a directory; expected a {what}", path=path)
    if not os.access(path, os.R_OK):
        raise UserError(f"{what} is not readable (permission denied)", path=path)
    return path


def check_dir(path: str | Path, what: str = "directory") -> Path:
    """`path` as a Path if it is a directory; otherwise a UserError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} does not exist", path=path)
    if not path.is_dir():
        raise UserError(f"is a file; expected a {what}", path=path)
    return path


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _head(path: Path) -> bytes:
    try:
        with _open_binary(path) as f:
            return f.read(HEAD)
    except (OSError, EOFError, zlib.error) as e:  # a .gz that is not gzip, or is cut short
        what = "truncated or corrupt gzip data" if path.suffix.lower() == ".gz" else "not readable"
        raise UserError(f"{what} ({e})", path=path) from None


def check_text(path: str | Path) -> Path:
    """A readable file whose first bytes look like UTF-8 text (a UTF-8 byte-order mark is allowed)."""
    path = check_file(path)
    head = _head(path)
    if head.startswith(codecs.BOM_UTF8):
        head = head[3:]
    problem = diagnose(head)
    if problem is not None:
        raise UserError(f"not UTF-8 text: {problem}", path=path)
    return path


def decode_error(path: str | Path, e: UnicodeDecodeError, offset: int) -> UserError:
    """The UserError for bytes that are not UTF-8, at file byte `offset` (+ the error's own position)."""
    at = offset + e.start
    byte = e.object[e.start:e.start + 1].hex()
    problem = None
    with contextlib.suppress(UserError):
        problem = diagnose(_head(Path(path)))
    hint = f"; the file looks like {problem}" if problem else " (Latin-1 or another legacy encoding? convert it to UTF-8)"
    return UserError(f"not UTF-8 text: byte 0x{byte} at byte offset {at}{hint}", path=path)


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line of a UTF-8 text file (`.gz` read through gzip); a bad byte anywhere is
    a UserError with its byte offset."""
    path = check_text(path)
    offset = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                start = 3 if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
                try:
                    line = raw[start:].decode("utf-8")
                except UnicodeDecodeError as e:
                    raise decode_error(path, e, offset + start) from None
                offset += len(raw)
                yield lineno, line
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"truncated or corrupt gzip data after byte {offset} ({e})", path=path) from None


def iter_text(path: str | Path, chunk_chars: int = 1 << 20) -> Iterator[str]:
    """The text of a UTF-8 file in chunks (`.gz` read through gzip), for files read without line structure."""
    path = check_text(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        with _open_binary(path) as f:
            if f.read(3) != codecs.BOM_UTF8:
                f.seek(0)
            else:
                offset = 3
            while True:
                raw = f.read(chunk_chars)
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise decode_error(path, e, offset - pending) from None
                offset += len(raw)
                if text:
                    yield text
                if not raw:
                    return
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise UserError(f"truncated or corrupt gzip data after byte {offset} ({e})", path=path) from None


def read_text(path: str | Path, what: str = "file") -> str:
    """A whole (small) UTF-8 text file."""
    path = check_file(path, what)
    data = path.read_bytes()
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    problem = diagnose(data[:HEAD])
    if problem is not None:
        raise UserError(f"not UTF-8 text: {problem}", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise decode_error(path, e, 0) from None


def read_json(path: str | Path, what: str = "JSON file", *, expect: type | None = dict) -> Any:
    """A JSON file (an object unless `expect` says otherwise); empty, invalid or ill-typed is a UserError."""
    text = read_text(path, what)
    if not text.strip():
        raise UserError(f"empty {what}", path=path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})", path=path) from None
    if expect is not None and not isinstance(value, expect):
        raise UserError(f"expected a JSON {'object' if expect is dict else expect.__name__}, got "
                        f"{type(value).__name__}", path=path)
    return value


def field(obj: dict, key: str, kind: type | tuple[type, ...], path: str | Path) -> Any:
    """`obj[key]`, which must exist and have type `kind` (the numbers of a JSON file: int is not bool)."""
    if key not in obj:
        raise UserError(f"missing field '{key}'", path=path)
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise UserError(f"field '{key}' should be {names}, got {type(value).__name__}", path=path)
    return value


def load_torch(path: str | Path, what: str = "checkpoint") -> Any:
    """A file written by `torch.save` (ours: optimizer and RNG states, so not weights-only)."""
    import torch

    path = check_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated zip, a bad pickle, random bytes: many types
        raise UserError(f"truncated or corrupt {what} ({type(e).__name__}); delete it to start this stage over",
                        path=path) from None


def load_safetensors(path: str | Path) -> dict:
    """The tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    path = check_file(path, "weights file")
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # SafetensorError, OSError, a header that is not JSON
        raise UserError(f"truncated or corrupt safetensors file ({type(e).__name__}: {e})", path=path) from None


def read_parquet(path: str | Path, columns: list[str] | None = None) -> Any:
    """A Parquet file as a pyarrow Table (only `columns` when given)."""
    import pyarrow.parquet as pq

    path = check_file(path, "Parquet file")
    try:
        table = pq.read_table(path, columns=columns)
    except Exception as e:  # ArrowInvalid, OSError, KeyError for a missing column: many types
        raise UserError(f"not a readable Parquet file ({type(e).__name__}: {e})", path=path) from None
    return table


def parquet_file(path: str | Path) -> Any:
    """A pyarrow ParquetFile (streamed by row groups)."""
    import pyarrow.parquet as pq

    path = check_file(path, "Parquet file")
    try:
        return pq.ParquetFile(path)
    except Exception as e:
        raise UserError(f"not a readable Parquet file ({type(e).__name__}: {e})", path=path) from None


def load_npy(path: str | Path, mmap_mode: str | None = None) -> Any:
    """A NumPy `.npy` array (or an `.npz` archive, read eagerly)."""
    import numpy as np

    path = check_file(path, "NumPy file")
    try:
        if path.suffix == ".npz":
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as e:
        raise UserError(f"not a readable NumPy file ({type(e).__name__}: {e})", path=path) from None


def check_torch_file(path: str | Path, what: str = "checkpoint") -> Path:
    """A cheap look at a `torch.save` file (its zip directory, at the end of the file) without unpickling it, so a
    truncated checkpoint fails before a long job loads everything else."""
    import zipfile

    path = check_file(path, what)
    try:
        with zipfile.ZipFile(path) as z:
            z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"truncated or corrupt {what} ({e}); delete it to start this stage over", path=path) from None
    return path

"""Streaming corpus readers: JSONL (text + metadata), TinyStories `.txt` with `<|endoftext|>`, and Parquet.

Every reader yields plain dicts with a `text` field and whatever metadata the file carries (`lang`, `id`, ...).
Nothing reads a whole file into memory; a bad record raises a UserError naming the file and line (or row).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from babelscope.errors import UserError
from babelscope.inputs import check_file, check_text, iter_lines, iter_text, parquet_file

EOT = "<|endoftext|>"
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".txt": "txt", ".parquet": "parquet"}


def corpus_format(path: str | Path) -> str:
    """The reader for a path by suffix (`.gz` allowed for text formats)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise UserError(f"unknown corpus format; expected one of {', '.join(sorted(FORMATS))} (optionally .gz)",
                        path=path)
    return fmt


def _check_text(record: dict, text_field: str, path: Path, line: int) -> dict:
    text = record.get(text_field)
    if not isinstance(text, str):
        hint = " (this looks like TinyStories JSON: pass --text-field story)" if "story" in record else ""
        what = "missing" if text is None else f"a {type(text).__name__}, not a string"
        raise UserError(f"field '{text_field}' is {what}{hint}", path=path, line=line)
    if text_field != "text":
        record = {**record, "text": text}
        del record[text_field]
    return record


def read_jsonl(path: str | Path, text_field: str = "text") -> Iterator[dict]:
    path = Path(path)
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"not valid JSON ({e.msg} at column {e.colno})", path=path, line=lineno) from None
        if not isinstance(record, dict):
            raise UserError(f"expected a JSON object, got {type(record).__name__}", path=path, line=lineno)
        yield _check_text(record, text_field, path, lineno)


def read_txt(path: str | Path, chunk_chars: int = 1 << 20) -> Iterator[dict]:
    """TinyStories-style text: stories separated by `<|endoftext|>`; `id` is the story's index in the file."""
    path = Path(path)
    index = 0
    buf = ""
    for chunk in itertools.chain(iter_text(path, chunk_chars), [""]):
        buf += chunk
        parts = buf.split(EOT)
        # The last part may continue in the next chunk (or be cut inside a delimiter); keep it.
        buf = parts.pop() if chunk else ""
        for part in parts:
            text = part.strip()
            if text:
                yield {"id": f"{path.stem}-{index}", "text": text}
                index += 1


def read_parquet(path: str | Path, text_field: str = "text", batch_rows: int = 4096) -> Iterator[dict]:
    path = Path(path)
    pf = parquet_file(path)
    if text_field not in pf.schema_arrow.names:
        raise UserError(f"no column '{text_field}' (columns: {', '.join(pf.schema_arrow.names)})", path=path)
    row = 0
    try:
        batches = iter(pf.iter_batches(batch_size=batch_rows))
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            for record in batch.to_pylist():
                row += 1
                yield _check_text(record, text_field, Path(f"{path} row"), row)
    except (OSError, ValueError) as e:  # a row group cut short (pyarrow's ArrowInvalid is a ValueError)
        raise UserError(f"truncated or corrupt Parquet data after row {row} ({e})", path=path) from None


def read_corpus(path: str | Path, text_field: str = "text") -> Iterator[dict]:
    """Stream the records of one corpus file."""
    path = Path(path)
    if path.is_dir():
        raise UserError("is a directory; pass the corpus files themselves", path=path)
    check_file(path)
    fmt = corpus_format(path)
    if fmt == "jsonl":
        return read_jsonl(path, text_field)
    if fmt == "txt":
        return read_txt(path)
    return read_parquet(path, text_field)


def check_corpus(paths: Iterable[str | Path], text_field: str = "text", *, require_nonempty: bool = True
                 ) -> list[Path]:
    """Fail now, before any work, on a missing, binary, misnamed or unreadable corpus file, an unknown format,
    a first record that is not valid, or (with `require_nonempty`) no record at all; returns the paths."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("no corpus files given")
    for p in paths:
        if p.is_dir():
            raise UserError("is a directory; pass the corpus files themselves", path=p)
        check_file(p)
        if corpus_format(p) != "parquet":
            check_text(p)
    found = False
    for p in paths:
        for _ in read_corpus(p, text_field):
            found = True
            break
    if not found and require_nonempty:
        raise UserError("corpus is empty (no records with text)", path=", ".join(map(str, paths)))
    return paths


def iter_corpus(paths: Iterable[str | Path], text_field: str = "text", *,
                require_nonempty: bool = True) -> Iterator[dict]:
    """Stream the records of several files in order; an empty corpus is an error, not a silent no-op.

    The files are checked when this is called (`check_corpus`), not when the first record is asked for, so a
    command that takes the stream fails on a bad file before it loads a model."""
    paths = check_corpus(paths, text_field, require_nonempty=require_nonempty)
    return _records(paths, text_field, require_nonempty)


def _records(paths: list[Path], text_field: str, require_nonempty: bool) -> Iterator[dict]:
    n = 0
    for p in paths:
        for record in read_corpus(p, text_field):
            n += 1
            yield record
    if n == 0 and require_nonempty:
        raise UserError("corpus is empty (no records with text)", path=", ".join(map(str, paths)))

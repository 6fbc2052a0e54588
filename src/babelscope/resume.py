"""The one guard a resumed job passes: it must run with the settings and the inputs it was started with.

A job saves `record(settings, inputs)` where it keeps its state; a resume calls `check(saved, record(...))`.
Settings compare as JSON values. Inputs (corpus files, model and SAE directories) compare by content, not by how
the path was spelled: each is a fingerprint of its size and a hash of its first and last MiB (a directory: of
its files), so `--data c.jsonl` resumes with `--data /abs/c.jsonl`, and a file edited since is caught without
reading all of a large corpus.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from babelscope.errors import UserError

EDGE = 1 << 20  # bytes hashed at each end of a file


def _file_digest(path: Path, h: Any) -> int:
    size = path.stat().st_size
    with open(path, "rb") as f:
        h.update(f.read(EDGE))
        if size > 2 * EDGE:
            f.seek(size - EDGE)
            h.update(f.read(EDGE))
        elif size > EDGE:
            h.update(f.read())
    h.update(str(size).encode())
    return size


def fingerprint(path: str | Path) -> dict[str, Any]:
    """{path, size, sha256} of a file, or of a directory's files (all levels; hidden ones, such as what a killed
    write left, skipped); a path that does not exist gets size -1 (a resume then fails only if it existed)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        size = _file_digest(p, h)
    elif p.is_dir():
        size = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p)
            if any(part.startswith(".") for part in rel.parts):
                continue
            h.update(str(rel).encode() + b"\0")
            size += _file_digest(f, h)
    else:
        return {"path": str(p.absolute()), "size": -1, "sha256": ""}
    return {"path": str(p.resolve()), "size": size, "sha256": h.hexdigest()}


def _is_fingerprint(x: Any) -> bool:
    return isinstance(x, dict) and set(x) == {"path", "size", "sha256"}


def identify(value: Any) -> Any:
    """A path (or a list of paths, or None) as fingerprints."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [fingerprint(v) for v in value]
    return fingerprint(value)


def record(settings: Mapping[str, Any], inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a job saves to be resumed later: its settings as JSON values and its inputs as fingerprints."""
    return {"settings": json.loads(json.dumps(dict(settings), default=str)),
            "inputs": {k: identify(v) for k, v in (inputs or {}).items()}}


def differences(saved: Any, now: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    """(key, saved, now) for every leaf that differs; two fingerprints are equal when their content is."""
    if _is_fingerprint(saved) and _is_fingerprint(now):
        same = saved["size"] == now["size"] and saved["sha256"] == now["sha256"]
        return [] if same else [(where, saved["path"], now["path"])]
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now), key=str):
            out += differences(saved.get(k), now.get(k), f"{where}.{k}" if where else str(k))
        return out
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now):
        out = []
        for i, (a, b) in enumerate(zip(saved, now, strict=True)):
            out += differences(a, b, f"{where}[{i}]")
        return out
    return [] if _json(saved) == _json(now) else [(where, saved, now)]


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def same(saved: Any, now: Any) -> bool:
    return not differences(saved, now)


def check(saved: Any, now: Any, *, where: str | Path, what: str = "this output",
          hint: str = "resume with the same settings and inputs, or write to a new output") -> None:
    """A UserError naming the first setting or input that differs from what `what` was started with."""
    diff = differences(saved, now)
    if not diff:
        return
    key, a, b = diff[0]
    key = key.removeprefix("settings.").removeprefix("inputs.")
    if isinstance(a, str) and isinstance(b, str) and a == b:
        detail = f"{key}: {a} has changed since"
    else:
        detail = f"{key} was {_short(a)}, now {_short(b)}"
    more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
    raise UserError(f"{what} was started with other settings or inputs: {detail}{more}; {hint}", path=where)


def _short(x: Any) -> str:
    text = json.dumps(x, default=str, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."

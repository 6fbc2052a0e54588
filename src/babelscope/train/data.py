"""Packed token shards (tokenised once, memory-mapped, reused by later runs) and the window sampler.

A corpus becomes one flat array per split: every document as `BOS tokens EOS`, concatenated. Training reads
non-overlapping windows of `context + 1` tokens in a seeded random order; the sampler's state (epoch,
cursor) is part of every checkpoint, so a resumed run reads exactly the windows it would have read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from babelscope.errors import UserError
from babelscope.files import dumps
from babelscope.progress import progress

FORMAT_VERSION = 1


def _fingerprint(paths: Iterable[Path]) -> list[dict]:
    return [{"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in paths]


def shard_key(tokenizer_dir: Path, data: list[Path], val_data: list[Path], val_every: int, text_field: str,
              min_val_tokens: int = 0) -> str:
    """A cache key that changes whenever the tokenizer, the files or the split would change the tokens."""
    tok_hash = hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    spec = {"v": FORMAT_VERSION, "tok": tok_hash, "data": _fingerprint(data), "val": _fingerprint(val_data),
            "val_every": val_every, "text_field": text_field}
    if min_val_tokens and not val_data:
        spec["min_val_tokens"] = min_val_tokens
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Shards:
    dir: Path
    train: np.ndarray  # memory-mapped token ids
    val: np.ndarray
    meta: dict


def _write_split(path: Path, chunks: list[np.ndarray], dtype: np.dtype) -> int:
    n = sum(len(c) for c in chunks)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n,))
    i = 0
    for c in chunks:
        arr[i:i + len(c)] = c
        i += len(c)
    arr.flush()
    del arr
    return n


def build_shards(tokenizer_dir: str | Path, data: list[str | Path], cache_dir: str | Path, *,
                 val_data: list[str | Path] | None = None, val_fraction: float = 0.01,
                 text_field: str = "text", batch_docs: int = 1000, min_val_tokens: int = 0) -> Shards:
    """Tokenise the corpus into `cache_dir/<key>/{train,val}.npy` once; later calls just open them.

    Without `val_data`, every `round(1/val_fraction)`-th document goes to validation. A corpus too small for
    that to give `min_val_tokens` (one context window; a 40-story native set for continual pre-training) holds
    out its last documents instead, as few as give that many tokens; `meta["val_note"]` says so.
    """
    from babelscope.corpus import iter_corpus
    from babelscope.tokenizer import encode_batch, load_tokenizer

    tokenizer_dir = Path(tokenizer_dir)
    data_paths = [Path(p) for p in data]
    val_paths = [Path(p) for p in (val_data or [])]
    for p in data_paths + val_paths:
        if not p.is_file():
            raise UserError("no such corpus file", path=p)
    val_every = 0 if val_paths else max(2, round(1 / val_fraction)) if val_fraction > 0 else 0
    key = shard_key(tokenizer_dir, data_paths, val_paths, val_every, text_field, min_val_tokens)
    out = Path(cache_dir) / key
    if (out / "meta.json").exists():
        return open_shards(out)

    tok = load_tokenizer(tokenizer_dir)
    dtype = np.dtype(np.uint16 if len(tok) <= 65535 else np.uint32)
    bos, eos = tok.bos_token_id, tok.eos_token_id
    splits: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    docs = {"train": 0, "val": 0}

    def encode(texts: list[str], split: str) -> None:
        for ids in encode_batch(tok, texts):
            splits[split].append(np.asarray([bos, *ids, eos], dtype=dtype))
            docs[split] += 1

    def stream(paths: list[Path], split_of) -> None:
        buf: dict[str, list[str]] = {"train": [], "val": []}
        bar = progress(desc="tokenising", unit="doc")
        for i, record in enumerate(iter_corpus(paths, text_field)):
            split = split_of(i)
            buf[split].append(record["text"])
            if len(buf[split]) >= batch_docs:
                encode(buf[split], split)
                buf[split] = []
            bar.update()
        bar.close()
        for split, texts in buf.items():
            if texts:
                encode(texts, split)

    if data_paths:  # none: only held-out files to score (train --also-eval)
        stream(data_paths, lambda i: "val" if val_every and i % val_every == val_every - 1 else "train")
    if val_paths:
        stream(val_paths, lambda i: "val")
    note = None
    if val_every and sum(map(len, splits["val"])) < min_val_tokens:
        held = _hold_out(splits, docs, min_val_tokens)
        if held:
            note = (f"a corpus of {docs['train'] + docs['val']} documents is too small to validate on every "
                    f"{val_every}th one (the split needs one context window, {min_val_tokens} tokens): its last "
                    f"{held} documents are held out for validation instead; pass --val-data to validate on others")
    if not splits["val"]:
        raise UserError("no validation documents: give --val-data or a corpus with at least "
                        f"{val_every or 2} documents", path=data_paths[0])
    tmp = out.with_name(f".{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"key": key, "tokenizer": str(tokenizer_dir.resolve()), "vocab": len(tok), "dtype": dtype.name,
            "data": [str(p) for p in data_paths], "val_data": [str(p) for p in val_paths],
            "val_every": val_every, "docs": docs, "val_note": note,
            "tokens": {s: _write_split(tmp / f"{s}.npy", c, dtype) for s, c in splits.items()}}
    (tmp / "meta.json").write_text(dumps(meta, indent=2))
    try:
        os.replace(tmp, out)
    except OSError:  # another process (a DDP rank) finished the same shards first
        shutil.rmtree(tmp, ignore_errors=True)
    return open_shards(out)


def _hold_out(splits: dict[str, list], docs: dict[str, int], tokens: int) -> int:
    """Move the last training documents to validation until it holds `tokens` tokens, keeping one document to
    train on; returns how many moved."""
    moved = 0
    while sum(map(len, splits["val"])) < tokens and len(splits["train"]) > 1:
        splits["val"].insert(0, splits["train"].pop())
        docs["train"] -= 1
        docs["val"] += 1
        moved += 1
    return moved


def open_shards(path: str | Path) -> Shards:
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    return Shards(path, np.load(path / "train.npy", mmap_mode="r"), np.load(path / "val.npy", mmap_mode="r"), meta)


class WindowSampler:
    """Seeded random order over the windows of one split, crossing epochs; its state is (epoch, cursor)."""

    def __init__(self, n_windows: int, seed: int, epoch: int = 0, cursor: int = 0):
        if n_windows < 1:
            raise UserError("the training split is shorter than one context window; use more data or a "
                            "smaller --context")
        self.n, self.seed, self.epoch, self.cursor = n_windows, seed, epoch, cursor
        self._order = self._permutation(epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)

    def take(self, count: int) -> np.ndarray:
        out = []
        while count > 0:
            if self.cursor == self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            step = min(count, self.n - self.cursor)
            out.append(self._order[self.cursor:self.cursor + step])
            self.cursor += step
            count -= step
        return np.concatenate(out)

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}


def windows(tokens: np.ndarray, context: int) -> int:
    """Number of non-overlapping windows of `context + 1` tokens (input plus shifted target)."""
    return max(0, (len(tokens) - 1) // context)


def batch(tokens: np.ndarray, idx: np.ndarray, context: int):
    """Inputs and next-token targets [len(idx), context] for the given window indices."""
    import torch

    rows = np.stack([np.asarray(tokens[i * context:i * context + context + 1], dtype=np.int64) for i in idx])
    t = torch.from_numpy(rows)
    return t[:, :-1], t[:, 1:]

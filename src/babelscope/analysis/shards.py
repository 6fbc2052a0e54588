"""The sparse activation cache of the feature pass: one `.npz` shard per block of documents.

A shard holds, for its contexts (each a model input, BOS first, cut at the token budget): the token ids
(`tokens`), which positions are real tokens (`valid`), the context boundaries (`ctx_offsets`), and per context
the document index, its token offset in the document, its label and record id; and for every active
(token, feature) pair, in (token, feature) order, the flat token index (`ent_tok`), the feature (`ent_feat`)
and the activation (`ent_val`, float32). Scalars record where the corpus stands after the shard (`docs_end`,
`tokens_end`, `budget_hit`). A shard is written atomically, so its presence means it is complete.
Ground truth (records with storyworld `spans`): per flat token its concept bits (`concepts`, uint8, see
`analysis.groundtruth`) and whether its record was labelled at all (`labelled`); and the active entries of
the random-direction control (`ctl_tok`, `ctl_feat`, `ctl_val`, same layout as the SAE's), empty when no
record of the shard was labelled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.errors import UserError
from babelscope.files import atomic_path
from babelscope.progress import progress

STATE = "state.json"
SHARD = "shard-{:06d}.npz"


def global_token(shard: int, flat: np.ndarray) -> np.ndarray:
    """A corpus-ordered id of a token: shard number in the high 32 bits, flat index in the shard below."""
    return (np.int64(shard) << np.int64(32)) | np.asarray(flat, dtype=np.int64)


def shard_paths(cache: Path) -> list[Path]:
    """The complete shards of a cache, in order (a gap means the cache was tampered with)."""
    paths = sorted(cache.glob("shard-*.npz"))
    for i, p in enumerate(paths):
        if p.name != SHARD.format(i):
            raise UserError(f"feature cache has a gap before {p.name}; delete the cache directory to start over",
                            path=cache)
    return paths


def shard_meta(path: Path) -> dict:
    """Where the corpus stands after a shard (read without loading its arrays)."""
    with np.load(path) as z:
        return {k: z[k].item() for k in ("docs_end", "tokens_end", "budget_hit", "n_features")}


class ShardWriter:
    """Accumulates the contexts and active entries of one shard."""

    def __init__(self) -> None:
        self.tokens: list[np.ndarray] = []
        self.valid: list[np.ndarray] = []
        self.ctx_doc: list[int] = []
        self.ctx_start: list[int] = []
        self.ctx_label: list[str] = []
        self.ctx_record: list[str] = []
        self.ent_tok: list[np.ndarray] = []
        self.ent_feat: list[np.ndarray] = []
        self.ent_val: list[np.ndarray] = []
        self.concepts: list[np.ndarray] = []
        self.labelled: list[np.ndarray] = []
        self.ctl_tok: list[np.ndarray] = []
        self.ctl_feat: list[np.ndarray] = []
        self.ctl_val: list[np.ndarray] = []
        self.n_flat = 0

    def add_context(self, ids: np.ndarray, valid: np.ndarray, doc: int, start: int, label: str, record: str,
                    concepts: np.ndarray | None = None) -> int:
        """Append a context (its model input and real-token mask, and the concept bits of its tokens when its
        record has ground truth); returns its first flat index."""
        offset = self.n_flat
        self.concepts.append(np.zeros(len(ids), np.uint8) if concepts is None else concepts.astype(np.uint8))
        self.labelled.append(valid.astype(bool) & (concepts is not None))
        self.tokens.append(ids.astype(np.int32))
        self.valid.append(valid.astype(bool))
        self.ctx_doc.append(doc)
        self.ctx_start.append(start)
        self.ctx_label.append(label)
        self.ctx_record.append(record)
        self.n_flat += len(ids)
        return offset

    def save(self, path: Path, **scalars: Any) -> None:
        """Write the shard atomically, with `scalars` (docs_end, tokens_end, budget_hit, ...) beside the arrays."""
        cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
        lengths = np.array([len(t) for t in self.tokens], dtype=np.int64)
        arrays = {
            "tokens": cat(self.tokens, np.int32), "valid": cat(self.valid, bool),
            "ctx_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "ctx_doc": np.array(self.ctx_doc, dtype=np.int64), "ctx_start": np.array(self.ctx_start, dtype=np.int64),
            "ctx_label": np.array(self.ctx_label, dtype=str), "ctx_record": np.array(self.ctx_record, dtype=str),
            "ent_tok": cat(self.ent_tok, np.int32), "ent_feat": cat(self.ent_feat, np.int32),
            "ent_val": cat(self.ent_val, np.float32),
            "concepts": cat(self.concepts, np.uint8), "labelled": cat(self.labelled, bool),
            "ctl_tok": cat(self.ctl_tok, np.int32), "ctl_feat": cat(self.ctl_feat, np.int32),
            "ctl_val": cat(self.ctl_val, np.float32),
        }
        arrays.update({k: np.array(v) for k, v in scalars.items()})
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)


@dataclass
class Shard:
    """One shard in memory: its contexts and its active entries."""

    index: int
    tokens: np.ndarray
    valid: np.ndarray
    ctx_offsets: np.ndarray
    ctx_doc: np.ndarray
    ctx_start: np.ndarray
    ctx_label: np.ndarray
    ctx_record: np.ndarray
    tok: np.ndarray  # entries, sorted by (token, feature)
    feat: np.ndarray
    val: np.ndarray
    concepts: np.ndarray | None = None  # ground-truth bits per flat token (None: a shard without them)
    labelled: np.ndarray | None = None
    ctl_tok: np.ndarray | None = None  # the random-direction control's entries (None: a shard without them)
    ctl_feat: np.ndarray | None = None
    ctl_val: np.ndarray | None = None

    @property
    def ctx_of(self) -> np.ndarray:
        """The context of each entry."""
        return np.searchsorted(self.ctx_offsets, self.tok, side="right") - 1


def load_shard(path: Path, index: int) -> Shard:
    """A shard's arrays, entries with a positive activation only, in (token, feature) order."""
    with np.load(path) as z:
        tok, feat, val = z["ent_tok"], z["ent_feat"].astype(np.int64), z["ent_val"]
        keep = val > 0
        tok, feat, val = tok[keep].astype(np.int64), feat[keep], val[keep]
        if len(tok) > 1 and not (np.diff(tok * (int(feat.max()) + 1) + feat) > 0).all():
            order = np.lexsort((feat, tok))  # written in (token, feature) order already; sort only if not
            tok, feat, val = tok[order], feat[order], val[order]
        truth = (z["concepts"], z["labelled"]) if "labelled" in z.files else (None, None)
        control = (z["ctl_tok"].astype(np.int64), z["ctl_feat"].astype(np.int64), z["ctl_val"]) \
            if "ctl_tok" in z.files and len(z["ctl_tok"]) else (None, None, None)
        return Shard(index, z["tokens"], z["valid"], z["ctx_offsets"], z["ctx_doc"], z["ctx_start"],
                     z["ctx_label"], z["ctx_record"], tok, feat, val, *truth, *control)


def iter_shards(paths: list[Path], desc: str) -> Iterator[Shard]:
    """Load the shards one at a time (with a progress bar)."""
    for i, path in enumerate(progress(paths, desc=desc, unit="shard")):
        yield load_shard(path, i)

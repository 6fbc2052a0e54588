"""Where an SAE's training activations come from: model or disk cache, position selection, shuffling buffer.

    source (ModelSource: corpus -> model -> selected positions | CacheSource: .npy shards | TensorSource)
      -> raw activation chunks [m, d] in stream order (one context after another)
      -> ShuffleBuffer: a large pool, shuffled across contexts; when half of it has been served it is refilled
         and shuffled again, so a batch always draws from many documents
      -> batches [B, d] of RAW activations (the trainer applies the SAE's input normalisation)

Every source and the buffer have `state_dict()` / `load_state_dict()`, so a killed run resumes at the exact
activation where it stopped. Positions: "all", "first:N" (the first N tokens after BOS) or "random:N"
(N random tokens per context); the BOS position is always dropped.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from babelscope.errors import UserError
from babelscope.files import atomic_path, write_json_atomic

CACHE_META = "cache.json"


@dataclass(frozen=True)
class Positions:
    mode: str  # "all" | "first" | "random"
    n: int | None = None

    def __str__(self) -> str:
        return self.mode if self.n is None else f"{self.mode}:{self.n}"


def parse_positions(spec: str) -> Positions:
    """'all', 'first:64' or 'random:128' -> Positions; anything else is a UserError."""
    mode, _, n = spec.strip().partition(":")
    if mode == "all" and not n:
        return Positions("all")
    if mode in ("first", "random") and n.isdigit() and int(n) > 0:
        return Positions(mode, int(n))
    raise UserError(f"bad positions '{spec}'; expected all, first:N or random:N (N > 0)")


def select_positions(valid: torch.Tensor, positions: Positions, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """A [B, T] bool mask of the positions to keep among `valid` ones (BOS is already invalid)."""
    if positions.mode == "all":
        return valid.clone()
    if positions.mode == "first":
        return valid & (valid.long().cumsum(1) <= positions.n)
    scores = torch.rand(valid.shape, generator=generator)
    scores[~valid] = -1.0
    n = min(positions.n, valid.shape[1])
    keep = torch.zeros_like(valid)
    keep.scatter_(1, scores.topk(n, dim=1).indices, True)
    return keep & valid


def scale_for(x: torch.Tensor) -> float:
    """The fixed factor c with mean ||c x|| = sqrt(d): normalize='scale' (Anthropic's recipe)."""
    return math.sqrt(x.shape[-1]) / float(x.float().norm(dim=-1).mean().clamp_min(1e-12))


# ---- sources -----------------------------------------------------------------------------------------
class TensorSource:
    """Activations already in memory [N, d], served in order in chunks (tests, benchmarks)."""

    def __init__(self, acts: torch.Tensor, chunk: int = 8192):
        self.acts, self.chunk, self.pos = acts, chunk, 0
        self.d_in = acts.shape[1]

    def __iter__(self) -> Iterator[torch.Tensor]:
        while self.pos < len(self.acts):
            out = self.acts[self.pos:self.pos + self.chunk]
            self.pos += len(out)
            yield out

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos = state["pos"]


class CorpusTooSmall(UserError):
    """The corpus gave `have` activations where `need` were asked for (a caller may say which of its own
    settings to change)."""

    def __init__(self, message: str, have: int, need: int):
        super().__init__(message)
        self.have, self.need = have, need


class SharedPass:
    """One pass of corpus records through the model feeding several hook points: each forward (stopped after the
    deepest hook still needed) yields one chunk per hook, read through `view(hook)`.

    A view is a source like any other (iterable, `state_dict`), so each hook keeps its own shuffling buffer and
    checkpoint. Views may stand at different places in the stream (a resumed hook whose checkpoint is older than
    another's): the pass restarts at the earliest place an open view needs, and hands each batch only to the views
    standing right before it. Under DDP, rank r of w takes records r, r+w, r+2w, ...; positions count this rank's
    records. `forwards` counts the model's forward passes (benchmarks and tests read it).
    """

    def __init__(self, model, tokenizer, records: Callable[[], Iterable[dict]], hooks: Sequence[str], *,
                 positions: Positions = Positions("all"), context_size: int = 128, batch_size: int = 32,
                 seed: int = 0, rank: int = 0, world: int = 1, device: str | torch.device | None = None,
                 autocast: Callable[[], Any] | None = None):
        from babelscope.models.hooks import hook_width

        if not hooks:
            raise UserError("no hook points to read")
        self.model, self.tokenizer, self.records = model, tokenizer, records
        self.positions, self.batch_size, self.seed = positions, batch_size, seed
        self.rank, self.world, self.device, self.autocast = rank, world, device, autocast
        # Causal model: tokens after the last one kept cannot change it, so never run them.
        self.max_tokens = min(context_size, positions.n + 1) if positions.mode == "first" else context_size
        self.views = {h: HookView(self, h, hook_width(model, h)) for h in dict.fromkeys(hooks)}  # checks names
        self.forwards = 0
        self._it: Iterator[tuple[int, dict[str, torch.Tensor]]] | None = None
        self._pos = 0  # records of this rank consumed by the running iterator
        self._hooks: tuple[str, ...] = ()  # the hooks the running iterator captures
        self._end: int | None = None  # where the stream ended, once it has

    def view(self, hook: str) -> HookView:
        return self.views[hook]

    def _batches(self, start: int, hooks: tuple[str, ...]) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        from babelscope.models.contexts import iter_contexts

        mine = itertools.islice(self.records(), self.rank, None, self.world)
        mine = itertools.islice(mine, start, None)
        consumed = start
        for batch in iter_contexts(self.model, self.tokenizer, mine, list(hooks), max_tokens=self.max_tokens,
                                   batch_size=self.batch_size, drop_bos=True, autocast=self.autocast):
            self.forwards += 1
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 7919 + consumed)
            keep = select_positions(batch.valid, self.positions, g)
            consumed += len(batch.records)
            out = {}
            for h in hooks:
                acts = batch.acts[h]
                rows = acts[keep.to(acts.device)]
                out[h] = rows.to(self.device or rows.device, torch.float32)  # one copy: gather, cast, move
            yield consumed, out

    def advance(self, view: HookView) -> bool:
        """Run forwards until `view` has a chunk queued; False when the stream has ended for it."""
        while not view.queue:
            if view.closed or (self._end is not None and view.need >= self._end):
                return False
            open_views = [v for v in self.views.values() if not v.closed]
            start = min(v.need for v in open_views)
            hooks = tuple(v.hook for v in open_views)
            if self._it is None or self._pos != start or not set(hooks) <= set(self._hooks):
                self._it, self._pos, self._hooks = self._batches(start, hooks), start, hooks
            try:
                after, chunks = next(self._it)
            except StopIteration:
                self._end, self._it = self._pos, None  # the stream ends here, whoever asks
                continue
            for v in open_views:
                if v.need == self._pos:
                    v.queue.append((after, chunks[v.hook]))
            self._pos = after
        return True


class HookView:
    """One hook's activations from a SharedPass, in stream order: an iterable source with a resumable position.

    With `loop_from` set (epochs over a small corpus, as SAELens does), the view starts over at that record when
    the corpus runs out; `passes` counts the completed passes, `pass_rows` the activations of one.
    """

    def __init__(self, shared: SharedPass, hook: str, d_in: int):
        self.shared, self.hook, self.d_in = shared, hook, d_in
        self.consumed = 0  # records of this rank whose activations this view has handed out (in this pass)
        self.queue: collections.deque[tuple[int, torch.Tensor]] = collections.deque()
        self.closed = False
        self.loop_from: int | None = None
        self.passes = 0  # passes completed (from `loop_from` to the end of the corpus)
        self.pass_rows = 0  # activations of the training part of one pass (known once one is complete)
        self._rows = 0  # activations handed out in this pass since `loop_from`

    @property
    def need(self) -> int:
        """Where in the record stream the next chunk this view lacks starts."""
        return self.queue[-1][0] if self.queue else self.consumed

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            while self.queue or self.shared.advance(self):
                after, acts = self.queue.popleft()
                self.consumed = after
                if len(acts):
                    self._rows += len(acts)
                    yield acts
            if self.closed or self.loop_from is None or self._rows == 0:
                return
            self.passes, self.pass_rows, self._rows, self.consumed = self.passes + 1, self._rows, 0, self.loop_from

    def close(self) -> None:
        """This hook needs no more activations: the pass stops computing and queueing them."""
        self.closed = True
        self.queue.clear()

    def repeat_from_here(self) -> None:
        """Start every later pass at the current record (the ones before it, e.g. the validation set, are
        never read again)."""
        self.loop_from, self._rows = self.consumed, 0

    def state_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "loop_from": self.loop_from, "passes": self.passes,
                "pass_rows": self.pass_rows, "rows": self._rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.consumed = state["consumed"]
        self.loop_from = state.get("loop_from", self.loop_from)
        self.passes, self.pass_rows, self._rows = (state.get(k, 0) for k in ("passes", "pass_rows", "rows"))
        while self.queue and self.queue[0][0] <= self.consumed:
            self.queue.popleft()


def ModelSource(model, tokenizer, records: Callable[[], Iterable[dict]], hook: str, **kwargs: Any) -> HookView:
    """Corpus records through the model; yields the selected positions' activations at `hook`, per batch
    (a SharedPass with one hook; keyword arguments as SharedPass)."""
    return SharedPass(model, tokenizer, records, [hook], **kwargs).view(hook)


class CacheSource:
    """Rows [start, stop) of a disk cache written by `build_cache`, read shard by shard (memory-mapped); with
    `loop`, over and over (epochs), `passes` counting the completed ones."""

    def __init__(self, cache_dir: str | Path, start: int = 0, stop: int | None = None, chunk: int = 16384,
                 device: str | torch.device | None = None, loop: bool = False):
        self.dir = Path(cache_dir)
        self.meta = read_cache_meta(self.dir)
        self.d_in = self.meta["d_in"]
        total = self.meta["rows"]
        self.start, self.stop = start, total if stop is None else min(stop, total)
        self.chunk, self.device, self.pos = chunk, device, start
        self.loop, self.passes = loop, 0
        self.pass_rows = max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[torch.Tensor]:
        while True:
            yield from self._one_pass()
            if not self.loop or self.stop <= self.start:
                return
            self.passes, self.pos = self.passes + 1, self.start

    def _one_pass(self) -> Iterator[torch.Tensor]:
        offset = 0
        for shard in self.meta["shards"]:
            lo, hi = offset, offset + shard["rows"]
            offset = hi
            if hi <= self.pos or lo >= self.stop:
                continue
            arr = np.load(self.dir / shard["file"], mmap_mode="r")
            while self.pos < min(hi, self.stop):
                end = min(self.pos + self.chunk, hi, self.stop)
                out = torch.from_numpy(np.array(arr[self.pos - lo:end - lo], dtype=np.float32))
                self.pos = end
                yield out if self.device is None else out.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos, "passes": self.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pos, self.passes = state["pos"], state.get("passes", 0)


def take(source: Iterable[torch.Tensor], n: int) -> torch.Tensor:
    """The next n activations of a source as one tensor (fewer if it runs out)."""
    parts, got = [], 0
    for chunk in source:
        parts.append(chunk[: n - got])
        got += len(parts[-1])
        if got >= n:
            break
    if not parts:
        return torch.empty(0, getattr(source, "d_in", 0))
    return torch.cat(parts)


# ---- disk cache -------------------------------------------------------------------------------------
def read_cache_meta(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / CACHE_META
    if not path.is_file():
        raise UserError(f"not an activation cache (no {CACHE_META})", path=cache_dir)
    from babelscope.inputs import read_json

    meta = read_json(path, CACHE_META)
    if not meta.get("complete"):
        raise UserError("activation cache is incomplete (its writer was killed); delete it and rerun",
                        path=cache_dir)
    return meta


def existing_cache(cache_dir: str | Path, rows: int, describe: dict[str, Any],
                   min_rows: int | None = None) -> dict[str, Any] | None:
    """The meta of a complete cache in `cache_dir` made with the same `describe` and at least `rows` rows (or, for
    one that holds a whole small corpus, `min_rows`); None when there is none; a different or smaller one is an
    error."""
    from babelscope.resume import check

    if not (Path(cache_dir) / CACHE_META).is_file():
        return None
    meta = read_cache_meta(cache_dir)
    check(meta.get("describe"), describe, where=cache_dir, what="this activation cache",
          hint="use another --cache directory")
    if meta["rows"] < (rows if min_rows is None or not meta.get("exhausted") else min_rows):
        raise UserError(f"activation cache holds {meta['rows']} activations but {rows} are needed; "
                        "use another --cache directory", path=cache_dir)
    return meta


class CacheWriter:
    """Writes the first `rows` activations handed to `add` to .npy shards (each atomic); `close` writes
    cache.json last, so a cache without it is incomplete. With `min_rows`, a corpus that ends between the two
    is cached whole (`exhausted`, for training in epochs)."""

    def __init__(self, cache_dir: str | Path, rows: int, describe: dict[str, Any], *, shard_rows: int = 1 << 18,
                 dtype: str = "float32", min_rows: int | None = None):
        self.dir, self.rows, self.describe, self.min_rows = Path(cache_dir), rows, describe, min_rows
        self.shard_rows, self.dtype = shard_rows, dtype
        self.dir.mkdir(parents=True, exist_ok=True)
        self.shards: list[dict[str, Any]] = []
        self.pending: list[torch.Tensor] = []
        self.n_pending = self.written = 0
        self.d_in: int | None = None

    @property
    def full(self) -> bool:
        return self.written + self.n_pending >= self.rows

    def _flush(self, parts: list[torch.Tensor]) -> None:
        block = torch.cat(parts).cpu().numpy().astype(self.dtype)
        name = f"acts-{len(self.shards):05d}.npy"
        with atomic_path(self.dir / name) as tmp, open(tmp, "wb") as f:
            np.save(f, block)
        self.shards.append({"file": name, "rows": len(block)})
        self.written += len(block)

    def add(self, chunk: torch.Tensor) -> bool:
        """Keep what of `chunk` the cache still needs; True once it holds `rows` activations."""
        self.d_in = chunk.shape[1]
        chunk = chunk[: self.rows - self.written - self.n_pending]
        self.pending.append(chunk)
        self.n_pending += len(chunk)
        while self.n_pending >= self.shard_rows:
            block = torch.cat(self.pending)
            self._flush([block[:self.shard_rows]])
            self.pending, self.n_pending = [block[self.shard_rows:]], len(block) - self.shard_rows
        return self.full

    def close(self) -> dict[str, Any]:
        """Write what is pending and cache.json; too few rows is CorpusTooSmall."""
        if self.n_pending:
            self._flush(self.pending)
            self.pending, self.n_pending = [], 0
        need = self.rows if self.min_rows is None else self.min_rows
        if self.written < need:
            raise CorpusTooSmall(f"corpus too small: it gave {self.written} activations, {need} are needed (add "
                                 "documents, lower --tokens/--val-tokens, or select more positions per context)",
                                 self.written, need)
        meta = {"complete": True, "rows": self.written, "d_in": self.d_in, "dtype": self.dtype,
                "shards": self.shards, "describe": self.describe, "exhausted": self.written < self.rows}
        write_json_atomic(self.dir / CACHE_META, meta)
        return meta


def build_cache(source: Iterable[torch.Tensor], cache_dir: str | Path, rows: int, *, describe: dict[str, Any],
                shard_rows: int = 1 << 18, dtype: str = "float32", min_rows: int | None = None) -> dict[str, Any]:
    """Write the first `rows` activations of `source` to .npy shards in `cache_dir` (each atomic), once.

    An existing complete cache with the same `describe` (model, hook, positions, ...) and enough rows is reused;
    a different one is an error. A corpus that gives fewer than `rows` (or, with `min_rows`, fewer than those: the
    cache then holds the whole corpus, `exhausted`, for training in epochs) is an error before any training.
    """
    from babelscope.progress import progress

    meta = existing_cache(cache_dir, rows, describe, min_rows)
    if meta is not None:
        return meta
    writer = CacheWriter(cache_dir, rows, describe, shard_rows=shard_rows, dtype=dtype, min_rows=min_rows)
    bar = progress(total=rows, desc="caching activations", unit="act", unit_scale=True)
    for chunk in source:
        done = writer.add(chunk)
        bar.update(len(chunk))
        if done:
            break
    bar.close()
    return writer.close()


def build_caches(shared: SharedPass, caches: dict[str, str | Path], rows: int, *,
                 describe: dict[str, dict[str, Any]], shard_rows: int = 1 << 18,
                 min_rows: int | None = None) -> dict[str, dict[str, Any]]:
    """One cache per hook of `shared` (hook -> directory), all filled from the same forwards (`min_rows` as in
    `build_cache`); caches already complete are reused and their hooks not computed."""
    from babelscope.progress import progress

    metas = {h: existing_cache(d, rows, describe[h], min_rows) for h, d in caches.items()}
    writers = {h: CacheWriter(caches[h], rows, describe[h], shard_rows=shard_rows, min_rows=min_rows)
               for h in caches if metas[h] is None}
    for h, view in shared.views.items():
        if h not in writers:
            view.close()
    its = {h: iter(shared.view(h)) for h in writers}
    bar = progress(total=rows * len(writers), desc=f"caching activations x{len(writers)}", unit="act",
                   unit_scale=True)
    while its:
        for h in list(its):
            chunk = next(its[h], None)
            if chunk is not None:
                bar.update(len(chunk))
            if chunk is None or writers[h].add(chunk):
                del its[h]
                shared.view(h).close()
    bar.close()
    for h, w in writers.items():
        metas[h] = w.close()
    return metas


# ---- shuffling buffer -------------------------------------------------------------------------------
class ShuffleBuffer:
    """A pool of `size` activations from a source, served in shuffled batches; refilled when half drained.

    Each cycle: fill the pool to `size`, shuffle it, serve its first half as batches, keep the second half and
    top it up from the source. So consecutive batches mix contexts from the last ~size/positions documents.
    """

    def __init__(self, source: Iterable[torch.Tensor], d_in: int, *, size: int, batch_size: int, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if size < 2 * batch_size:
            raise UserError(f"--buffer-size ({size}) must be at least twice --batch-size ({batch_size})")
        self.source, self.size, self.batch_size, self.device = source, size, batch_size, device
        self.pool = torch.empty(0, d_in, device=device)  # rows not yet served
        self.ready = torch.empty(0, d_in, device=device)  # shuffled rows being served
        self.gen = torch.Generator().manual_seed(seed)
        self._it: Iterator[torch.Tensor] | None = None
        self.exhausted = False

    def _fill(self) -> None:
        if self._it is None:
            self._it = iter(self.source)
        parts, have = [self.pool], len(self.pool)
        while have < self.size and not self.exhausted:
            try:
                chunk = next(self._it).to(self.device)
            except StopIteration:
                self.exhausted = True
                break
            parts.append(chunk)
            have += len(chunk)
        self.pool = torch.cat(parts) if len(parts) > 1 else self.pool

    def _cycle(self) -> None:
        self._fill()
        perm = torch.randperm(len(self.pool), generator=self.gen).to(self.pool.device)
        serve = len(self.pool) if self.exhausted else len(self.pool) // 2
        serve -= serve % self.batch_size if not self.exhausted else 0
        self.ready = torch.cat([self.ready, self.pool[perm[:serve]]])
        self.pool = self.pool[perm[serve:]]

    def next_batch(self) -> torch.Tensor | None:
        """The next [batch_size, d] batch, or None when the source and the pool are used up."""
        while len(self.ready) < self.batch_size:
            if self.exhausted and not len(self.pool):
                return None
            self._cycle()
            if self.exhausted and len(self.ready) < self.batch_size and not len(self.pool):
                return None
        out, self.ready = self.ready[: self.batch_size], self.ready[self.batch_size:]
        return out

    def __iter__(self) -> Iterator[torch.Tensor]:
        while (b := self.next_batch()) is not None:
            yield b

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.cpu(), "ready": self.ready.cpu(), "gen": self.gen.get_state(),
                "exhausted": self.exhausted, "source": self.source.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool = state["pool"].to(self.device)
        self.ready = state["ready"].to(self.device)
        self.gen.set_state(state["gen"])
        self.exhausted = state["exhausted"]
        self.source.load_state_dict(state["source"])
        self._it = None

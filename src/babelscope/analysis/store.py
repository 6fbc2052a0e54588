"""The feature store: one streaming pass of a corpus through model + SAE, then exact per-feature statistics.

Why two stages. The 70% threshold of the "activating tokens", the 50 histogram bins and the 10 activation
intervals are all defined relative to each feature's maximum, which is known only once the whole corpus has
been seen. Approximating (a running max, re-binning) would make counts depend on corpus order. So:

1. The LM + SAE pass (the only one) streams documents through `iter_contexts`, encodes the hook activations
   and writes what the SAE found as compact sparse shards `cache/shard-NNNNNN.npz`: per context its token ids
   (the model input, BOS included), which positions are real tokens, the document index, id and label; per
   active (token, feature) pair the feature id and activation (float32; an activation <= 0 counts as
   inactive, as after a ReLU). A shard holds a fixed number of documents and is written atomically, so a
   killed run restarts after its last complete shard, skipping the documents before it without running the
   model on them; shard settings are checked against `cache/state.json` so a resumed run cannot mix settings.
   The token budget is counted in real tokens (BOS and padding excluded), in corpus order, so it cuts at the
   same token whether or not the run was interrupted.
2. Three cheap passes over the shards, each holding one shard at a time:
   A. per feature: active count, sum, max, runs of consecutive active tokens (spans), and the top-k
      activations (ties go to the earlier token);
   B. with the final max: the 50-bin histogram of non-zero activations over [0, max], the occurrences at
      >= 0.7 x max counted per (feature, token id, document label) and their spans, and for each of 10
      equal-width activation intervals of (0, max] a few examples chosen by the smallest hash of (token
      position, feature), a reproducible uniform sample that needs no second look;
   C. the +-`window` token windows (with every token's activation) of the chosen examples, and the full
      contexts they come from (for the dashboard's loss effect).
   Memory: features x (top_k + intervals x per_interval) for the example buffers, plus one entry per distinct
   (feature, token, label) at >= 0.7 max for the attribution counts; never proportional to the corpus. The
   aggregation is recomputed from the shards, so a rerun can never double count.

Output tables (the interface later analyses read; `FeatureStore` reads them back):
    meta.json            model, sae, hook, data, tokens, n_docs, n_contexts, n_features, label_field, labels,
                         threshold_frac, tokenizer, vocab_size, context, top_k, window, hist_bins, ...
    features.parquet     feature, n_active, frequency (n_active / tokens), max_act, mean_act (over active
                         tokens), n_above (>= threshold_frac x max_act), n_spans, span_tokens (mean span length
                         = span_tokens / n_spans), n_spans_above, span_tokens_above (spans of the >= 70% tokens),
                         hist (50 counts; bin i covers [i, i+1) x hist_max / 50, the last bin closed), hist_max
    attributions.parquet feature, token_id, label, count (occurrences with activation >= threshold_frac x max)
    examples.parquet     feature, kind ('top' | 'interval'), interval (-1 for top; 0 = lowest), rank, doc,
                         record_id, label, tokens, acts, pos (index of the example token in `tokens`), act,
                         ctx, ctx_pos (the example token's position in the context), window_start
    contexts.parquet     ctx, doc, record_id, label, start (token offset in the document), tokens (model input)
    detectors.parquet    feature, concept, control, n_pos, auroc, precision, recall, n_above, pos_above: how well
                         each feature's activation detects each concept storyworld planted (names by origin,
                         quote ends, dialogue tags by order; `analysis.groundtruth`), and the same for shuffled
                         labels and for random directions as sparse as the features; written only when the
                         records carry `spans`
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.analysis.aggregate import (  # noqa: F401 (re-exported: the store's public API)
    Ragged,
    aggregate,
    group_rank,
    hist_bin,
    is_above,
    sample_priority,
    span_starts,
)
from babelscope.analysis.shards import SHARD, STATE, ShardWriter, shard_meta, shard_paths
from babelscope.errors import UserError
from babelscope.files import atomic_path, write_json_atomic
from babelscope.progress import progress
from babelscope.settings import Settings, opt

CACHE = "cache"
TABLES = ("features", "attributions", "examples", "contexts")
DETECTORS = "detectors"  # only for corpora whose records carry ground-truth spans (storyworld)
CONTROL = "control.npz"  # the random directions of the detectors' control, in the cache


@dataclass(kw_only=True)
class StoreConfig(Settings):
    """What the feature pass collects; every field is recorded in meta.json."""

    tokens: int = opt(1_000_000, "real tokens to read (BOS and padding excluded), e.g. 10M", gt=0)
    context: int = opt(128, "tokens per context, BOS included", gt=1)
    split_long: bool = opt(False, "cut long documents into several contexts instead of keeping the first one")
    batch_size: int = opt(32, "contexts per forward pass", gt=0)
    docs_per_shard: int = opt(512, "documents per resumable shard", gt=0)
    label_field: str = opt("lang", "document field counted per attribution")
    threshold_frac: float = opt(0.7, "activating occurrences: activation >= this x the feature's max", gt=0.0,
                                le=1.0)
    hist_bins: int = opt(50, "bins of the activation histogram", gt=0)
    top_k: int = opt(20, "top activating examples kept per feature", gt=0)
    n_intervals: int = opt(10, "equal-width activation intervals", flag="--intervals", gt=0)
    per_interval: int = opt(5, "examples per interval", ge=0)
    window: int = opt(5, "tokens shown on each side of an example", ge=0)
    encode_chunk: int = opt(4096, "tokens per SAE encode call (bounds the dense [tokens, d_sae] buffer)", gt=0)

    def shard_params(self) -> dict:
        """The settings a cache's shards depend on (a resumed run must match them)."""
        return {k: getattr(self, k) for k in ("tokens", "context", "split_long", "docs_per_shard", "label_field")}


@dataclass(kw_only=True)
class FeaturesConfig(StoreConfig):
    """`babelscope analyze features`: one pass of model + SAE over a corpus into a feature store."""

    model: str = opt(help="HF model directory")
    sae: str = opt(help="SAE directory (cfg.json + sae_weights.safetensors)")
    data: list[str] = opt(help="corpus files (JSONL, .txt, Parquet)")
    out: str = opt(help="feature store directory")
    force: bool = opt(False, "use the SAE with a model other than the one it was trained on")
    text_field: str = opt("text", "the record field holding the text")
    keep_cache: bool = opt(False, "keep the sparse shards after the tables are written")
    precision: str = opt("auto", "the model's forward: bf16 autocast (auto: on a GPU that has bf16) or fp32; the "
                                 "SAE encodes in fp32", choices=("auto", "fp32", "bf16"))
    device: str = opt("auto", "cpu, cuda or auto")


def _encode_sparse(sae, x, chunk: int):
    """(row, feature, value) of the positive SAE activations of raw hook activations x [n, d_in], chunk by
    chunk; a TopK SAE's sparse path (`encode_topk`) is used when it has one, so no dense [n, d_sae] is kept."""
    import torch

    rows, feats, vals = [], [], []
    W = getattr(sae, "W_enc", None)
    if isinstance(W, torch.Tensor):
        x = x.to(device=W.device, dtype=W.dtype)
    topk = getattr(sae.cfg, "arch", None) == "topk" and callable(getattr(sae, "encode_topk", None))
    chunk = max(1, min(chunk, (1 << 26) // max(int(sae.cfg.d_sae), 1)))  # dense buffer <= 64M activations
    for start in range(0, x.shape[0], chunk):
        with torch.no_grad():
            if topk:
                v, i = sae.encode_topk(x[start:start + chunk])
                keep = v > 0
                r = torch.arange(v.shape[0], device=v.device)[:, None].expand_as(v)[keep]
                c, val = i[keep], v[keep]
                order = torch.argsort(r * int(sae.cfg.d_sae) + c)  # (token, feature) order, as the dense path
                r, c, val = r[order], c[order], val[order]
            else:
                f = sae.encode(x[start:start + chunk])
                r, c = torch.nonzero(f > 0, as_tuple=True)
                val = f[r, c]
        rows.append((r + start).cpu())
        feats.append(c.cpu())
        vals.append(val.float().cpu())
    if not rows:
        return (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
    return (torch.cat(rows).numpy().astype(np.int64), torch.cat(feats).numpy().astype(np.int32),
            torch.cat(vals).numpy().astype(np.float32))


def write_shards(model, tokenizer, sae, hook: str, records: Iterable[dict], cache: str | Path, cfg: StoreConfig,
                 *, source: dict | None = None, autocast=None) -> dict:
    """Stage 1: stream `records` through model + SAE into sparse shards under `cache`, resuming if possible;
    `autocast` wraps the model's forwards (`models.contexts.lm_autocast`).

    Returns the cache state: {"params", "complete", "n_shards", "tokens", "docs"}.
    """
    import torch

    from babelscope.analysis.groundtruth import CONCEPTS, RandomDirections, doc_concepts
    from babelscope.models.contexts import iter_contexts

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    params = {**cfg.shard_params(), **(source or {}), "hook": hook, "concepts": list(CONCEPTS)}
    bos = 1 if tokenizer.bos_token_id is not None else 0  # tokenize_contexts prepends BOS to every document
    state_path = cache / STATE
    if state_path.exists():
        from babelscope.inputs import read_json
        from babelscope.resume import check

        state = read_json(state_path, STATE)
        check(state.get("params"), params, where=cache, what="the feature cache",
              hint="use the same settings to resume, or delete the cache directory to start over")
    else:
        state = {"params": params, "complete": False}
        write_json_atomic(state_path, state)
    paths = shard_paths(cache)
    last = shard_meta(paths[-1]) if paths else {"docs_end": 0, "tokens_end": 0, "budget_hit": False}
    if state.get("complete") or last["budget_hit"]:
        state.update(complete=True, n_shards=len(paths), tokens=last["tokens_end"], docs=last["docs_end"])
        write_json_atomic(state_path, state)
        return state
    n_features = int(sae.cfg.d_sae)
    control_path = cache / CONTROL
    control = RandomDirections.load(control_path) if control_path.exists() else None
    docs_done, tokens_done = int(last["docs_end"]), int(last["tokens_end"])
    it = iter(records)
    for _ in itertools.islice(it, docs_done):  # skip documents whose shards are complete (no model run)
        pass
    bar = progress(total=cfg.tokens, initial=tokens_done, desc="feature pass", unit="tok", unit_scale=True)
    shard = len(paths)
    budget_hit = exhausted = False
    try:
        while not (budget_hit or exhausted):
            batch_docs = []
            for doc, record in zip(itertools.count(docs_done), itertools.islice(it, cfg.docs_per_shard),
                                   strict=False):
                batch_docs.append({**record, "_doc": doc})
            exhausted = len(batch_docs) < cfg.docs_per_shard
            if not batch_docs:
                break
            truth = dict(zip((d["_doc"] for d in batch_docs), doc_concepts(tokenizer, batch_docs), strict=True))
            labelled = any(bits is not None for bits in truth.values())
            writer = ShardWriter()
            for batch in iter_contexts(model, tokenizer, batch_docs, [hook], max_tokens=cfg.context,
                                       batch_size=cfg.batch_size, split_long=cfg.split_long, autocast=autocast):
                rows, cols, flats = [], [], []
                for i, meta in enumerate(batch.records):
                    valid = batch.valid[i].numpy()
                    pos = np.flatnonzero(valid)
                    if len(pos) >= cfg.tokens - tokens_done:
                        budget_hit = True
                        pos = pos[:cfg.tokens - tokens_done]
                    if len(pos) == 0:
                        continue
                    length = int(pos[-1]) + 1  # right padding: the context ends at its last real token
                    label, record_id = meta.get(cfg.label_field), meta.get("id")
                    offset = writer.add_context(batch.input_ids[i, :length].numpy(), valid[:length],
                                                int(meta["_doc"]), int(batch.starts[i]),
                                                "" if label is None else str(label),
                                                "" if record_id is None else str(record_id),
                                                _context_truth(truth[meta["_doc"]], int(batch.starts[i]) - bos,
                                                              length))
                    rows.append(np.full(len(pos), i))
                    cols.append(pos)
                    flats.append(offset + pos)
                    tokens_done += len(pos)
                    bar.update(len(pos))
                    if budget_hit:
                        break
                if rows:
                    acts = batch.acts[hook]
                    x = acts[torch.as_tensor(np.concatenate(rows), device=acts.device),
                             torch.as_tensor(np.concatenate(cols), device=acts.device)]
                    er, ef, ev = _encode_sparse(sae, x, cfg.encode_chunk)
                    writer.ent_tok.append(np.concatenate(flats)[er])
                    writer.ent_feat.append(ef)
                    writer.ent_val.append(ev)
                    if labelled:  # the random-direction control of the ground-truth detectors
                        if control is None:  # calibrated once, on this first batch, and kept for a resume
                            control = RandomDirections.calibrate(sae, x, len(er) / (len(x) * n_features),
                                                                 n_features)
                            control.save(control_path)
                        cr, cf, cv = control.encode(sae, x, cfg.encode_chunk)
                        writer.ctl_tok.append(np.concatenate(flats)[cr])
                        writer.ctl_feat.append(cf)
                        writer.ctl_val.append(cv)
                if budget_hit:
                    break
            docs_done += len(batch_docs)
            writer.save(cache / SHARD.format(shard), docs_end=docs_done, tokens_end=tokens_done,
                        budget_hit=budget_hit, n_features=n_features, shard=shard)
            shard += 1
    finally:
        bar.close()
    state.update(complete=True, n_shards=shard, tokens=tokens_done, docs=docs_done)
    write_json_atomic(state_path, state)
    return state


def _context_truth(doc_bits: np.ndarray | None, first: int, length: int) -> np.ndarray | None:
    """The concept bits of a context's `length` positions, the first being document token `first` (-1: BOS)."""
    if doc_bits is None:
        return None
    pos = first + np.arange(length)
    inside = (pos >= 0) & (pos < len(doc_bits))
    return np.where(inside, doc_bits[np.clip(pos, 0, max(len(doc_bits) - 1, 0))] if len(doc_bits) else 0, 0)


# ---- writing and reading the tables ---------------------------------------------------------------------------

def _write_parquet(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray) and col.ndim == 2:  # a fixed-length list per row (the histogram)
            flat = pa.array(col.ravel())
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, col.shape[1]).cast(pa.list_(flat.type))
        elif isinstance(col, Ragged):
            arrays[name] = pa.ListArray.from_arrays(pa.array(col.offsets.astype(np.int32)), pa.array(col.values))
        elif isinstance(col, np.ndarray) and col.dtype == object:
            arrays[name] = pa.array(col.tolist(), type=pa.string())
        else:
            arrays[name] = pa.array(col)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(arrays), tmp, row_group_size=65536)


def write_tables(out: str | Path, result: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write the four Parquet tables, then meta.json last (its presence marks a complete store)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        _write_parquet(out / f"{name}.parquet", result[name])
    if result.get("detectors") is not None:
        _write_parquet(out / f"{DETECTORS}.parquet", result["detectors"])
    else:
        (out / f"{DETECTORS}.parquet").unlink(missing_ok=True)  # a stale table of an earlier build
    write_json_atomic(out / "meta.json", meta)


COLUMNS = {
    "features": "feature, n_active, frequency = n_active / tokens, max_act, mean_act (over active tokens), n_above "
                "(>= threshold_frac x max_act), n_spans, span_tokens (mean span = span_tokens / n_spans), "
                "n_spans_above, span_tokens_above, hist (hist_bins counts over [0, hist_max]), hist_max",
    "attributions": "feature, token_id, label, count: occurrences with activation >= threshold_frac x max_act",
    "examples": "feature, kind (top|interval), interval (-1 for top, 0 lowest), rank, doc, record_id, label, tokens, "
                "acts, pos (index of the example token in tokens), act, ctx, ctx_pos, window_start",
    "contexts": "ctx, doc, record_id, label, start (token offset in the document), tokens (model input, BOS first)",
    "detectors": "feature, concept, control (none | shuffled: labels rolled | random: random directions), n_pos, "
                 "auroc, precision, recall (at threshold_frac x max_act), n_above (labelled tokens at threshold), "
                 "pos_above (positives among them); only when the records carry storyworld spans (see detectors "
                 "in meta.json)",
}


def build_store(model_dir: str | Path, sae_dir: str | Path, data: list[str | Path], out: str | Path,
                cfg: StoreConfig, *, text_field: str = "text", device: str = "cpu", keep_cache: bool = False,
                command_args: dict | None = None, force: bool = False, precision: str = "fp32") -> dict[str, Any]:
    """`babelscope analyze features`: the feature pass (resumable) and the tables; returns meta.json's content.
    `precision` "bf16" (or "auto" on a GPU) runs the model under bf16 autocast, recorded in meta.json."""
    from babelscope.corpus import iter_corpus
    from babelscope.files import check_output, removed_on_error, sweep_stale
    from babelscope.manifest import manifest
    from babelscope.models import resolve_device
    from babelscope.models.contexts import lm_autocast, resolve_precision
    from babelscope.resume import record
    from babelscope.sae.pairing import load_pair

    out = check_output(out, directory=True, what="feature store")
    source = {"model": str(Path(model_dir).resolve()), "sae": str(Path(sae_dir).resolve()),
              "data": [str(Path(d).resolve()) for d in data], "text_field": text_field}
    settings = {"text_field": text_field}
    device = resolve_device(device)
    precision = resolve_precision(precision, device)
    if precision != "fp32":  # fp32 stores keep the keys they always had
        source["precision"] = settings["precision"] = precision
    inputs = record(settings, {"model": model_dir, "sae": sae_dir, "data": list(data)})
    done = _finished(out, inputs, cfg)
    if done is not None:  # the same store is already complete: nothing to redo
        return done
    records = iter_corpus(data, text_field)  # a bad corpus fails before the model loads
    model, tokenizer, sae, hook = load_pair(model_dir, sae_dir, device=device, force=force)
    sweep_stale(out)
    sweep_stale(out / CACHE)
    with removed_on_error(out, keep=lambda: bool(shard_paths(out / CACHE))):
        state = write_shards(model, tokenizer, sae, hook, records, out / CACHE, cfg, source=inputs,
                             autocast=lm_autocast(precision, device))
    result = aggregate(out / CACHE, cfg, n_features=int(sae.cfg.d_sae), vocab_size=len(tokenizer))
    meta = {
        **source, "inputs": inputs, "hook": hook, "tokenizer": str(Path(model_dir).resolve()),
        "tokens": result["tokens"], "tokens_requested": cfg.tokens, "budget_reached": state["tokens"] >= cfg.tokens,
        "n_docs": result["n_docs"], "n_contexts": result["n_contexts"], "n_features": int(sae.cfg.d_sae),
        "vocab_size": result["vocab_size"], "label_field": cfg.label_field, "labels": result["labels"],
        "threshold_frac": cfg.threshold_frac, "hist_bins": cfg.hist_bins, "hist_range": "[0, hist_max]",
        "active": "activation > 0", "bos_dropped": True, "config": asdict(cfg), "columns": COLUMNS,
        "detectors": result["detectors_meta"],
        "manifest": manifest("analyze features", command_args or {}),
    }
    write_tables(out, result, meta)
    if not keep_cache:
        shutil.rmtree(out / CACHE, ignore_errors=True)
    return meta


def _finished(out: Path, inputs: dict, cfg: StoreConfig) -> dict | None:
    """meta.json of a complete store built from the same inputs (by content) and settings, else None."""
    from babelscope.inputs import read_json
    from babelscope.resume import same

    path = out / "meta.json"
    if not path.exists() or any(not (out / f"{t}.parquet").exists() for t in TABLES):
        return None
    meta = read_json(path, "meta.json")
    return meta if same(meta.get("inputs"), inputs) and same(meta.get("config"), asdict(cfg)) else None


def _columns(table) -> dict[str, Any]:
    out = {}
    for name in table.column_names:
        col = table.column(name)
        import pyarrow as pa

        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            out[name] = col.to_pylist()
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


class FeatureStore:
    """Read a feature store directory: `meta`, `features()`, `attributions()`, `examples(f)`, `contexts(ids)`."""

    def __init__(self, path: str | Path):
        from babelscope.inputs import check_dir, field, read_json

        self.path = check_dir(path, "feature store directory")
        if not (self.path / "meta.json").exists():
            raise UserError("not a feature store (no meta.json); build one with `babelscope analyze features`",
                            path=self.path)
        self.meta: dict[str, Any] = read_json(self.path / "meta.json", "meta.json")
        field(self.meta, "n_features", int, self.path / "meta.json")
        self._examples: dict[str, Any] | None = None
        self._ex_index: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_features(self) -> int:
        return int(self.meta["n_features"])

    def table(self, name: str) -> Any:
        """The raw pyarrow table `name` (features, attributions, examples, contexts)."""
        from babelscope.inputs import read_parquet

        return read_parquet(self.path / f"{name}.parquet")

    def features(self) -> dict[str, np.ndarray]:
        """Per-feature columns as numpy arrays; `hist` is [F, hist_bins]."""
        cols = _columns(self.table("features"))
        cols["hist"] = np.asarray(cols["hist"], dtype=np.int64).reshape(len(cols["feature"]), -1)
        return cols

    def detectors(self) -> dict[str, np.ndarray] | None:
        """The ground-truth detector table (feature, concept, control, n_pos, auroc, precision, recall, ...), or
        None when the store's records carried no spans."""
        if not (self.path / f"{DETECTORS}.parquet").exists():
            return None
        return _columns(self.table(DETECTORS))

    def attributions(self) -> dict[str, np.ndarray]:
        """feature, token_id, label, count as numpy arrays."""
        return _columns(self.table("attributions"))

    def examples(self, feature: int | None = None, kind: str | None = None) -> list[dict]:
        """Example rows (dicts) of one feature (all when None), optionally only one kind, in stored order."""
        if self._examples is None:
            self._examples = _columns(self.table("examples"))
            feats = np.asarray(self._examples["feature"])
            self._ex_index = (np.searchsorted(feats, np.arange(self.n_features)),
                              np.searchsorted(feats, np.arange(self.n_features), side="right"))
        ex = self._examples
        if feature is None:
            rows = range(len(ex["feature"]))
        else:
            lo, hi = self._ex_index
            rows = range(int(lo[feature]), int(hi[feature])) if 0 <= feature < self.n_features else range(0)
        out = [{k: (v[i].item() if isinstance(v, np.ndarray) and v.dtype != object else v[i])
                for k, v in ex.items()} for i in rows]
        return [r for r in out if kind is None or r["kind"] == kind]

    def contexts(self, ids: Iterable[int] | None = None) -> dict[int, dict]:
        """Contexts by id (all when None): doc, record_id, label, start, tokens."""
        cols = _columns(self.table("contexts"))
        want = None if ids is None else set(int(i) for i in ids)
        out = {}
        for i, c in enumerate(cols["ctx"]):
            if want is None or int(c) in want:
                out[int(c)] = {k: (cols[k][i].item() if isinstance(cols[k], np.ndarray) and cols[k].dtype != object
                                   else cols[k][i]) for k in cols if k != "ctx"}
        return out

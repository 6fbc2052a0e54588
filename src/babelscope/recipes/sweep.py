"""The bilingual sweep (Study B, section 4): for every checkpoint x layer (x model size) train a TopK SAE, build
its feature store, compute the per-feature measures, and draw the study's figures.

Layout of STUDY_DIR:
    data/sae.jsonl, data/eval.jsonl      the documents split once (by document id, so parallel stories stay
                                         together): SAEs train on one part, feature stores read the other
    cells/<run>/<checkpoint>/layer-<L>/  sae/ (the SAE dir), features/ (the store), measures.parquet/.csv,
                                         summary.json (written last: a cell with it is finished and skipped)
    summary.parquet, summary.csv         one row per cell: run, checkpoint, step, tokens, layer, n_layers, ...
    fig_*.png, index.html                the figures and a page that shows them

Cost: one pass of a checkpoint's model trains every layer's SAE (`train_saes`; `hooks_per_pass` splits it when the
layers' buffers do not fit), each cell's feature store reads the model once more. Under torchrun the work units
(a checkpoint's layers) are dealt to the ranks; rank 0 writes the shared files.

SAE settings follow the study, scaled to the model: TopK with k = min(k, d // 4) (k = 32 asks for 32 active
latents; in a 32-dim toy model that would be as many latents as dimensions, so no sparsity at all), n = 16 d
latents, the first 64 tokens of each document with BOS dropped, inputs L2-normalised.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from babelscope.analysis.languages import parse_threshold
from babelscope.errors import UserError
from babelscope.inputs import field, read_json
from babelscope.models.hooks import KINDS, HookPoint
from babelscope.resume import check, identify
from babelscope.settings import SEED, Settings, csv, opt

ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
             "vocab_size")
_STEP = re.compile(r"^step-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    run: str  # the run directory's name
    name: str  # step-N or final
    path: Path
    step: int
    tokens: int


@dataclass(kw_only=True)
class SweepConfig(Settings):
    """Settings of a sweep; all are recorded in STUDY_DIR/sweep.json."""

    layers: str = opt("all", "'all' or a comma-separated list of layer indices")
    k: int = opt(32, "TopK k (capped at d/4 for narrow models)", gt=0)
    expansion: int = opt(16, "latents = expansion x d", gt=0)
    d_sae: int | None = opt(None, "latents of every SAE, whatever the width (Study B: 32768; overrides --expansion)",
                            gt=0)
    sae_tokens: int = opt(2_000_000, "SAE training tokens per cell", gt=0)
    store_tokens: int = opt(500_000, "evaluation tokens per feature store", gt=0)
    context: int = opt(64, "tokens per document read (BOS included, then dropped; the study: 64)", gt=1)
    lrs: tuple[float, ...] = opt((1e-3,), "SAE learning rates; several run as one grid and the lowest validation "
                                          "MSE wins", flag="--lrs", gt=0.0)
    sae_batch: int | None = opt(None, "activations per SAE step (default: sae_tokens / 250, within 128..4096)", gt=0)
    tau: float = opt(0.9, "language threshold", gt=0.5, le=1.0)
    sim_threshold: float | str = opt(0.1, "cosine similarity linking tokens in a semantic cluster: a number (0.1), "
                                          "'study' or 'zmatch' (0.1 x sqrt(3072 / d))", parse=parse_threshold,
                                     ge=-1.0, le=1.0)
    min_activations: int = opt(10, "activating occurrences a feature needs to be classified; below it the feature "
                                   "is 'insufficient' and left out of shares and means", ge=1)
    embeddings: str = opt("final", "embeddings for semantic clusters: final (each run's last checkpoint, as the "
                                   "study used one trained model), model (each checkpoint's own), or an HF model "
                                   "dir / .npy")
    eval_frac: float = opt(0.2, "documents held out for the feature stores", gt=0.0, le=0.9)
    hook_kind: str = opt("resid_post", "the hook site swept at every layer", choices=KINDS)
    hooks_per_pass: int | None = opt(None, "layers whose SAEs train from one pass of the model (default: every "
                                           "layer; lower it when every layer's shuffling buffer does not fit in "
                                           "memory)", gt=0)
    precision: str = opt("auto", "the model's forward: bf16 autocast (auto: on a GPU that has bf16) or fp32; SAE "
                                 "weights stay fp32", choices=("auto", "fp32", "bf16"))
    compile: bool = opt(False, "torch.compile the SAEs' losses (GPU)")
    device: str = opt("cpu", "cpu, cuda or auto (under torchrun, cuda means each rank's own GPU)")
    seed: int = opt(0, "seed of the SAEs", **SEED)
    extra: dict[str, Any] = opt(help="anything else worth recording", default_factory=dict, cli=False)


@dataclass(kw_only=True)
class StudyConfig(SweepConfig):
    """`babelscope study bilingual`: the sweep over the checkpoints of one or more runs."""

    checkpoints: str | None = opt(None, "RUN/checkpoints of the model to sweep (RUN/final is included)")
    runs: list[str] = opt(help="more runs (model sizes): RUN_A,RUN_B", default_factory=list, parse=csv)
    data: list[str] = opt(help="documents with a 'lang' field")
    out: str = opt(help="study directory")


# ---- pure helpers ---------------------------------------------------------------------------------------------

def sae_shape(d_in: int, k: int = 32, expansion: int = 16, d_sae: int | None = None) -> tuple[int, int]:
    """(k, d_sae) for a d_in-dim hook: k capped at d_in // 4 (at least 1), d_sae given or expansion x d_in."""
    return max(1, min(k, d_in // 4)), d_sae or expansion * d_in


def parse_layers(spec: str | Sequence[int], n_layers: int, where: str = "the model") -> list[int]:
    """`all` or a list of layer indices, each checked against 0..n_layers-1."""
    if isinstance(spec, str):
        if spec.strip() == "all":
            return list(range(n_layers))
        try:
            spec = [int(x) for x in spec.split(",") if x.strip()]
        except ValueError:
            raise UserError(f"--layers expects 'all' or a comma-separated list of integers, got '{spec}'") from None
    bad = [x for x in spec if not 0 <= int(x) < n_layers]
    if bad or not spec:
        raise UserError(f"layer {bad[0] if bad else '(none)'} is out of range: {where} has layers 0..{n_layers - 1}")
    return sorted({int(x) for x in spec})


def is_eval_doc(record: dict, index: int, eval_frac: float) -> bool:
    """Whether a document goes to the evaluation part: by a hash of its id (parallel stories share one), else
    of its position, so the split repeats."""
    key = str(record.get("id", index))
    return zlib.crc32(key.encode()) % 10_000 < eval_frac * 10_000


# ---- checkpoints ----------------------------------------------------------------------------------------------

def find_checkpoints(checkpoints_dir: str | Path, *, include_final: bool = True) -> list[Checkpoint]:
    """The checkpoints of one run (`RUN/checkpoints/step-N/` and `RUN/final/`), ordered by training tokens."""
    d = Path(checkpoints_dir)
    if not d.is_dir():
        raise UserError("checkpoint directory does not exist", path=d)
    run_dir = d.parent if d.name == "checkpoints" else d
    run = run_dir.name
    found: list[Checkpoint] = []
    candidates = sorted(p for p in d.iterdir() if p.is_dir() and _STEP.match(p.name))
    if include_final and (run_dir / "final").is_dir():
        candidates.append(run_dir / "final")
    for p in candidates:
        info_path = p / "checkpoint.json"
        if not info_path.exists():
            raise UserError("no checkpoint.json (step, tokens): not a babelscope checkpoint", path=p)
        info = read_json(info_path, "checkpoint.json")
        step, tokens = (field(info, k, int, info_path) for k in ("step", "tokens"))
        found.append(Checkpoint(run, p.name, p, step, tokens))
    if not found:
        raise UserError("no checkpoints (step-N directories) found", path=d)
    by_step: dict[int, Checkpoint] = {}
    for c in found:  # final usually repeats the last milestone; keep the step-N name
        by_step.setdefault(c.step, c)
    return sorted(by_step.values(), key=lambda c: (c.tokens, c.step))


def check_architectures(checkpoints: Sequence[Checkpoint]) -> dict:
    """The common architecture of one run's checkpoints; a mismatch is a one-line UserError."""
    first: dict | None = None
    for c in checkpoints:
        cfg_path = c.path / "config.json"
        if not cfg_path.exists():
            raise UserError("not an HF model directory (no config.json)", path=c.path)
        cfg = read_json(cfg_path, "config.json")
        arch = {k: cfg.get(k) for k in ARCH_KEYS}
        if first is None:
            first, first_path = arch, c.path
            continue
        diff = [k for k in ARCH_KEYS if arch[k] != first[k]]
        if diff:
            k = diff[0]
            raise UserError(f"checkpoints of different architectures in one sweep: {c.path} has {k}={arch[k]} but "
                            f"{first_path} has {k}={first[k]}; give each model size its own run (--runs)")
    return first or {}


# ---- one checkpoint: all its layers ---------------------------------------------------------------------------

def cell_dir(out: Path, c: Checkpoint, layer: int) -> Path:
    return out / "cells" / c.run / c.name / f"layer-{layer}"


def cell_done(path: Path) -> bool:
    from babelscope.analysis.languages import SUMMARY

    return (path / SUMMARY).exists()


def split_data(data: Sequence[str | Path], out: Path, eval_frac: float) -> tuple[Path, Path, list[str]]:
    """Split the corpus once into data/sae.jsonl and data/eval.jsonl (reused when present); returns the labels."""
    from babelscope.analysis.languages import check_labels
    from babelscope.corpus import iter_corpus
    from babelscope.files import write_json_atomic, write_jsonl_atomic

    d = out / "data"
    sae_path, eval_path, info_path = d / "sae.jsonl", d / "eval.jsonl", d / "split.json"
    source = [str(Path(p).resolve()) for p in data]
    inputs = identify(list(data))
    if info_path.exists():
        info = read_json(info_path, "split.json")
        check({"data": info.get("inputs"), "eval_frac": info.get("eval_frac")},
              {"data": inputs, "eval_frac": eval_frac}, where=out, what="this study directory",
              hint="use the same --data and --eval-frac, or a new --out")
        return sae_path, eval_path, info["labels"]
    records = list(iter_corpus(data))
    labels = check_labels(records, "lang")
    flags = [is_eval_doc(r, i, eval_frac) for i, r in enumerate(records)]
    n_eval = write_jsonl_atomic(eval_path, (r for r, f in zip(records, flags, strict=True) if f))
    n_sae = write_jsonl_atomic(sae_path, (r for r, f in zip(records, flags, strict=True) if not f))
    if not n_eval or not n_sae:
        raise UserError(f"too few documents to split ({len(records)}); the sweep needs some for SAE training "
                        "and some for evaluation")
    write_json_atomic(info_path, {"data": source, "inputs": inputs, "eval_frac": eval_frac, "labels": labels,
                                  "sae_docs": n_sae, "eval_docs": n_eval})
    return sae_path, eval_path, labels


def embedding_spec(cfg: SweepConfig, c: Checkpoint, final: Checkpoint) -> str:
    """The embedding source for one checkpoint's semantic clusters."""
    if cfg.embeddings == "final":
        return str(final.path)
    if cfg.embeddings == "model":
        return str(c.path)
    return cfg.embeddings


def run_checkpoint(c: Checkpoint, layers: Sequence[int], out: Path, sae_data: Path, eval_data: Path,
                   cfg: SweepConfig, *, embeddings: str, n_layers: int,
                   log: Callable[[str], None] = print) -> list[dict]:
    """Train (or reuse) the SAEs of every unfinished layer of one checkpoint, build their stores, measure.

    The model is loaded once, and one pass of it trains every layer's SAE (or `hooks_per_pass` layers at a
    time); each feature store loads it again (`build_store` takes a directory)."""
    from babelscope.analysis.languages import load_embeddings, measures_from_store, write_measures
    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.models import load_model

    todo = [layer for layer in layers if not cell_done(cell_dir(out, c, layer))]
    if not todo:
        return []
    emb, emb_source = load_embeddings(embeddings, tokenizer_dir=c.path)
    untrained = [layer for layer in todo if not sae_finished(cell_dir(out, c, layer) / "sae")]
    if untrained:
        model, tok = load_model(c.path, device=cfg.device)
        for group in layer_groups(untrained, cfg.hooks_per_pass):
            train_cell_saes(model, tok, {HookPoint(layer, cfg.hook_kind).format(): cell_dir(out, c, layer) / "sae"
                                         for layer in group}, sae_data, cfg)
        del model
    rows = []
    for layer in todo:
        cell = cell_dir(out, c, layer)
        store = cell / "features"
        if not (store / "meta.json").exists():
            build_store(c.path, cell / "sae", [eval_data], store,
                        StoreConfig(tokens=cfg.store_tokens, context=cfg.context, label_field="lang"),
                        device=cfg.device, precision=cfg.precision)
        cols, summary = measures_from_store(store, tau=cfg.tau, embeddings=emb_source, embedding_matrix=emb,
                                            sim_threshold=cfg.sim_threshold, min_activations=cfg.min_activations)
        summary.update(run=c.run, checkpoint=c.name, step=c.step, train_tokens=c.tokens, layer=layer,
                       n_layers=n_layers, depth=layer / max(n_layers - 1, 1), sae_metrics=sae_metrics(cell / "sae"))
        write_measures(cell, cols, summary)
        log(f"{c.run}/{c.name} layer {layer}: mixed {summary['mixed_share']:.3f}, "
            f"R_mono {summary['mean_r_mono']:.3f} ({summary['n_alive']} live features)")
        rows.append(summary)
    return rows


def sae_finished(sae_dir: Path) -> bool:
    """An SAE directory the trainer completed (training.json is written after the weights and cfg.json)."""
    return all((sae_dir / f).exists() for f in ("cfg.json", "sae_weights.safetensors", "training.json"))


def sae_metrics(sae_dir: Path) -> dict[str, Any]:
    """The trained SAE's validation metrics and chosen learning rate (from training.json), for the summary."""
    from babelscope.sae.io import read_training

    t = read_training(sae_dir)
    m = t.get("metrics") or {}
    return {"lr": t.get("best_lr"), **{k: m[k] for k in ("mse", "fve", "l0", "dead_fraction") if k in m}}


def layer_groups(layers: Sequence[int], size: int | None = None, groups: int = 1) -> list[list[int]]:
    """`layers` dealt into groups that each train from one pass of the model: at most `size` layers per group
    (None: no limit) and at least `groups` groups (at most one per layer); layer i goes to group i mod n."""
    n = max(groups, math.ceil(len(layers) / size) if size else 1)
    n = max(1, min(n, len(layers)))
    return [list(layers[g::n]) for g in range(n)]


def train_cell_saes(model, tokenizer, cells: dict[str, Path], sae_data: Path, cfg: SweepConfig) -> None:
    """Train the SAEs of several layers (hook -> SAE directory) from one pass of the model, with the study's
    settings scaled to the model; each resumes its own killed run. This process trains them alone (no DDP)."""
    from babelscope.models.hooks import hook_width
    from babelscope.sae.buffer import CorpusTooSmall
    from babelscope.sae.train import train_saes

    widths = {hook_width(model, h) for h in cells}
    if len(widths) > 1:
        raise UserError(f"hooks of different widths ({sorted(widths)}) cannot share the sweep's SAE settings")
    try:
        train_saes(model, list(cells), [sae_data], cells, tokenizer=tokenizer, resume=True, device=cfg.device,
                   distribute="none", **sae_kwargs(widths.pop(), cfg))
    except CorpusTooSmall as e:  # say it in this command's terms: it has no --val-tokens
        raise UserError(f"too few documents for the SAEs: the SAE part of the corpus gives {e.have} activations "
                        f"at {', '.join(cells)}, the validation set needs {e.need} (a tenth of --sae-tokens, at "
                        "most 100k); add documents, lower --sae-tokens, or lower --eval-frac", path=sae_data) from None


def sae_kwargs(d_in: int, cfg: SweepConfig) -> dict[str, Any]:
    """TrainConfig overrides: TopK, k and width scaled to d_in, the first `context` tokens of each document
    (BOS included, then dropped: 63 vectors for 64), L2-normalised inputs, a batch that gives ~250 steps."""
    k, d_sae = sae_shape(d_in, cfg.k, cfg.expansion, cfg.d_sae)
    batch = cfg.sae_batch or int(min(4096, max(128, cfg.sae_tokens // 250)))
    return {"arch": "topk", "k": k, "d_sae": d_sae, "tokens": cfg.sae_tokens,
            "val_tokens": min(100_000, max(batch, cfg.sae_tokens // 10)), "lrs": tuple(cfg.lrs),
            "batch_size": batch, "buffer_size": int(min(1 << 17, max(8 * batch, cfg.sae_tokens // 4))),
            "normalize": "l2", "positions": f"first:{cfg.context - 1}", "context_size": cfg.context,
            "seed": cfg.seed, "log_every": 10**9, "precision": cfg.precision, "compile": cfg.compile}


# ---- the sweep ------------------------------------------------------------------------------------------------

def run_sweep(runs: Sequence[str | Path], data: Sequence[str | Path], out: str | Path,
              cfg: SweepConfig | None = None, *, log: Callable[[str], None] = print) -> list[dict]:
    """Sweep every checkpoint x layer of each run (a run dir or its checkpoints/ dir); resumable; returns the
    summary rows and writes the summary table, figures and index.html.

    Under torchrun the work units (a checkpoint's layers, or a share of them when there are fewer checkpoints than
    processes) are dealt to the ranks by estimated cost; each rank trains, stores and measures only its own
    cells, with no collective inside a unit, so a cell is the same whichever rank or world size made it. Rank 0
    alone writes the shared files (the data split, sweep.json, the summary, figures and index)."""
    from babelscope import dist
    from babelscope.corpus import check_corpus
    from babelscope.files import check_output, write_json_atomic
    from babelscope.models import resolve_device
    from babelscope.report.sweep import draw_figures, write_index

    cfg = cfg or SweepConfig()
    check_corpus(data)
    out = check_output(out, directory=True, what="study directory")
    plans = []
    for r in runs:
        r = Path(r)
        ckpts = find_checkpoints(r / "checkpoints" if (r / "checkpoints").is_dir() else r)
        arch = check_architectures(ckpts)
        n_layers = int(arch["num_hidden_layers"])
        layers = parse_layers(cfg.layers, n_layers, where=f"run {ckpts[0].run}")
        plans.append((ckpts, layers, n_layers, arch))
    names = [p[0][0].run for p in plans]
    if len(set(names)) != len(names):
        raise UserError(f"two runs share a directory name ({', '.join(names)}); cells are named after runs")
    check_settings(out, cfg)
    device = resolve_device(cfg.device)
    d = dist.init(device, timeout_s=7 * 86400)  # ranks wait at the end for the slowest: allow long units
    if d.enabled and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
    if d.main:
        labels = split_data(data, out, cfg.eval_frac)[2]
        write_json_atomic(out / "sweep.json", {"runs": [str(r) for r in runs], "data": [str(x) for x in data],
                                               "labels": labels, "config": asdict(cfg), "world_size": d.world})
    dist.barrier(d)
    sae_data, eval_data, labels = split_data(data, out, cfg.eval_frac)  # the others read rank 0's split
    units, cells = [], []
    n_ckpts = sum(len(p[0]) for p in plans)
    for ckpts, layers, n_layers, arch in plans:
        final = ckpts[-1]
        for c in ckpts:
            for group in layer_groups(layers, cfg.hooks_per_pass, groups=math.ceil(d.world / n_ckpts)):
                units.append((c, group, n_layers, embedding_spec(cfg, c, final), unit_cost(arch, group)))
            cells += [cell_dir(out, c, layer) for layer in layers]
    mine = deal(units, d.world)[d.rank]
    local = replace(cfg, device=device)
    say = log if not d.enabled else (lambda m: log(f"[rank {d.rank}] {m}"))
    for i in mine:
        c, group, n_layers, emb, _ = units[i]
        run_checkpoint(c, group, out, sae_data, eval_data, local, embeddings=emb, n_layers=n_layers, log=say)
    dist.barrier(d)
    rows = collect(cells)
    if d.main:
        write_summary(out, rows)
        figures = draw_figures(out, rows)
        write_index(out, rows, figures, labels)
        log(f"wrote {out / 'index.html'}")
    dist.barrier(d)
    return rows


def unit_cost(arch: dict, layers: Sequence[int]) -> float:
    """A work unit's relative cost: its SAEs (one per layer) plus one pass of the model up to its deepest layer."""
    hidden, n_layers = int(arch.get("hidden_size") or 1), int(arch.get("num_hidden_layers") or 1)
    return len(layers) * hidden * 16 + (max(layers) + 1) / n_layers * hidden * 12


def deal(units: Sequence[tuple], world: int) -> list[list[int]]:
    """Unit indices per rank, the most costly first to the least loaded rank (cost is each unit's last item);
    the same on every rank, so no messages are needed."""
    load = [0.0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(units)), key=lambda i: (-units[i][-1], i)):
        r = min(range(world), key=lambda r: (load[r], r))
        out[r].append(i)
        load[r] += units[i][-1]
    return [sorted(x) for x in out]


def collect(cells: Sequence[Path]) -> list[dict]:
    """The summary rows of the finished cells among `cells`, ordered by run, training tokens and layer."""
    from babelscope.analysis.languages import SUMMARY

    rows = [json.loads((c / SUMMARY).read_text(encoding="utf-8")) for c in cells if (c / SUMMARY).exists()]
    return sorted(rows, key=lambda r: (r["run"], r["train_tokens"], r["step"], r["layer"]))


_RESULT_KEYS = ("k", "expansion", "d_sae", "sae_tokens", "store_tokens", "context", "lrs", "sae_batch", "tau",
                "sim_threshold", "min_activations", "embeddings", "eval_frac", "hook_kind", "seed")


def check_settings(out: Path, cfg: SweepConfig) -> None:
    """A study directory keeps the settings it was started with: finished cells are reused, so mixing
    settings would silently mix results."""
    path = out / "sweep.json"
    if not path.exists():
        return
    saved = read_json(path, "sweep.json").get("config", {})
    now = asdict(cfg)
    keys = [k for k in _RESULT_KEYS if k in saved]
    check({k: saved[k] for k in keys}, {k: now[k] for k in keys}, where=out, what="this study directory",
          hint="resume with the same settings or use a new --out")


def write_summary(out: Path, rows: list[dict]) -> None:
    """summary.parquet and summary.csv: one row per cell (lists stored as JSON text)."""
    import pyarrow as pa

    from babelscope.files import write_table_atomic

    flat = [{k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in r.items()} for r in rows]
    write_table_atomic(out / "summary", pa.Table.from_pylist(flat))

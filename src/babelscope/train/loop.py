"""The training loop: get a batch, forward, backward, step, log, checkpoint. Pre-training, continual
pre-training (`init_from`: weights and optimizer state) and exact resume (`resume`: everything)."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from babelscope import dist, resume
from babelscope.errors import UserError
from babelscope.files import check_output, sweep_stale, write_json_atomic
from babelscope.models.presets import PRESETS
from babelscope.settings import SEED, Settings, opt
from babelscope.train.checkpoint import (
    check_weights,
    list_checkpoints,
    load_state,
    read_info,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from babelscope.train.data import Shards, WindowSampler, batch, build_shards, windows
from babelscope.train.metrics import MetricsLog, plot_losses
from babelscope.train.tracking import Tracker

# Settings that shape the trajectory: a resumed run must use the ones it started with.
_RESUME_INPUTS = ("data", "val_data", "init_from")  # compared by content, not by how the path is spelled
_RESUME_KEYS = ("preset", "data", "val_data", "context", "batch_size", "grad_accum", "lr", "schedule", "warmup",
                "min_lr", "epochs", "max_steps", "seed", "init_from", "kv_heads", "select")
BEST = "best"  # out/best/: the checkpoint with the lowest validation loss so far, while a run selects the best
UNLEARNED = 0.9  # a final validation loss above this share of ln(vocab) (a uniform guess) learned ~nothing


@dataclass(kw_only=True)
class TrainConfig(Settings):
    """`babelscope train`: pre-train a preset, continue pre-training (`init_from`) or resume a run exactly."""

    data: list[str] = opt(help="training corpus files (JSONL, .txt, Parquet)")
    out: str = opt(help="run directory")
    preset: str | None = opt(None, "model preset (see `babelscope models list`)", choices=tuple(PRESETS))
    tokenizer: str | None = opt(None, "tokenizer directory (not needed with --init-from)")
    val_data: list[str] = opt(help="validation files (default: every 1/val_fraction-th document of --data)",
                              default_factory=list)
    val_fraction: float = opt(0.01, "share of --data held out for validation when --val-data is not given", ge=0.0, le=0.5)
    text_field: str = opt("text", "the record field holding the text")
    init_from: str | None = opt(None, "continual pre-training: start from this model dir and its optimizer state")
    init_optimizer: bool = opt(True, "with --init-from, load the weights only and start a fresh optimizer")
    select: str = opt("auto", "the model final/ holds: best = the lowest validation loss of any evaluation, last = "
                              "the last step; auto = best with --init-from (continual pre-training on a small set "
                              "overfits), else last", choices=("auto", "best", "last"))
    also_eval: list[str] = opt(help="more validation files, scored at every evaluation beside --val-data (e.g. "
                                    "the pre-training style during continual pre-training: the forgetting)",
                               default_factory=list)
    resume: bool = opt(False, "continue the run in --out from its latest checkpoint")
    context: int | None = opt(None, "tokens per window (default: the preset's 512)", gt=0)
    kv_heads: int | None = opt(None, "grouped-query attention: key/value heads", gt=0)
    batch_size: int = opt(8, "windows per micro-batch per process", gt=0)
    grad_accum: int = opt(1, "micro-batches per optimizer step", gt=0)
    lr: float = opt(5e-5, "peak learning rate (the first study's constant rate)", gt=0)
    schedule: str = opt("constant", "learning-rate schedule after warm-up", choices=("constant", "cosine"))
    warmup: float = opt(0.05, "warm-up: a fraction of the steps (< 1) or a number of steps", ge=0)
    min_lr: float = opt(0.1, "cosine floor, as a fraction of --lr", ge=0.0, le=1.0)
    weight_decay: float = opt(0.1, "AdamW weight decay (matrices only)", ge=0)
    betas: tuple[float, float] = opt((0.9, 0.95), "AdamW betas", ge=0.0, lt=1.0)
    grad_clip: float = opt(1.0, "gradient-norm clip", gt=0)
    epochs: float = opt(1.0, "passes over the training split", gt=0)
    max_steps: int | None = opt(None, "stop after this many optimizer steps (overrides --epochs)", gt=0)
    eval_every: int = opt(200, "steps between validation losses", gt=0)
    eval_batches: int = opt(20, "validation batches per evaluation", gt=0)
    save_every: int | None = opt(None, "also checkpoint every N steps", gt=0)
    checkpoint_at: list[int] = opt(help="checkpoint when these token counts are reached, e.g. 4e6,4e7,4e8",
                                   default_factory=list, ge=0)
    log_checkpoints: int = opt(0, "also checkpoint at this many token counts spaced evenly in log between "
                                  "--log-first of the run's tokens and its end (Study B's training dynamics; the "
                                  "end is final/)", ge=0)
    log_first: float = opt(1 / 64, "the first log-spaced checkpoint, as a share of the run's tokens", gt=0.0,
                           le=1.0)
    seed: int = opt(0, "seed of the initialisation and the data order", **SEED)
    device: str = opt("auto", "cpu, cuda, cuda:N or auto")
    precision: str = opt("auto", "auto: bf16 autocast on a GPU that has it, else fp32",
                         choices=("auto", "fp32", "bf16"))
    compile: bool = opt(False, "torch.compile the model (GPU)")
    cache_dir: str | None = opt(None, "where token shards are kept (default $BABELSCOPE_CACHE/tokens or "
                                      "~/.cache/babelscope/tokens)")
    report_to: list[str] = opt(help="also log to: tensorboard (event files in OUT/tensorboard) or none",
                               default_factory=list, metavar="TRACKER")


def log_spaced(total: int, n: int, first: float) -> list[int]:
    """`n` token counts spaced evenly in log between `first * total` and `total` (distinct, increasing)."""
    if n < 1 or total < 1:
        return []
    lo = max(1.0, first * total)
    if n == 1:
        return [int(total)]
    ratio = (total / lo) ** (1 / (n - 1))
    return sorted({round(lo * ratio**i) for i in range(n)})


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_lr: float) -> float:
    """Linear warm-up to 1, then constant or cosine down to `min_lr`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + (1 - min_lr) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _optimizer(model, cfg: TrainConfig, fused: bool) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


def _reset_hparams(opt: torch.optim.Optimizer, cfg: TrainConfig) -> None:
    """Loading an optimizer state also loads its old lr/betas; the new run's settings win."""
    for g, wd in zip(opt.param_groups, (cfg.weight_decay, 0.0), strict=True):
        g.update(lr=cfg.lr, initial_lr=cfg.lr, betas=cfg.betas, weight_decay=wd)


def _cache_dir(cfg: TrainConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    return Path(os.environ.get("BABELSCOPE_CACHE", Path.home() / ".cache" / "babelscope")) / "tokens"


def _resume_record(cfg: TrainConfig) -> dict:
    """The settings and inputs (by content) a resumed run must share with the run it continues."""
    now = asdict(cfg)
    return resume.record({k: now[k] for k in _RESUME_KEYS if k not in _RESUME_INPUTS},
                         {k: now[k] for k in _RESUME_INPUTS})


def _check_resume(out: Path, cfg: TrainConfig) -> None:
    from babelscope.inputs import read_json

    path = out / "config.json"
    saved = read_json(path, "config.json").get("resume") if path.exists() else None
    if saved is not None:
        resume.check(saved, _resume_record(cfg), where=path, what="this run",
                     hint="pass --resume with the settings it started with, or choose another --out")


@dataclass
class Progress:
    """Where a run stands: the optimizer step, the tokens seen, the milestones already saved, the data position."""

    step: int
    tokens: int
    milestones_done: list[int]
    sampler: WindowSampler
    grad_norm: float = float("nan")


def _resume_point(out: Path, cfg: TrainConfig) -> Path | None:
    """The checkpoint a `--resume` continues from (None for a new run); a new run may not overwrite one."""
    if not cfg.resume:
        if (out / "final").exists() or list_checkpoints(out):
            raise UserError("run directory already has checkpoints; pass --resume to continue it or choose another "
                            "--out", path=out)
        return None
    _check_resume(out, cfg)
    final = out / "final"
    if (final / "checkpoint.json").exists() and read_info(final).get("finished"):
        return final  # finished: nothing to redo (final/ may hold an earlier, selected step)
    done = list_checkpoints(out)
    if done:
        return done[-1][1]
    return out / "final" if (out / "final" / "checkpoint.json").exists() else None


def _planned_context(cfg: TrainConfig, src: Path | str | None) -> int:
    """The context the run will train with, known before the model is built (from the flag, the model it starts
    from, or the preset)."""
    from babelscope.inputs import read_json

    if cfg.context:
        return cfg.context
    if src:
        return int(read_json(Path(src) / "config.json", "config.json").get("max_position_embeddings") or 512)
    return PRESETS[cfg.preset].context if cfg.preset in PRESETS else 512


def _token_shards(cfg: TrainConfig, tok_dir: Path, d: dist.Dist, src: Path | str | None) -> Shards:
    """The corpus as token shards: tokenised once (by rank 0), then memory-mapped by every rank."""
    min_val = _planned_context(cfg, src) + 1  # one validation window, held out of a small corpus if need be

    def build() -> Shards:
        return build_shards(tok_dir, cfg.data, _cache_dir(cfg), val_data=cfg.val_data,
                            val_fraction=cfg.val_fraction, text_field=cfg.text_field, min_val_tokens=min_val)
    if d.main:
        shards = build()
    dist.barrier(d)
    return shards if d.main else build()


def _model_config(cfg: TrainConfig, tok, src: Path | str | None):
    """The model's config, read or built before any tokenising so that a bad preset or shape fails at once."""
    from transformers import AutoConfig

    from babelscope.models import llama_config

    if src:
        return AutoConfig.from_pretrained(src, local_files_only=True)
    return llama_config(cfg.preset, len(tok), kv_heads=cfg.kv_heads, context=cfg.context,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)


def _build_model(cfg: TrainConfig, config, src: Path | str | None):
    """The model to train: loaded from `src` (a checkpoint or --init-from) or new from `config`."""
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    if src:
        check_weights(src)
        try:
            return AutoModelForCausalLM.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        except Exception as e:  # transformers raises many types for a broken directory
            raise UserError(f"cannot load model ({type(e).__name__}: {e})", path=src) from None
    return LlamaForCausalLM(config)


def _restore(cfg: TrainConfig, opt, n_windows: int, resume_from: Path | None, state: dict | None
             ) -> tuple[Progress, dict | None]:
    """Load the optimizer state (resume: everything; --init-from: the optimizer unless told not to) and return
    where the run stands, with the saved state a resume still needs (scheduler, RNG)."""
    if resume_from:
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        return Progress(state["step"], state["tokens"], state["milestones_done"],
                        WindowSampler(n_windows, cfg.seed, **state["sampler"])), state
    if cfg.init_from and cfg.init_optimizer:
        if state is None or "optimizer" not in state:
            raise UserError("no optimizer state to continue from; pass --no-init-optimizer to start a fresh one",
                            path=cfg.init_from)
        opt.load_state_dict(state["optimizer"])
        _reset_hparams(opt, cfg)
    return Progress(0, 0, [], WindowSampler(n_windows, cfg.seed)), None


def _autocast(cfg: TrainConfig, device: str):
    """bf16 autocast where asked for, or by default on a GPU that has it; else no autocast."""
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda")
                                          and torch.cuda.is_bf16_supported())
    return (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext


@torch.no_grad()
def evaluate(model, val: np.ndarray, ctx: int, cfg: TrainConfig, d: dist.Dist, device: str, autocast) -> float:
    """Mean validation cross-entropy over the first `eval_batches` batches of the validation split (all ranks)."""
    model.eval()
    V = model.config.vocab_size
    idx = np.arange(min(windows(val, ctx), cfg.eval_batches * cfg.batch_size))
    total_loss, count = 0.0, 0
    for i in range(d.rank * cfg.batch_size, len(idx), cfg.batch_size * d.world):
        x, y = batch(val, idx[i:i + cfg.batch_size], ctx)
        with autocast():
            logits = model(input_ids=x.to(device)).logits
        total_loss += float(F.cross_entropy(logits.float().view(-1, V), y.to(device).reshape(-1), reduction="sum"))
        count += y.numel()
    model.train()
    return dist.mean(d, total_loss) / max(dist.mean(d, float(count)), 1.0)


def train(cfg: TrainConfig) -> Path:
    """Train (or continue training) a model; returns `out/final`."""
    from babelscope.manifest import manifest
    from babelscope.models import resolve_device
    from babelscope.models.loading import check_model_dir, check_vocab
    from babelscope.progress import progress
    from babelscope.tokenizer import load_tokenizer

    device = resolve_device(cfg.device)
    d = dist.init(device)
    if d.enabled and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
    out = check_output(cfg.out, directory=True, what="run")
    resume_from = _resume_point(out, cfg)
    if cfg.init_from:
        check_model_dir(cfg.init_from)
    src = resume_from or cfg.init_from
    if src:  # a truncated checkpoint fails now, not after the corpus is tokenised
        check_weights(src)
    state = None
    if resume_from:
        state = load_state(resume_from)
    elif cfg.init_from and cfg.init_optimizer:
        if not (Path(cfg.init_from) / "trainer_state.pt").exists():
            raise UserError("no optimizer state to continue from (no trainer_state.pt); pass --no-init-optimizer "
                            "to start a fresh one", path=cfg.init_from)
        state = load_state(cfg.init_from)
    if d.main:
        sweep_stale(out)
        sweep_stale(out / "checkpoints")
    if not (resume_from or cfg.init_from or cfg.tokenizer):
        raise UserError("--tokenizer is required (or --init-from a model directory)")
    if not (resume_from or cfg.init_from or cfg.preset):
        raise UserError("--preset is required (or --init-from a model directory)")
    if resume_from is not None and read_info(resume_from).get("finished"):
        dist.shutdown(d)
        return resume_from
    tok_dir = Path(resume_from or cfg.init_from or cfg.tokenizer)
    tok = load_tokenizer(tok_dir)
    config = _model_config(cfg, tok, src)
    max_ctx = getattr(config, "max_position_embeddings", 512)
    ctx = cfg.context or max_ctx
    if ctx > max_ctx:
        raise UserError(f"--context {ctx} exceeds the model's {max_ctx} positions")
    select = cfg.select if cfg.select != "auto" else ("best" if cfg.init_from else "last")

    shards = _token_shards(cfg, tok_dir, d, src)
    if shards.meta.get("val_note") and d.main:
        print(f"babelscope: note: {shards.meta['val_note']}", file=sys.stderr, flush=True)
    also = _also_eval(cfg, tok_dir, d, ctx)
    model = _build_model(cfg, config, src)
    check_vocab(model, tok, tok_dir)
    model.to(device).train()
    if windows(shards.val, ctx) < 1:
        raise UserError("the validation split is shorter than one context window; add --val-data or lower "
                        "--context", path=shards.dir)
    n_windows = windows(shards.train, ctx)
    per_step = cfg.batch_size * cfg.grad_accum * d.world
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * n_windows / per_step))
    if d.main:  # every checkpoint: fp32 weights and two AdamW moments
        saves = 1 + len(cfg.checkpoint_at) + cfg.log_checkpoints + (total // cfg.save_every if cfg.save_every else 0)
        check_output(out, directory=True, what="run", need=saves * 12 * sum(p.numel() for p in model.parameters()))
    warmup = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)

    opt = _optimizer(model, cfg, fused=device.startswith("cuda"))
    run, state = _restore(cfg, opt, n_windows, resume_from, state)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup, cfg.schedule, cfg.min_lr))
    if state is not None:
        sched.load_state_dict(state["scheduler"])
        # Building the scheduler set each group's lr to its step-0 warm-up value; restore the saved one.
        for g, lr in zip(opt.param_groups, sched.get_last_lr(), strict=True):
            g["lr"] = lr

    raw = model
    if cfg.compile:
        model = torch.compile(model)
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[d.local_rank] if device.startswith("cuda") else None)
    autocast = _autocast(cfg, device)

    tracker = Tracker(out, cfg.report_to, run.step if resume_from else 0) if d.main else None
    log = MetricsLog(out / "metrics.csv", tracker)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        if resume_from:
            log.resume_at(run.step)
        else:
            log.start()
            info = {"total_steps": total, "tokens_per_step": per_step * ctx, "world_size": d.world,
                    "shards": shards.meta, "model": raw.config.to_dict()}
            write_json_atomic(out / "config.json", {**manifest("train", asdict(cfg)), **info,
                                                    "resume": _resume_record(cfg)})

    def validate() -> float:
        return evaluate(raw, shards.val, ctx, cfg, d, device, autocast)

    def validate_also() -> float | None:
        return evaluate(raw, also, ctx, cfg, d, device, autocast) if also is not None else None

    def save(path: Path, kind: str, train_loss: float | None, val_loss: float | None,
             extra: dict | None = None) -> None:
        if d.main:
            state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state(),
                     "sampler": run.sampler.state(), "step": run.step, "tokens": run.tokens,
                     "milestones_done": run.milestones_done, "config": asdict(cfg)}
            info = {"step": run.step, "tokens": run.tokens, "epoch": run.sampler.epoch, "kind": kind,
                    "train_loss": train_loss, "val_loss": val_loss, **(extra or {})}
            save_checkpoint(path, raw, tok, state, info)
        dist.barrier(d)

    best = _best_so_far(out) if resume_from and select == "best" else math.inf

    def keep_if_best(train_loss: float | None, val_loss: float, also_loss: float | None) -> None:
        nonlocal best
        if select == "best" and val_loss < best:
            best = val_loss
            save(out / BEST, "best", train_loss, val_loss, {"also_val_loss": also_loss})

    # The last log-spaced point is the end of the run, which final/ holds.
    milestones = sorted(set(cfg.checkpoint_at) | set(log_spaced(total * per_step * ctx, cfg.log_checkpoints,
                                                                 cfg.log_first)[:-1]))
    if not resume_from:
        val0, also0 = validate(), validate_also()
        if d.main:
            log.append({"step": 0, "tokens": 0, "val_loss": val0, "also_val_loss": also0})
        keep_if_best(None, val0, also0)
        if 0 in milestones:
            run.milestones_done.append(0)
            save(out / "checkpoints" / "step-0", "milestone", None, val0)

    bar = progress(total=total, initial=run.step, desc="train", unit="step", disable=not d.main)
    t_start, train_loss, val_loss = time.perf_counter(), float("nan"), None
    while run.step < total:
        t0 = time.perf_counter()
        train_loss = train_step(model, raw, opt, sched, run, shards.train, ctx, cfg, d, device, autocast)
        lr = sched.get_last_lr()[0]
        sched.step()
        val_loss = validate() if run.step % cfg.eval_every == 0 or run.step == total else None
        also_loss = validate_also() if val_loss is not None else None
        dt = time.perf_counter() - t0
        if d.main:
            log.append({"step": run.step, "tokens": run.tokens, "lr": lr, "train_loss": train_loss,
                        "val_loss": val_loss, "also_val_loss": also_loss, "grad_norm": run.grad_norm,
                        "tokens_per_s": round(per_step * ctx / dt, 1),
                        "elapsed_s": round(time.perf_counter() - t_start, 3)})
            bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{per_step * ctx / dt:,.0f}")
            bar.update()
        if val_loss is not None:
            keep_if_best(train_loss, val_loss, also_loss)
        crossed = [m for m in milestones if m <= run.tokens and m not in run.milestones_done]
        run.milestones_done.extend(crossed)
        if crossed or (cfg.save_every and run.step % cfg.save_every == 0):
            save(out / "checkpoints" / f"step-{run.step}", "milestone" if crossed else "periodic", train_loss,
                 val_loss)
        if val_loss is not None and d.main:
            plot_losses(out / "metrics.csv", out / "loss.png")
    bar.close()
    if val_loss is None:
        val_loss = validate()
        keep_if_best(train_loss, val_loss, validate_also())
    last = {"last_step": run.step, "last_val_loss": val_loss, "selected": select, "finished": True}
    if select == "best" and (out / BEST).exists() and read_info(out / BEST)["step"] != run.step:
        if d.main:
            _promote_best(out, last)
        dist.barrier(d)
    else:
        save(out / "final", "final", train_loss, val_loss, last)
    if d.main:
        shutil.rmtree(out / BEST, ignore_errors=True)
        plot_losses(out / "metrics.csv", out / "loss.png")
        log.close()
        _check_learned(out, len(tok))
    dist.shutdown(d)
    return out / "final"


def _also_eval(cfg: TrainConfig, tok_dir: Path, d: dist.Dist, ctx: int) -> np.ndarray | None:
    """The tokens of --also-eval (tokenised once, cached like the training shards), or None."""
    if not cfg.also_eval:
        return None

    def build() -> Shards:
        return build_shards(tok_dir, [], _cache_dir(cfg), val_data=cfg.also_eval, text_field=cfg.text_field)
    if d.main:
        shards = build()
    dist.barrier(d)
    shards = shards if d.main else build()
    if windows(shards.val, ctx) < 1:
        raise UserError("--also-eval is shorter than one context window", path=cfg.also_eval[0])
    return shards.val


def _best_so_far(out: Path) -> float:
    """The validation loss of out/best/ (a resumed run keeps selecting against it), inf when there is none."""
    path = out / BEST
    return float(read_info(path)["val_loss"]) if (path / "checkpoint.json").exists() else math.inf


def _promote_best(out: Path, last: dict) -> None:
    """final/ = a copy of best/ (weights, tokenizer, optimizer state), its checkpoint.json saying which step
    was kept and where the run ended; written beside and renamed, like every checkpoint."""
    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out / BEST, tmp)
    info = {**read_info(tmp), "kind": "final", **last}
    write_json_atomic(tmp / "checkpoint.json", info)
    old = out / ".final.old"
    if (out / "final").exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out / "final", old)
    os.replace(tmp, out / "final")
    shutil.rmtree(old, ignore_errors=True)


def _check_learned(out: Path, vocab: int) -> None:
    """Flag (in final/checkpoint.json and config.json) and warn about a run whose final validation loss is still
    near ln(vocab), the loss of a uniform guess: it learned (almost) nothing."""
    from babelscope.errors import warn

    info = read_info(out / "final")
    loss, chance = float(info["val_loss"]), math.log(vocab)
    learned = loss < UNLEARNED * chance
    result = {"learned": learned, "val_loss": loss, "uniform_loss": chance, "step": info["step"],
              "selected": info.get("selected", "last"), "last_step": info.get("last_step", info["step"])}
    if not learned:
        result["warning"] = (f"the final validation loss {loss:.3f} is within {1 - UNLEARNED:.0%} of ln({vocab}) = "
                             f"{chance:.3f}, the loss of a uniform guess: the model learned (almost) nothing. Train "
                             "longer or raise --lr (the studies' 5e-5 suits millions of stories; the demo uses 3e-3)")
        warn(f"{out}: {result['warning']}")
    write_json_atomic(out / "final" / "checkpoint.json", {**info, "learned": learned})
    from babelscope.inputs import read_json

    config = read_json(out / "config.json", "config.json") if (out / "config.json").exists() else {}
    write_json_atomic(out / "config.json", {**config, "result": result})


def train_step(model, raw, opt, sched, run: Progress, tokens: np.ndarray, ctx: int, cfg: TrainConfig,
               d: dist.Dist, device: str, autocast) -> float:
    """One optimizer step over this rank's share of `batch_size x grad_accum x world` windows; returns the
    mean training loss over ranks and advances `run` (step, tokens, data position, gradient norm)."""
    per_step = cfg.batch_size * cfg.grad_accum * d.world
    idx = run.sampler.take(per_step)
    mine = idx[d.rank * cfg.batch_size * cfg.grad_accum:(d.rank + 1) * cfg.batch_size * cfg.grad_accum]
    V = raw.config.vocab_size
    loss_sum = 0.0
    for micro in range(cfg.grad_accum):
        x, y = batch(tokens, mine[micro * cfg.batch_size:(micro + 1) * cfg.batch_size], ctx)
        last = micro == cfg.grad_accum - 1
        sync = contextlib.nullcontext() if last or not d.enabled else model.no_sync()
        with sync:
            with autocast():
                logits = model(input_ids=x.to(device)).logits
            loss = F.cross_entropy(logits.float().view(-1, V), y.to(device).reshape(-1)) / cfg.grad_accum
            loss.backward()
        loss_sum += loss.item()
    run.grad_norm = float(torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip))
    opt.step()
    opt.zero_grad(set_to_none=True)
    run.step += 1
    run.tokens += per_step * ctx
    return dist.mean(d, loss_sum)

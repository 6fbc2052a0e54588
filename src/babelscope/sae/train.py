"""Training SAEs: a learning-rate grid trained in lock-step on one activation stream, with resume and DDP.

The loop (nanoGPT style, no framework): get a batch of raw activations from the shuffling buffer, normalise it,
and for each learning rate of the grid: forward, backward, all-reduce (DDP), remove the decoder-parallel
gradient, Adam step (linear warm-up, then constant), renormalise the decoder rows, update the dead-latent
clock. Every rate sees the same batches, so the model runs once for the whole grid (Study B's grid search
for the price of one pass). The rate with the lowest validation MSE wins; training.json records all of them.

Resume: `checkpoint.pt` (atomic) holds every SAE, optimizer, the step, the dead-latent clocks, the buffer's
contents and RNG and the source position, so a killed run continues to the same result.

Has it learned (`sae.convergence`)? training.json records, per learning rate, the cosine of every decoder row
with its initial value (recomputed from the seed). With `stability_seed`, a second SAE per learning rate starts
from that seed and trains on the very same batches; it is saved under OUT/seed-N, and training.json records
how well the two match (mean max cosine, one-to-one matching) beside the same numbers for two untrained inits.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from babelscope import dist
from babelscope.dist import all_reduce_, broadcast_
from babelscope.errors import UserError
from babelscope.files import atomic_path
from babelscope.resume import check, identify, same
from babelscope.sae.base import SAE, SAEConfig, input_scale
from babelscope.sae.buffer import (
    CacheSource,
    CorpusTooSmall,
    ModelSource,
    Positions,
    ShuffleBuffer,
    build_cache,
    parse_positions,
    read_cache_meta,
    scale_for,
    take,
)
from babelscope.sae.io import save_sae
from babelscope.sae.relu import ReLUTrainer
from babelscope.sae.topk import TopKTrainer
from babelscope.sae.trainable import TrainableSAE
from babelscope.settings import SEED, Settings, opt
from babelscope.train.tracking import Tracker

CHECKPOINT = "checkpoint.pt"
STUDY_B_LRS = (1e-4, 2e-4, 5e-4, 1e-3)
MIN_STEPS = 200  # fewer optimizer steps than this and an SAE has rarely learned its dictionary


@dataclass(kw_only=True)
class TrainConfig(Settings):
    """Every SAE training choice; saved in training.json and checked on resume."""

    arch: str = opt("topk", "SAE architecture: relu (ReLU + L1, Study A) or topk (Study B)", choices=("relu", "topk"))
    expansion: int = opt(16, "latents per input dimension (d_sae = expansion x d_in)", gt=0)
    d_sae: int | None = opt(None, "number of latents (overrides --expansion)", gt=0)
    k: int = opt(32, "active latents per token (topk)", gt=0)
    l1: float | None = opt(None, "L1 coefficient (relu); default 2 for inputs of norm sqrt(d) (--normalize scale), "
                                 "2/sqrt(d) with --normalize l2", ge=0.0)
    tokens: int = opt(10_000_000, "training activations (10M, 2.5k, ...)", gt=0)
    val_tokens: int = opt(100_000, "held-out activations (the first ones of the stream), for picking the lr", ge=0)
    lrs: tuple[float, ...] = opt((1e-3,), "learning rate or comma-separated grid trained in lock-step (Study B: "
                                          "1e-4,2e-4,5e-4,1e-3); the lowest validation MSE wins", flag="--lr", gt=0.0)
    batch_size: int = opt(4096, "activations per step, over all ranks", gt=0)
    buffer_size: int = opt(1 << 17, "activations in the shuffling pool (per rank)", gt=0)
    warmup_steps: int = opt(500, "linear learning-rate warm-up steps (capped at a tenth of the run)", ge=0)
    adam_betas: tuple[float, float] = opt((0.9, 0.999), "Adam betas", ge=0.0, lt=1.0)
    adam_eps: float = opt(6.25e-10, "Adam epsilon (Study B's reference code)", gt=0.0)
    normalize: str = opt("l2", "input normalisation: l2 = unit norm per vector (Study B); scale = one factor, mean "
                               "norm sqrt(d); none", choices=("none", "l2", "scale"))
    positions: str = opt("first:64", "all | first:N (Study B: 64) | random:N (Study A: 128) tokens per context")
    context_size: int = opt(128, "tokens per context (BOS included)", gt=0)
    model_batch_size: int = opt(32, "contexts per forward pass of the model", gt=0)
    auxk: bool = opt(True, "TopK without the AuxK loss on dead latents", flag="--no-auxk")
    dead_window: int | None = opt(None, "tokens without firing that make a latent dead (default min(10M, "
                                        "tokens/10))", gt=0)
    seed: int = opt(0, "seed of the initialisation and the shuffling", **SEED)
    stability_seed: int | None = opt(None, "also train an SAE from this init seed on the same batches (OUT/seed-N); "
                                           "training.json then records how well the two seeds' features match")
    checkpoint_every: int | None = opt(None, "steps between checkpoints (default: a twentieth of the run)", gt=0)
    log_every: int = opt(100, "steps between logged losses", gt=0)
    text_field: str = opt("text", "the record field holding the text")
    report_to: list[str] = opt(help="also log to: tensorboard (event files in OUT/tensorboard) or none",
                               default_factory=list, metavar="TRACKER")
    extra: dict[str, Any] = opt(help="anything else worth keeping in training.json", default_factory=dict, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.lrs = tuple(float(x) for x in self.lrs)
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        if not self.lrs:
            raise UserError("--lr needs at least one learning rate")
        if self.tokens < self.batch_size:
            raise UserError(f"--tokens ({self.tokens}) is smaller than one batch ({self.batch_size})")
        parse_positions(self.positions)
        if self.stability_seed is not None and self.stability_seed == self.seed:
            raise UserError(f"--stability-seed must differ from --seed ({self.seed})")

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(kw_only=True)
class SAETrainSettings(TrainConfig):
    """`babelscope sae train`: the training choices plus what to train on and where to write."""

    model: str = opt(help="HF model directory")
    hook: str = opt(help="hook point, e.g. layers.1.mlp.act or blocks.1.mlp.hook_post")
    data: list[str] = opt(help="corpus files (JSONL, .txt, Parquet)")
    out: str = opt(help="SAE directory to write (SAELens layout + training.json)")
    cache: str | None = opt(None, "activation cache dir: computed once, reused by later runs")
    resume: bool = opt(False, "continue from OUT/checkpoint.pt if it exists")
    device: str = opt("auto", "cpu, cuda or auto")
    threads: int | None = opt(None, "torch CPU threads", gt=0)


@dataclass
class TrainResult:
    sae: SAE  # the SAE of the learning rate with the lowest validation MSE
    metrics: dict[str, Any]  # its validation metrics (with its decoder movement and, if trained, stability)
    grid: list[dict[str, Any]]  # one entry per learning rate: lr and its metrics
    out_dir: Path | None = None
    saes: list[SAE] = field(default_factory=list)  # every SAE of the grid, in the order of cfg.lrs
    companion: SAE | None = None  # the best learning rate's SAE from `stability_seed`, if any


# ---- pure pieces -------------------------------------------------------------------------------------
def lr_at(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up from lr/warmup to lr over `warmup` steps, then constant."""
    return lr * min(1.0, (step + 1) / warmup) if warmup > 0 else lr


def normalize_batch(x: torch.Tensor, normalize: str, scale: float) -> torch.Tensor:
    return x * input_scale(x, normalize, scale)


@torch.no_grad()
def validation_stats(sae: SAE, val: torch.Tensor, chunk: int = 8192) -> dict[str, torch.Tensor]:
    """Summable statistics of `sae` on RAW val rows (normalised space): sse, sums, l0, fires."""
    from babelscope.sae.metrics import ReconstructionStats

    stats = ReconstructionStats(sae.cfg.d_in, sae.cfg.d_sae, device=val.device)
    for s in range(0, len(val), chunk):
        x = val[s:s + chunk]
        u = sae.normalize(x)
        f = sae.encode(x)
        stats.update(u, sae.decode(f), f)
    return stats.tensors()


def sae_step(tr: TrainableSAE, opt: torch.optim.Optimizer, u: torch.Tensor, since: torch.Tensor, *, lr: float,
             window: int | None, tokens: int, world: int = 1) -> dict[str, Any]:
    """One optimisation step on normalised inputs u; updates the dead-latent clock `since` in place.

    forward + backward, all-reduce under DDP, drop the decoder-parallel gradient, Adam, unit decoder rows.
    """
    dead = since >= window if window is not None else None
    loss, st = tr.loss(u, dead)
    opt.zero_grad(set_to_none=False)
    loss.backward()
    fires = st["fires"]
    if world > 1:
        fires = fires.float()
        all_reduce_([p.grad for p in tr.parameters()], world, average=True)
        all_reduce_([fires], world, average=False)
    tr.project_decoder_grad()
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    tr.normalize_decoder()
    since += tokens
    since.masked_fill_(fires > 0, 0)
    return st


def make_optimizer(tr: TrainableSAE, lr: float, tcfg: TrainConfig) -> torch.optim.Adam:
    """Adam (fused kernel) with Study B's epsilon."""
    return torch.optim.Adam(tr.parameters(), lr=lr, betas=tcfg.adam_betas, eps=tcfg.adam_eps, fused=True)


def relu_l1(tcfg: TrainConfig, d_in: int) -> float:
    """The L1 coefficient: the given one, else 2 for inputs of norm sqrt(d_in) (`scale`; with `none` it depends
    on the raw norm) and 2/sqrt(d_in) for unit-norm (`l2`) inputs, where the squared error shrinks by d_in and the
    activations by sqrt(d_in). On the demo's 1M model 2 gave L0 29 at FVE 0.87 (5e-3 gave L0 ~800)."""
    if tcfg.l1 is not None:
        return tcfg.l1
    return 2.0 / math.sqrt(d_in) if tcfg.normalize == "l2" else 2.0


def make_trainer(cfg: SAEConfig, tcfg: TrainConfig, device: str | torch.device,
                 seed: int | None = None) -> TrainableSAE:
    """A trainer initialised from `seed` (default: the run's seed)."""
    seed = tcfg.seed if seed is None else seed
    if cfg.arch == "topk":
        return TopKTrainer(cfg, device=device, seed=seed)
    return ReLUTrainer(cfg, l1=relu_l1(tcfg, cfg.d_in), device=device, seed=seed)


def _seeded(cfg: SAEConfig, seed: int) -> SAEConfig:
    """`cfg` recording `seed` as the init seed (cfg.extra["seed"], which `sae eval` reads back)."""
    return replace(cfg, extra={**cfg.extra, "seed": seed})


def learning_report(saes: Sequence[SAE], seeds: Sequence[int], companions: Sequence[SAE] = (),
                    companion_seed: int | None = None) -> list[dict[str, Any]]:
    """Per SAE of the grid: its decoder movement from its init and, when companions (same learning rates,
    another seed) were trained, the two seeds' stability and that of two untrained inits."""
    from babelscope.sae.convergence import decoder_movement, init_stability, initial_decoder, stability

    out = []
    control = None
    for i, (sae, seed) in enumerate(zip(saes, seeds, strict=True)):
        init = initial_decoder(sae.cfg.d_sae, sae.cfg.d_in, seed)
        entry: dict[str, Any] = {"decoder": {"seed": seed, **decoder_movement(sae.W_dec, init)}}
        if companions:
            if control is None:
                control = init_stability(sae.cfg.d_sae, sae.cfg.d_in, (seed, int(companion_seed)))
            other = companions[i]
            init_b = initial_decoder(sae.cfg.d_sae, sae.cfg.d_in, int(companion_seed))
            entry["stability"] = {"seeds": [seed, companion_seed], **stability(sae.W_dec, other.W_dec),
                                  "companion_decoder": decoder_movement(other.W_dec, init_b),
                                  "init_control": control}
        out.append(entry)
    return out


def _fingerprint(tcfg: TrainConfig, sae_cfg: SAEConfig) -> dict[str, Any]:
    keep = {k: v for k, v in tcfg.to_dict().items()
            if k not in ("checkpoint_every", "log_every", "extra", "report_to")}
    return {"train": keep, "hook": sae_cfg.hook_name, "d_in": sae_cfg.d_in, "d_sae": sae_cfg.d_sae}


# ---- the loop ----------------------------------------------------------------------------------------
def train_on_source(train_source: Any, val: torch.Tensor, tcfg: TrainConfig, sae_cfg: SAEConfig, *,
                    out_dir: str | Path | None = None, resume: bool = False,
                    device: str | torch.device = "cpu",
                    callback: Callable[[int, dict[str, Any]], None] | None = None,
                    rank: int = 0, world: int = 1, describe: dict[str, Any] | None = None) -> TrainResult:
    """Train one SAE per learning rate on a source of RAW activations; validate on `val` (RAW rows).

    `sae_cfg` gives arch, widths, hook and normalisation (its `scale` is estimated here when normalize is
    "scale"). `callback(step, info)` runs after every step (a sweep's logger; tests kill runs with it).
    """
    from babelscope.progress import progress

    out = Path(out_dir) if out_dir is not None else None
    steps, lrs = tcfg.steps, tcfg.lrs
    local_batch = tcfg.batch_size // world
    if local_batch * world != tcfg.batch_size:
        raise UserError(f"--batch-size {tcfg.batch_size} must be divisible by the number of processes ({world})")
    warmup = min(tcfg.warmup_steps, max(1, steps // 10))
    window = tcfg.dead_window or min(10_000_000, max(tcfg.tokens // 10, tcfg.batch_size))
    every = tcfg.checkpoint_every or max(1, steps // 20)
    val = val.to(device)
    buffer = ShuffleBuffer(train_source, sae_cfg.d_in, size=tcfg.buffer_size, batch_size=local_batch,
                           seed=tcfg.seed * 31 + rank, device=device)

    # every (learning rate, seed) pair trains on the same batches; the companions (stability seed) come last
    seeds = [tcfg.seed] + ([tcfg.stability_seed] if tcfg.stability_seed is not None else [])
    runs = [(lr, seed) for seed in seeds for lr in lrs]
    trainers = [make_trainer(_seeded(sae_cfg, seed), tcfg, device, seed) for _, seed in runs]
    opts = [make_optimizer(t, lr, tcfg) for t, (lr, _) in zip(trainers, runs, strict=True)]
    since = [torch.zeros(sae_cfg.d_sae, dtype=torch.long, device=device) for _ in runs]
    step, history, t_train = 0, [], 0.0
    mse_acc = torch.zeros(len(runs), device=device)  # summed MSE since the last logged step
    fp = {**_fingerprint(tcfg, sae_cfg), "source": describe or {}}
    ckpt = out / CHECKPOINT if out is not None else None

    if resume and out is not None and not (ckpt and ckpt.is_file()):
        done = _finished(out, fp, len(lrs))
        if done is not None:
            return done
    if resume and ckpt is not None and ckpt.is_file():
        from babelscope.inputs import load_torch

        state = load_torch(ckpt, "SAE checkpoint")
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise UserError("not an SAE training checkpoint; delete it to start over", path=ckpt)
        check(state["fingerprint"], fp, where=ckpt, what="this checkpoint",
              hint="use a new --out or drop --resume")
        for t, o, s, ts in zip(trainers, opts, since, state["trainers"], strict=True):
            t.load_state_dict(ts["model"])
            o.load_state_dict(ts["opt"])
            s.copy_(ts["since"])
        sae_cfg = SAEConfig.from_dict(state["sae_cfg"])
        for t, (_, seed) in zip(trainers, runs, strict=True):
            t.cfg = _seeded(sae_cfg, seed)
        buffer.load_state_dict(state["buffers"][rank])
        step, history, t_train = state["step"], state["history"], state["t_train"]
        mse_acc.copy_(state["mse_acc"])
    else:
        first = buffer.next_batch()
        if first is None:
            raise UserError("corpus too small: no training activations after the validation set (add documents, "
                            "or lower --val-tokens or --model-batch-size: validation takes whole model batches)")
        if sae_cfg.normalize == "scale":  # one fixed factor, from the validation rows (or the first batch)
            scale = torch.tensor([scale_for(val if len(val) else first)], device=device)
            broadcast_([scale], world)
            sae_cfg = replace(sae_cfg, scale=float(scale))
            for t, (_, seed) in zip(trainers, runs, strict=True):
                t.cfg = _seeded(sae_cfg, seed)
        u0 = normalize_batch(first, sae_cfg.normalize, sae_cfg.scale)
        for t in trainers:
            t.init_b_dec(u0)
            broadcast_(list(t.parameters()), world)
        buffer.ready = torch.cat([first, buffer.ready])  # the sample is trained on as well

    def save_checkpoint() -> None:
        buffers = [buffer.state_dict()]
        if world > 1:
            import torch.distributed as tdist

            gathered: list[Any] = [None] * world if rank == 0 else []
            tdist.gather_object(buffers[0], gathered if rank == 0 else None, dst=0)
            buffers = gathered
        if rank != 0 or ckpt is None:
            return
        state = {"fingerprint": fp, "sae_cfg": trainers[0].cfg.to_dict(), "step": step, "history": history,
                 "t_train": t_train, "buffers": buffers, "mse_acc": mse_acc.cpu(),
                 "trainers": [{"model": t.state_dict(), "opt": o.state_dict(), "since": s.cpu()}
                              for t, o, s in zip(trainers, opts, since, strict=True)]}
        with atomic_path(ckpt) as tmp:
            torch.save(state, tmp)

    tracker = Tracker(out, tcfg.report_to, step) if out is not None and rank == 0 else Tracker("", [])
    bar = progress(total=steps * tcfg.batch_size, initial=step * tcfg.batch_size,
                   desc=f"sae {sae_cfg.arch} x{len(runs)}", unit="act", unit_scale=True)
    while step < steps:
        x = buffer.next_batch()
        have = torch.tensor([0.0 if x is None else 1.0])
        all_reduce_([have], world, average=False)
        if have.item() < world:
            served = step * tcfg.batch_size
            raise UserError(f"corpus too small: the stream ran out after {served} training activations, "
                            f"--tokens asks {tcfg.tokens} (add documents, lower --tokens, or select more "
                            "positions per context)")
        t0 = time.perf_counter()
        u = normalize_batch(x, sae_cfg.normalize, sae_cfg.scale)
        for i, (tr, optim) in enumerate(zip(trainers, opts, strict=True)):
            st = sae_step(tr, optim, u, since[i], lr=lr_at(step, runs[i][0], warmup),
                          window=window if tcfg.auxk else None, tokens=tcfg.batch_size, world=world)
            mse_acc[i] += st["mse"]
        t_train += time.perf_counter() - t0
        step += 1
        bar.update(tcfg.batch_size)
        if step % tcfg.log_every == 0 or step == steps:
            n = (step - 1) % tcfg.log_every + 1
            mses = (mse_acc / n).tolist()[:len(lrs)]  # the companions' losses are not logged
            mse_acc.zero_()
            history.append({"step": step, "mse": mses})
            tracker.log(step, {_tag("train/mse", lr, lrs): m for lr, m in zip(lrs, mses, strict=True)})
            bar.set_postfix(mse=f"{min(mses):.4g}")
        if callback is not None:
            callback(step, {"step": step, "steps": steps})
        if step % every == 0 and step < steps:
            save_checkpoint()
    bar.close()

    all_saes = [t.to_sae() for t in trainers]
    all_metrics = [_validate(sae, val, s, window, world) | {"steps": step, "train_tokens": step * tcfg.batch_size}
                   for sae, s in zip(all_saes, since, strict=True)]
    saes, companions = all_saes[:len(lrs)], all_saes[len(lrs):]
    learned = learning_report(saes, [tcfg.seed] * len(lrs), companions, tcfg.stability_seed)
    grid = [{"lr": lr, **m, **extra} for lr, m, extra in zip(lrs, all_metrics[:len(lrs)], learned, strict=True)]
    for g in grid:
        tracker.log(step, {_tag(f"eval/{k}", g["lr"], lrs): g.get(k) for k in ("mse", "fve", "l0", "dead_fraction")})
    tracker.close()
    passes, per_pass = getattr(train_source, "passes", 0), getattr(train_source, "pass_rows", 0)
    epochs = step * local_batch / per_pass if passes and per_pass else None  # None: within one pass
    if epochs is not None and rank == 0:
        print(f"babelscope: note: the corpus gives {per_pass * world} training activations per pass; training on "
              f"{step * tcfg.batch_size} took {epochs:.2f} passes over it (epochs)", file=sys.stderr)
    key = "mse" if len(val) else "dead_train_fraction"
    best = min(range(len(lrs)), key=lambda i: (grid[i].get(key, math.inf), i))
    rate = step * tcfg.batch_size / t_train if t_train else 0.0
    problems = learning_problems(grid[best])
    training = {"complete": True, "learned": not problems, "warnings": problems, "best_lr": lrs[best],
                "metrics": grid[best], "lr_grid": grid,
                "train": tcfg.to_dict(), "l1": relu_l1(tcfg, sae_cfg.d_in) if tcfg.arch == "relu" else None,
                "dead_window": window, "warmup_steps": warmup, "world_size": world,
                "sae_step_activations_per_s": rate, "sae_step_seconds": t_train, "history": history,
                "source": describe or {}, "fingerprint": fp, "epochs": epochs,
                "activations_per_pass": per_pass * world if passes else None}
    if out is not None and rank == 0:
        save_sae(saes[best], out, training)
        if len(lrs) > 1:
            for lr, sae, m in zip(lrs, saes, grid, strict=True):
                save_sae(sae, out / "lr_grid" / f"lr-{lr:g}", {**training, "metrics": m, "lr": lr})
        if companions:
            own = {"lr": lrs[best], **all_metrics[len(lrs) + best],
                   **learning_report([companions[best]], [int(tcfg.stability_seed)])[0]}
            save_sae(companions[best], out / f"seed-{tcfg.stability_seed}",
                     {**training, "metrics": own, "learned": not learning_problems(own),
                      "warnings": learning_problems(own), "companion_of": str(out)})
        if ckpt is not None:
            ckpt.unlink(missing_ok=True)
    if rank == 0:
        from babelscope.errors import warn

        for problem in problems:
            warn(f"the SAE{f' in {out}' if out is not None else ''} probably learned nothing useful: {problem} "
                 "(training.json records this as learned: false)")
    return TrainResult(saes[best], grid[best], grid, out, saes, companions[best] if companions else None)


def _validate(sae: SAE, val: torch.Tensor, since: torch.Tensor, window: int, world: int) -> dict[str, Any]:
    """Validation metrics of one trained SAE (all ranks' rows under DDP) and its dead share in training."""
    from babelscope.sae.metrics import summarize

    stats = validation_stats(sae, val) if len(val) else None
    if stats is not None:
        all_reduce_(list(stats.values()), world, average=False)
    m = summarize(stats) if stats is not None else {}
    m["dead_train_fraction"] = float((since >= window).float().mean())
    return m


def _tag(name: str, lr: float, lrs: Sequence[float]) -> str:
    """A tracker tag, per learning rate when a grid is trained."""
    return f"{name}/lr_{lr:g}" if len(lrs) > 1 else name


def learning_problems(metrics: dict[str, Any]) -> list[str]:
    """Why an SAE with these validation metrics probably did not learn (empty when nothing is wrong): it
    explains no variance (FVE <= 0), ran fewer than MIN_STEPS steps, its decoder rows stayed near their random
    init, or two seeds matched no better than two untrained inits (`sae.convergence.LEARNED`)."""
    from babelscope.sae.convergence import movement_problems

    problems = movement_problems(metrics)
    fve = metrics.get("fve")
    if fve is not None and not fve > 0:
        problems.append(f"its fraction of variance explained is {fve:.3g} (<= 0: worse than predicting the mean)")
    if metrics.get("steps", MIN_STEPS) < MIN_STEPS:
        problems.append(f"it trained {metrics['steps']} steps (< {MIN_STEPS}); raise --tokens or lower --batch-size")
    return problems


def _finished(out: Path, fp: dict[str, Any], n_lrs: int) -> TrainResult | None:
    """The result of a run that already completed in `out` with the same settings (resume is then a no-op)."""
    from babelscope.sae.io import load_sae, read_training

    info = read_training(out) if (out / "cfg.json").is_file() else {}
    if not info.get("complete") or not same(info.get("fingerprint"), fp):
        return None
    best = load_sae(out)
    saes = [load_sae(out / "lr_grid" / f"lr-{g['lr']:g}") for g in info["lr_grid"]] if n_lrs > 1 else [best]
    seed = info.get("train", {}).get("stability_seed")
    companion = load_sae(out / f"seed-{seed}") if seed is not None and (out / f"seed-{seed}").is_dir() else None
    return TrainResult(best, info["metrics"], info["lr_grid"], out, saes, companion)


def _record_source(data: Sequence[str | Path] | Iterable[dict] | Callable[[], Iterable[dict]],
                   text_field: str) -> Callable[[], Iterable[dict]]:
    from babelscope.corpus import iter_corpus

    if callable(data):
        return data
    if isinstance(data, list | tuple) and data and isinstance(data[0], str | Path):
        from babelscope.corpus import check_corpus

        paths = check_corpus(data, text_field)  # a bad file fails before the model loads
        return lambda: iter_corpus(paths, text_field)
    if isinstance(data, list | tuple):
        records = list(data)
        if not records:
            raise UserError("corpus is empty (no records)")
        return lambda: iter(records)
    raise UserError("data must be corpus paths, a list of records or a callable returning records")


def _dataset_path(data: Any) -> str:
    """Where the training text lies, for the SAE's metadata: the file, the folder of several files, or ""."""
    if not (isinstance(data, list | tuple) and data and all(isinstance(p, str | Path) for p in data)):
        return ""
    paths = [Path(p).resolve() for p in data]
    return str(paths[0]) if len(paths) == 1 else os.path.commonpath(paths)


def train_sae(model: Any, hook: str, data: Any, out_dir: str | Path | None = None, *,
              config: TrainConfig | None = None, tokenizer: Any = None, cache_dir: str | Path | None = None,
              resume: bool = False, device: str = "cpu", threads: int | None = None,
              callback: Callable[[int, dict[str, Any]], None] | None = None, **overrides: Any) -> TrainResult:
    """Train SAE(s) on `hook` of `model` (a model dir, or an HF model with `tokenizer`) over `data`.

    `data`: corpus paths, a list of records or a callable returning records. Keyword overrides set TrainConfig
    fields (arch, k, tokens, lrs, ...). With `cache_dir`, activations are computed once into .npy shards and
    every later run with the same settings trains from them. Returns the best SAE, its metrics and the grid.
    """
    from babelscope.files import check_output, sweep_stale
    from babelscope.inputs import check_torch_file
    from babelscope.models import load_model, resolve_device
    from babelscope.models.fingerprint import model_fingerprint
    from babelscope.models.hooks import hook_width, parse_hook

    tcfg = replace(config or TrainConfig(), **overrides)
    if out_dir is not None:
        check_output(out_dir, directory=True, what="SAE directory")
        if resume and (Path(out_dir) / CHECKPOINT).is_file():
            check_torch_file(Path(out_dir) / CHECKPOINT, "SAE checkpoint")
    records = _record_source(data, tcfg.text_field)
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    d = dist.init(device)
    rank, world = d.rank, d.world
    if d.enabled and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
    if out_dir is not None and rank == 0:
        sweep_stale(out_dir)
    model_name = str(model) if isinstance(model, str | Path) else getattr(model, "name_or_path", "")
    model_id = identify(model) if isinstance(model, str | Path) else model_name  # what a resume must match
    if isinstance(model, str | Path):
        model, tokenizer = load_model(model, device=device)
    elif tokenizer is None:
        raise UserError("train_sae needs `tokenizer` when given a model object")
    parse_hook(model, hook)
    d_in = hook_width(model, hook)
    if out_dir is not None and rank == 0:  # the SAEs and their checkpoint (weights, Adam moments, the buffer)
        weights = 4 * 2 * d_in * (tcfg.d_sae or tcfg.expansion * d_in) * (len(tcfg.lrs) + 1)
        check_output(out_dir, directory=True, what="SAE directory", need=4 * weights + 8 * d_in * tcfg.buffer_size)
    if cache_dir is not None and rank == 0 and not (Path(cache_dir) / "cache.json").exists():
        check_output(cache_dir, directory=True, what="activation cache", need=4 * d_in * (tcfg.val_tokens + tcfg.tokens))
    positions: Positions = parse_positions(tcfg.positions)
    fingerprint = model_fingerprint(model)
    sae_cfg = SAEConfig(arch=tcfg.arch, d_in=d_in, d_sae=tcfg.d_sae or tcfg.expansion * d_in,
                        k=tcfg.k if tcfg.arch == "topk" else None, hook_name=hook, model=model_name,
                        model_fingerprint=fingerprint, normalize=tcfg.normalize, context_size=tcfg.context_size,
                        extra={"positions": str(positions), "seed": tcfg.seed, "dataset_path": _dataset_path(data)})
    describe = {"model": model_id, "model_fingerprint": fingerprint, "hook": hook, "positions": str(positions),
                "context_size": tcfg.context_size, "seed": tcfg.seed}
    if isinstance(data, list | tuple) and data and isinstance(data[0], str | Path):
        describe["data"] = identify(list(data))

    def model_source(r: int, w: int) -> ModelSource:
        return ModelSource(model, tokenizer, records, hook, positions=positions, context_size=tcfg.context_size,
                           batch_size=tcfg.model_batch_size, seed=tcfg.seed, rank=r, world=w, device=device)

    if cache_dir is not None:
        need = tcfg.val_tokens + tcfg.tokens
        if rank == 0:  # a corpus short of `need` is cached whole and trained on in epochs
            build_cache(model_source(0, 1), cache_dir, need, describe=describe,
                        min_rows=tcfg.val_tokens + tcfg.batch_size)
        dist.barrier(d)
        rows = read_cache_meta(cache_dir)["rows"]
        per_v, per_t = tcfg.val_tokens // world, min(tcfg.tokens, rows - tcfg.val_tokens) // world
        v0, t0 = rank * per_v, tcfg.val_tokens + rank * per_t
        val = take(CacheSource(cache_dir, v0, v0 + per_v, device=device), per_v)
        source: Any = CacheSource(cache_dir, t0, t0 + per_t, device=device, loop=rows < need)
    else:
        source = model_source(rank, world)
        val_n = tcfg.val_tokens // world
        val = take(source, val_n) if val_n else torch.empty(0, d_in, device=device)
        if len(val) < val_n:
            raise CorpusTooSmall(f"corpus too small: it gave {len(val)} activations, the validation set alone "
                                 f"needs {val_n} (add documents or lower --val-tokens)", len(val), val_n)
        source.repeat_from_here()  # a small corpus is read again (epochs), never its validation documents
    return train_on_source(source, val, tcfg, sae_cfg, out_dir=out_dir, resume=resume, device=device,
                           callback=callback, rank=rank, world=world, describe=describe)

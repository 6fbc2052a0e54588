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

Many hooks, one pass: `train_saes` reads several hook points from one LM forward per batch (`SharedPass`, stopped
after the deepest hook) and gives each hook its own `HookTrainer` (its grid and stability companions, optimizers,
dead-latent clocks, shuffling buffer, checkpoint and output directory OUT/<hook>/), stepped in lock-step. Each
hook's SAEs are the ones a run on that hook alone would give: the same activations reach its buffer in the same
order.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from babelscope import dist
from babelscope.dist import all_reduce_, broadcast_
from babelscope.errors import UserError
from babelscope.files import atomic_path
from babelscope.models.hooks import KINDS
from babelscope.resume import check, identify, same
from babelscope.sae.base import SAE, SAEConfig, input_scale
from babelscope.sae.buffer import (
    CacheSource,
    CorpusTooSmall,
    Positions,
    SharedPass,
    ShuffleBuffer,
    build_caches,
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
    precision: str = opt("auto", "the language model's forward: bf16 autocast (auto: on a GPU that has bf16) or "
                                 "fp32; SAE weights stay fp32", choices=("auto", "fp32", "bf16"))
    compile: bool = opt(False, "torch.compile each SAE's loss (pays off on a GPU; compiling takes a while)")
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
    hook: str | None = opt(None, "hook point(s), e.g. layers.1.mlp.act or blocks.1.mlp.hook_post (layers.last.* "
                                 "for the last layer); several, comma-separated, train one SAE each from one pass "
                                 "of the model (OUT/<hook>/)")
    layers: str | None = opt(None, "instead of --hook: 'all' or layer indices (0,2,5), one hook per layer at --site")
    site: str = opt("resid_post", "the hook site of --layers", choices=KINDS)
    data: list[str] = opt(help="corpus files (JSONL, .txt, Parquet)")
    out: str = opt(help="SAE directory to write (SAELens layout + training.json); with several hooks one "
                        "subdirectory per hook")
    distribute: str = opt("data", "under torchrun: data = each rank reads its share of the documents and every "
                                  "SAE is data-parallel (gradients all-reduced); hooks = the hooks are dealt to the "
                                  "ranks, each reads all documents for its own", choices=("data", "hooks"))
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
             window: int | None, tokens: int, world: int = 1, loss_fn: Callable | None = None) -> dict[str, Any]:
    """One optimisation step on normalised inputs u; updates the dead-latent clock `since` in place.

    forward + backward, all-reduce under DDP, drop the decoder-parallel gradient, Adam, unit decoder rows.
    `loss_fn` replaces `tr.loss` (its torch.compile'd version).
    """
    dead = since >= window if window is not None else None
    loss, st = (loss_fn or tr.loss)(u, dead)
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


def _fingerprint(tcfg: TrainConfig, sae_cfg: SAEConfig, describe: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resumed or reused run must match: the settings that change the result, the hook and the source."""
    keep = {k: v for k, v in tcfg.to_dict().items()
            if k not in ("checkpoint_every", "log_every", "extra", "report_to", "compile")}
    return {"train": keep, "hook": sae_cfg.hook_name, "d_in": sae_cfg.d_in, "d_sae": sae_cfg.d_sae,
            "source": describe or {}}


# ---- the loop ----------------------------------------------------------------------------------------
class HookTrainer:
    """One hook's SAEs (one per learning rate, and with `stability_seed` one more per rate from that seed) on one
    source of RAW activations: trainers, optimizers, dead-latent clocks, shuffling buffer, checkpoint and output
    directory. `train_on_source` runs one; `train_on_sources` steps several in lock-step on the batches of one
    LM pass.

    `sae_cfg` gives arch, widths, hook and normalisation (its `scale` is estimated in `start` when normalize is
    "scale"); `val` holds RAW validation rows.
    """

    def __init__(self, source: Any, val: torch.Tensor, tcfg: TrainConfig, sae_cfg: SAEConfig, *,
                 out_dir: str | Path | None = None, resume: bool = False, device: str | torch.device = "cpu",
                 rank: int = 0, world: int = 1, describe: dict[str, Any] | None = None):
        self.tcfg, self.sae_cfg, self.rank, self.world = tcfg, sae_cfg, rank, world
        self.out = Path(out_dir) if out_dir is not None else None
        self.resume, self.device, self.describe = resume, device, describe
        self.steps, self.lrs = tcfg.steps, tcfg.lrs
        self.local_batch = tcfg.batch_size // world
        if self.local_batch * world != tcfg.batch_size:
            raise UserError(f"--batch-size {tcfg.batch_size} must be divisible by the number of processes ({world})")
        self.warmup = min(tcfg.warmup_steps, max(1, self.steps // 10))
        self.window = tcfg.dead_window or min(10_000_000, max(tcfg.tokens // 10, tcfg.batch_size))
        self.every = tcfg.checkpoint_every or max(1, self.steps // 20)
        self.val = val.to(device)
        self.source = source
        self.buffer = ShuffleBuffer(source, sae_cfg.d_in, size=tcfg.buffer_size, batch_size=self.local_batch,
                                    seed=tcfg.seed * 31 + rank, device=device)
        # every (learning rate, seed) pair trains on the same batches; the companions (stability seed) come last
        seeds = [tcfg.seed] + ([tcfg.stability_seed] if tcfg.stability_seed is not None else [])
        self.runs = [(lr, seed) for seed in seeds for lr in self.lrs]
        self.trainers = [make_trainer(_seeded(sae_cfg, seed), tcfg, device, seed) for _, seed in self.runs]
        self.losses = [torch.compile(t.loss) if tcfg.compile else t.loss for t in self.trainers]
        self.opts = [make_optimizer(t, lr, tcfg) for t, (lr, _) in zip(self.trainers, self.runs, strict=True)]
        self.since = [torch.zeros(sae_cfg.d_sae, dtype=torch.long, device=device) for _ in self.runs]
        self.step, self.history, self.t_train = 0, [], 0.0
        self.fp = _fingerprint(tcfg, sae_cfg, describe)
        self.ckpt = self.out / CHECKPOINT if self.out is not None else None
        self.mse_acc = torch.zeros(len(self.runs), device=device)  # summed MSE since the last logged step
        self.tracker: Tracker | None = None
        self.result: TrainResult | None = None  # set once finished (or found finished by `start`)

    @property
    def hook(self) -> str:
        return self.sae_cfg.hook_name

    @property
    def finished(self) -> bool:
        return self.result is not None

    def start(self) -> None:
        """Continue from the checkpoint (with `resume`), reuse a finished run's result, or initialise b_dec (and
        the scale) from the first batch."""
        tcfg, out, ckpt = self.tcfg, self.out, self.ckpt
        if self.resume and out is not None and not (ckpt and ckpt.is_file()):
            done = _finished(out, self.fp, len(self.lrs))
            if done is not None:
                self.result = done
                self._close_source()
                return
        if self.resume and ckpt is not None and ckpt.is_file():
            from babelscope.inputs import load_torch

            state = load_torch(ckpt, "SAE checkpoint")
            if not isinstance(state, dict) or "fingerprint" not in state:
                raise UserError("not an SAE training checkpoint; delete it to start over", path=ckpt)
            check(state["fingerprint"], self.fp, where=ckpt, what="this checkpoint",
                  hint="use a new --out or drop --resume")
            for t, o, s, ts in zip(self.trainers, self.opts, self.since, state["trainers"], strict=True):
                t.load_state_dict(ts["model"])
                o.load_state_dict(ts["opt"])
                s.copy_(ts["since"])
            self._set_cfg(SAEConfig.from_dict(state["sae_cfg"]))
            self.buffer.load_state_dict(state["buffers"][self.rank])
            self.step, self.history, self.t_train = state["step"], state["history"], state["t_train"]
            self.mse_acc.copy_(state["mse_acc"])
        else:
            first = self.buffer.next_batch()
            if first is None:
                raise UserError("corpus too small: no training activations after the validation set (add "
                                "documents, or lower --val-tokens or --model-batch-size: validation takes whole "
                                "model batches)")
            sae_cfg = self.sae_cfg
            if sae_cfg.normalize == "scale":  # one fixed factor, from the validation rows (or the first batch)
                scale = torch.tensor([scale_for(self.val if len(self.val) else first)], device=self.device)
                broadcast_([scale], self.world)
                self._set_cfg(replace(sae_cfg, scale=float(scale)))
            u0 = normalize_batch(first, self.sae_cfg.normalize, self.sae_cfg.scale)
            for t in self.trainers:
                t.init_b_dec(u0)
                broadcast_(list(t.parameters()), self.world)
            self.buffer.ready = torch.cat([first, self.buffer.ready])  # the sample is trained on as well
        self.tracker = Tracker(out, tcfg.report_to, self.step) if out is not None and self.rank == 0 else Tracker("", [])

    def _set_cfg(self, sae_cfg: SAEConfig) -> None:
        self.sae_cfg = sae_cfg
        for t, (_, seed) in zip(self.trainers, self.runs, strict=True):
            t.cfg = _seeded(sae_cfg, seed)

    def _close_source(self) -> None:
        close = getattr(self.source, "close", None)
        if callable(close):
            close()

    def train_step(self) -> None:
        """One batch through every SAE of the grid (and the companions); logs the grid's losses."""
        tcfg = self.tcfg
        x = self.buffer.next_batch()
        have = torch.tensor([0.0 if x is None else 1.0])
        all_reduce_([have], self.world, average=False)
        if have.item() < self.world:
            served = self.step * tcfg.batch_size
            raise UserError(f"corpus too small: the stream ran out after {served} training activations, "
                            f"--tokens asks {tcfg.tokens} (add documents, lower --tokens, or select more "
                            "positions per context)")
        t0 = time.perf_counter()
        u = normalize_batch(x, self.sae_cfg.normalize, self.sae_cfg.scale)
        window = self.window if tcfg.auxk else None
        for i, (tr, optim) in enumerate(zip(self.trainers, self.opts, strict=True)):
            st = sae_step(tr, optim, u, self.since[i], lr=lr_at(self.step, self.runs[i][0], self.warmup),
                          window=window, tokens=tcfg.batch_size, world=self.world, loss_fn=self.losses[i])
            self.mse_acc[i] += st["mse"]
        self.t_train += time.perf_counter() - t0
        self.step += 1
        step, lrs = self.step, self.lrs
        if step % tcfg.log_every == 0 or step == self.steps:
            n = (step - 1) % tcfg.log_every + 1
            mses = (self.mse_acc / n).tolist()[:len(lrs)]  # the companions' losses are not logged
            self.mse_acc.zero_()
            self.history.append({"step": step, "mse": mses})
            self.tracker.log(step, {_tag("train/mse", lr, lrs): m for lr, m in zip(lrs, mses, strict=True)})

    def save_checkpoint(self) -> None:
        buffers = [self.buffer.state_dict()]
        if self.world > 1:
            import torch.distributed as tdist

            gathered: list[Any] = [None] * self.world if self.rank == 0 else []
            tdist.gather_object(buffers[0], gathered if self.rank == 0 else None, dst=0)
            buffers = gathered
        if self.rank != 0 or self.ckpt is None:
            return
        state = {"fingerprint": self.fp, "sae_cfg": self.trainers[0].cfg.to_dict(), "step": self.step,
                 "history": self.history, "t_train": self.t_train, "buffers": buffers, "mse_acc": self.mse_acc.cpu(),
                 "trainers": [{"model": t.state_dict(), "opt": o.state_dict(), "since": s.cpu()}
                              for t, o, s in zip(self.trainers, self.opts, self.since, strict=True)]}
        with atomic_path(self.ckpt) as tmp:
            torch.save(state, tmp)

    def finish(self) -> TrainResult:
        """Validate every SAE, keep the grid's best, write the SAELens directories (rank 0: OUT, OUT/lr_grid/*,
        the companion in OUT/seed-N) with training.json, and warn about an SAE that probably learned nothing."""
        tcfg, lrs, out, step, window, world = self.tcfg, self.lrs, self.out, self.step, self.window, self.world
        self._close_source()
        all_saes = [t.to_sae() for t in self.trainers]
        all_metrics = [_validate(sae, self.val, s, window, world) | {"steps": step, "train_tokens": step * tcfg.batch_size}
                       for sae, s in zip(all_saes, self.since, strict=True)]
        saes, companions = all_saes[:len(lrs)], all_saes[len(lrs):]
        learned = learning_report(saes, [tcfg.seed] * len(lrs), companions, tcfg.stability_seed)
        grid = [{"lr": lr, **m, **extra} for lr, m, extra in zip(lrs, all_metrics[:len(lrs)], learned, strict=True)]
        for g in grid:
            self.tracker.log(step, {_tag(f"eval/{k}", g["lr"], lrs): g.get(k)
                                    for k in ("mse", "fve", "l0", "dead_fraction")})
        self.tracker.close()
        passes, per_pass = getattr(self.source, "passes", 0), getattr(self.source, "pass_rows", 0)
        epochs = step * self.local_batch / per_pass if passes and per_pass else None  # None: within one pass
        if epochs is not None and self.rank == 0:
            print(f"babelscope: note: the corpus gives {per_pass * world} training activations per pass at "
                  f"{self.hook}; training on {step * tcfg.batch_size} took {epochs:.2f} passes over it (epochs)",
                  file=sys.stderr)
        key = "mse" if len(self.val) else "dead_train_fraction"
        best = min(range(len(lrs)), key=lambda i: (grid[i].get(key, math.inf), i))
        rate = step * tcfg.batch_size / self.t_train if self.t_train else 0.0
        problems = learning_problems(grid[best])
        training = {"complete": True, "learned": not problems, "warnings": problems, "best_lr": lrs[best],
                    "metrics": grid[best], "lr_grid": grid,
                    "train": tcfg.to_dict(), "l1": relu_l1(tcfg, self.sae_cfg.d_in) if tcfg.arch == "relu" else None,
                    "dead_window": window, "warmup_steps": self.warmup, "world_size": world,
                    "sae_step_activations_per_s": rate, "sae_step_seconds": self.t_train, "history": self.history,
                    "source": self.describe or {}, "fingerprint": self.fp, "epochs": epochs,
                    "activations_per_pass": per_pass * world if passes else None}
        if out is not None and self.rank == 0:
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
            if self.ckpt is not None:
                self.ckpt.unlink(missing_ok=True)
        if self.rank == 0:
            from babelscope.errors import warn

            for problem in problems:
                warn(f"the SAE{f' in {out}' if out is not None else ''} probably learned nothing useful: {problem} "
                     "(training.json records this as learned: false)")
        self.result = TrainResult(saes[best], grid[best], grid, out, saes, companions[best] if companions else None)
        return self.result


def train_on_sources(runs: Sequence[HookTrainer], *, callback: Callable[[int, dict[str, Any]], None] | None = None
                     ) -> list[TrainResult]:
    """Train several hooks' SAEs in lock-step (one step of each in turn), so one LM pass feeds them all; each
    checkpoints and finishes on its own. `callback(step, info)` runs after every step of every hook."""
    from babelscope.progress import progress

    for r in runs:
        r.start()
    active = [r for r in runs if not r.finished]
    batch = runs[0].tcfg.batch_size if runs else 0
    desc = (f"sae {runs[0].sae_cfg.arch} x{len(runs[0].runs)}" + (f" x{len(active)} hooks" if len(active) > 1 else "")
            if runs else "sae")
    bar = progress(total=sum(r.steps for r in active) * batch, initial=sum(r.step for r in active) * batch,
                   desc=desc, unit="act", unit_scale=True)
    while active:
        for r in list(active):
            r.train_step()
            bar.update(batch)
            if callback is not None:
                callback(r.step, {"step": r.step, "steps": r.steps, "hook": r.hook})
            if r.step >= r.steps:
                r.finish()
                active.remove(r)
            elif r.step % r.every == 0:
                r.save_checkpoint()
    bar.close()
    return [r.result for r in runs]


def train_on_source(train_source: Any, val: torch.Tensor, tcfg: TrainConfig, sae_cfg: SAEConfig, *,
                    out_dir: str | Path | None = None, resume: bool = False,
                    device: str | torch.device = "cpu",
                    callback: Callable[[int, dict[str, Any]], None] | None = None,
                    rank: int = 0, world: int = 1, describe: dict[str, Any] | None = None) -> TrainResult:
    """Train one SAE per learning rate on a source of RAW activations; validate on `val` (RAW rows).

    `sae_cfg` gives arch, widths, hook and normalisation (its `scale` is estimated here when normalize is
    "scale"). `callback(step, info)` runs after every step (a sweep's logger; tests kill runs with it).
    """
    run = HookTrainer(train_source, val, tcfg, sae_cfg, out_dir=out_dir, resume=resume, device=device, rank=rank,
                      world=world, describe=describe)
    return train_on_sources([run], callback=callback)[0]


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


def expand_hooks(model: Any, hook: str | Sequence[str] | None = None, layers: str | None = None,
                 site: str = "resid_post") -> list[str]:
    """The hook points to train, checked against `model`: a comma list (or list) of names, `layers.last.*` or a
    negative layer counted from the top, or `layers` ('all' or indices) at `site`; one of the two is needed."""
    from babelscope.models.hooks import decoder_layers, from_top, parse_hook

    n = len(decoder_layers(model))
    if (hook is None) == (layers is None):
        raise UserError("give the hook points with --hook (comma-separated) or --layers with --site, not both")
    if layers is not None:
        if str(layers).strip() == "all":
            idx = list(range(n))
        else:
            try:
                idx = [int(x) for x in str(layers).split(",") if x.strip()]
            except ValueError:
                raise UserError(f"--layers expects 'all' or comma-separated layer indices, got '{layers}'") from None
        names = [f"layers.{i}.{site}" for i in idx]
    else:
        names = [h.strip() for h in (hook.split(",") if isinstance(hook, str) else hook) if h.strip()]
    out = []
    for name in names:
        name = from_top(name, n)  # a recipe names the last layer
        parse_hook(model, name)
        out.append(name)
    if not out:
        raise UserError("no hook points given")
    if len({parse_hook(model, h) for h in out}) < len(out):
        raise UserError(f"a hook point is named twice: {', '.join(out)}")
    return out


def hook_dirs(out: str | Path | None, hooks: Sequence[str]) -> dict[str, Path | None]:
    """Where each hook's SAE goes: OUT itself for one hook, OUT/<hook> (babelscope spelling) for several."""
    from babelscope.models.hooks import HookPoint

    if out is None:
        return dict.fromkeys(hooks)
    if len(hooks) == 1:
        return {hooks[0]: Path(out)}
    return {h: Path(out) / HookPoint.parse(h).format() for h in hooks}


def train_saes(model: Any, hooks: str | Sequence[str] | None, data: Any,
               out_dirs: Mapping[str, str | Path | None] | str | Path | None = None, *, layers: str | None = None,
               site: str = "resid_post", config: TrainConfig | None = None, tokenizer: Any = None,
               cache_dir: str | Path | Mapping[str, str | Path] | None = None, resume: bool = False,
               device: str = "cpu", threads: int | None = None, distribute: str = "data",
               callback: Callable[[int, dict[str, Any]], None] | None = None, **overrides: Any
               ) -> dict[str, TrainResult]:
    """Train SAE(s) on every hook of `model` (a model dir, or an HF model with `tokenizer`) from ONE pass over `data`.

    `data`: corpus paths, a list of records or a callable returning records. Keyword overrides set TrainConfig
    fields (arch, k, tokens, lrs, ...). `hooks` as `expand_hooks` reads them (or `layers` at `site`). `out_dirs`
    maps each hook to its SAE directory, or is one directory (`hook_dirs`: one hook -> it, several -> OUT/<hook>). With
    `cache_dir` (one directory, or one per hook), activations are computed once into .npy shards and every later
    run with the same settings trains from them. Under torchrun, `distribute` is "data" (every rank reads its
    share of the documents, gradients are all-reduced), "hooks" (hooks dealt to ranks, each rank reads every
    document for its own; no collectives) or "none" (this process alone). Returns hook -> result, for the hooks
    this process trained.
    """
    from babelscope.files import check_output, sweep_stale
    from babelscope.models import load_model, resolve_device
    from babelscope.models.contexts import lm_autocast, resolve_precision
    from babelscope.models.fingerprint import model_fingerprint
    from babelscope.models.hooks import hook_width

    tcfg = replace(config or TrainConfig(), **overrides)
    given = [Path(p) for p in (out_dirs.values() if isinstance(out_dirs, Mapping) else [out_dirs]) if p is not None]
    _check_outputs(given, resume)  # before the model loads
    records = _record_source(data, tcfg.text_field)
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    d = dist.init(device) if distribute != "none" else dist.Dist()
    if d.enabled and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
    model_name = str(model) if isinstance(model, str | Path) else getattr(model, "name_or_path", "")
    model_id = identify(model) if isinstance(model, str | Path) else model_name  # what a resume must match
    if isinstance(model, str | Path):
        model, tokenizer = load_model(model, device=device)
    elif tokenizer is None:
        raise UserError("train_saes needs `tokenizer` when given a model object")
    hooks = expand_hooks(model, hooks, layers, site)
    out_dirs = dict(out_dirs) if isinstance(out_dirs, Mapping) else hook_dirs(out_dirs, hooks)
    if distribute == "hooks" and d.enabled:
        hooks = hooks[d.rank::d.world]
        rank, world = 0, 1
    else:
        rank, world = d.rank, d.world
    _check_outputs([Path(out_dirs[h]) for h in hooks if out_dirs.get(h) is not None], resume)
    positions: Positions = parse_positions(tcfg.positions)
    precision = resolve_precision(tcfg.precision, device)
    fingerprint = model_fingerprint(model)
    paths = isinstance(data, list | tuple) and data and isinstance(data[0], str | Path)
    data_id = identify(list(data)) if paths else None  # the corpus files' content, hashed once for all hooks
    runs: dict[str, tuple[SAEConfig, dict[str, Any]]] = {}
    results: dict[str, TrainResult] = {}
    for hook in hooks:
        d_in = hook_width(model, hook)
        sae_cfg = SAEConfig(arch=tcfg.arch, d_in=d_in, d_sae=tcfg.d_sae or tcfg.expansion * d_in,
                            k=tcfg.k if tcfg.arch == "topk" else None, hook_name=hook, model=model_name,
                            model_fingerprint=fingerprint, normalize=tcfg.normalize, context_size=tcfg.context_size,
                            extra={"positions": str(positions), "seed": tcfg.seed,
                                   "dataset_path": _dataset_path(data)})
        describe = {"model": model_id, "model_fingerprint": fingerprint, "hook": hook, "positions": str(positions),
                    "context_size": tcfg.context_size, "seed": tcfg.seed}
        if data_id is not None:
            describe["data"] = data_id
        if precision != "fp32":
            describe["precision"] = precision
        out = out_dirs.get(hook)
        if out is not None and rank == 0:  # the SAEs and their checkpoint (weights, Adam moments, the buffer)
            sweep_stale(out)
            weights = 4 * 2 * d_in * sae_cfg.d_sae * (len(tcfg.lrs) + 1)
            check_output(out, directory=True, what="SAE directory", need=4 * weights + 8 * d_in * tcfg.buffer_size)
        done = _finished(Path(out), _fingerprint(tcfg, sae_cfg, describe), len(tcfg.lrs)) if resume and out else None
        if done is not None and not (Path(out) / CHECKPOINT).is_file():
            results[hook] = done  # finished earlier: its layer is not computed again
        else:
            runs[hook] = (sae_cfg, describe)
    if not runs:
        return results
    todo = list(runs)

    def shared_pass(r: int, w: int) -> SharedPass:
        return SharedPass(model, tokenizer, records, todo, positions=positions, context_size=tcfg.context_size,
                          batch_size=tcfg.model_batch_size, seed=tcfg.seed, rank=r, world=w, device=device,
                          autocast=lm_autocast(precision, device))

    sources: dict[str, tuple[Any, torch.Tensor]] = {}
    if cache_dir is not None:
        caches = (dict(cache_dir) if isinstance(cache_dir, Mapping)
                  else {h: Path(cache_dir) if len(todo) == 1 else Path(cache_dir) / p.name
                        for h, p in hook_dirs(cache_dir, todo).items()})
        need = tcfg.val_tokens + tcfg.tokens
        if rank == 0:  # a corpus short of `need` is cached whole and trained on in epochs
            for h in todo:
                if not (Path(caches[h]) / "cache.json").exists():
                    check_output(caches[h], directory=True, what="activation cache",
                                 need=4 * runs[h][0].d_in * need)
            build_caches(shared_pass(0, 1), {h: caches[h] for h in todo}, need,
                         describe={h: runs[h][1] for h in todo}, min_rows=tcfg.val_tokens + tcfg.batch_size)
        if world > 1:
            dist.barrier(d)
        for h in todo:
            rows = read_cache_meta(caches[h])["rows"]
            per_v, per_t = tcfg.val_tokens // world, min(tcfg.tokens, rows - tcfg.val_tokens) // world
            v0, t0 = rank * per_v, tcfg.val_tokens + rank * per_t
            val = take(CacheSource(caches[h], v0, v0 + per_v, device=device), per_v)
            sources[h] = (CacheSource(caches[h], t0, t0 + per_t, device=device, loop=rows < need), val)
    else:
        shared = shared_pass(rank, world)
        val_n = tcfg.val_tokens // world
        for h in todo:
            view = shared.view(h)
            val = take(view, val_n) if val_n else torch.empty(0, view.d_in, device=device)
            if len(val) < val_n:
                raise CorpusTooSmall(f"corpus too small: it gave {len(val)} activations, the validation set alone "
                                     f"needs {val_n} (add documents or lower --val-tokens)", len(val), val_n)
            view.repeat_from_here()  # a small corpus is read again (epochs), never its validation documents
            sources[h] = (view, val)
    trainers = [HookTrainer(sources[h][0], sources[h][1], tcfg, runs[h][0], out_dir=out_dirs.get(h), resume=resume,
                            device=device, rank=rank, world=world, describe=runs[h][1]) for h in todo]
    for h, res in zip(todo, train_on_sources(trainers, callback=callback), strict=True):
        results[h] = res
    return {h: results[h] for h in hooks}


def _check_outputs(dirs: Sequence[Path], resume: bool) -> None:
    """Each SAE directory can be written and, when resuming, its checkpoint is a whole file."""
    from babelscope.files import check_output
    from babelscope.inputs import check_torch_file

    for out in dirs:
        check_output(out, directory=True, what="SAE directory")
        if resume and (out / CHECKPOINT).is_file():
            check_torch_file(out / CHECKPOINT, "SAE checkpoint")


def train_sae(model: Any, hook: str, data: Any, out_dir: str | Path | None = None, *,
              config: TrainConfig | None = None, tokenizer: Any = None, cache_dir: str | Path | None = None,
              resume: bool = False, device: str = "cpu", threads: int | None = None,
              callback: Callable[[int, dict[str, Any]], None] | None = None, **overrides: Any) -> TrainResult:
    """Train SAE(s) on one `hook` of `model` over `data` (see `train_saes`); returns the best SAE, its metrics and
    the grid."""
    return train_saes(model, [hook], data, {hook: out_dir}, config=config, tokenizer=tokenizer, cache_dir=cache_dir,
                      resume=resume, device=device, threads=threads, callback=callback, **overrides)[hook]


def train_from_settings(cfg: SAETrainSettings) -> dict[str, TrainResult]:
    """`babelscope sae train` and the recipes' sae stage: the hooks of --hook (or --layers at --site), all trained
    from one pass of the model; returns hook -> result for the hooks this process trained."""
    from babelscope.manifest import manifest
    from babelscope.settings import as_dict, narrow

    tcfg = narrow(cfg, TrainConfig)
    tcfg.extra = {"manifest": manifest("sae train", as_dict(cfg))}
    return train_saes(cfg.model, cfg.hook, list(cfg.data), cfg.out, layers=cfg.layers, site=cfg.site, config=tcfg,
                      cache_dir=cfg.cache, resume=cfg.resume, device=cfg.device, threads=cfg.threads,
                      distribute=cfg.distribute)

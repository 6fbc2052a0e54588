"""SAE training throughput and quality: babelscope vs SAELens vs EleutherAI's sparsify, same data, and every
tool's distance from the dense-matmul limit of the same shapes, measured in the same run.

Every tool trains on the same cached activations (synthetic sparse-dictionary data, L2-normalised rows, written
once as .npy), in the same order, with Adam at the same learning rate, for the same number of steps (TopK: with
AuxK on latents dead for a tenth of the run; ReLU: MSE + L1). Reported: activations/s over the timed steps (after a
warm-up step; the tools' steps are interleaved so machine load hits them alike), the final normalised MSE on
held-out rows (one shared function on each tool's own reconstruction), and `limit`: the time the dense GEMMs of
one step take with torch.mm at the same shapes, over the tool's step time. A TopK step needs the encoder's forward
GEMM [B, d] x [d, n] and, done densely, its weight gradient [d, B] x [B, n] (2 GEMMs); a ReLU step also the
decoder's forward and its two gradients (5 GEMMs). A sparse TopK backward (babelscope) skips the second GEMM, so
it can pass 100%. Peers that are not importable (or have no such architecture) are skipped with a message.

    python benchmarks/sae_train.py --quick              # < 2 minutes on 2 CPU cores
    python benchmarks/sae_train.py --json rows.json     # d_in 256/1024, expansion 16/32, k 32
    python benchmarks/sae_train.py --arch relu --quick  # ReLU + L1 (babelscope, SAELens)
    python benchmarks/sae_train.py --device cuda        # on a GPU (synchronised timing)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

Recon = Callable[[torch.Tensor], torch.Tensor]


def make_activations(path: Path, n: int, d: int, seed: int = 0) -> np.ndarray:
    """n rows of width d: sparse combinations of 8d dictionary directions plus a shared offset, unit norm."""
    if path.exists():
        arr = np.load(path, mmap_mode="r")
        if arr.shape == (n, d):
            return arr
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(8 * d, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    offset = torch.randn(d, generator=g) * 0.5
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        idx = torch.randint(0, 8 * d, (m, 16), generator=g)
        w = torch.rand(m, 16, generator=g).pow(2)
        x = torch.nn.functional.embedding_bag(idx, atoms, per_sample_weights=w, mode="sum") + offset
        x += 0.05 * torch.randn(m, d, generator=g)
        out[s:s + m] = (x / x.norm(dim=1, keepdim=True)).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out)
    os.replace(tmp, path)
    return out


def nmse(recon: Recon, x: torch.Tensor) -> float:
    """||x - x_hat||^2 / ||x - mean(x)||^2 over the held-out rows."""
    with torch.no_grad():
        err = sum(float((recon(c) - c).pow(2).sum()) for c in x.split(8192))
    return err / float((x - x.mean(0)).pow(2).sum())


# ---- the three tools: each returns (step(x, dead_mask), reconstruct(x)) -------------------------------
def babelscope_tool(d: int, n: int, k: int, lr: float, sample: torch.Tensor, arch: str = "topk",
                    device: str = "cpu"):
    from babelscope.sae.base import SAEConfig
    from babelscope.sae.train import TrainConfig, make_optimizer, make_trainer

    cfg = SAEConfig(arch=arch, d_in=d, d_sae=n, k=k if arch == "topk" else None)
    tr = make_trainer(cfg, TrainConfig(arch=arch, l1=L1, normalize="none"), device)
    tr.init_b_dec(sample)
    opt = make_optimizer(tr, lr, TrainConfig())

    def step(x: torch.Tensor, dead: torch.Tensor | None) -> None:
        loss, _ = tr.loss(x, dead)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        tr.project_decoder_grad()
        opt.step()
        tr.normalize_decoder()

    sae = None

    def recon(x: torch.Tensor) -> torch.Tensor:
        nonlocal sae
        sae = sae or tr.to_sae()
        return sae(x)

    return step, recon


def saelens_tool(d: int, n: int, k: int, lr: float, sample: torch.Tensor, arch: str = "topk",
                 device: str = "cpu"):
    from sae_lens.saes.sae import TrainStepInput

    if arch == "topk":
        from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d, d_sae=n, k=k, device=device))
        coefficients: dict = {}
    else:
        from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d, d_sae=n, l1_coefficient=L1, device=device))
        coefficients = {"l1": L1}
    sae.to(device)
    with torch.no_grad():
        sae.b_dec.copy_(sample.median(0).values)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    state = {"step": 0}

    def step(x: torch.Tensor, dead: torch.Tensor | None) -> None:
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients=coefficients, dead_neuron_mask=dead,
                                                       n_training_steps=state["step"], is_logging_step=False))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        state["step"] += 1

    def recon(x: torch.Tensor) -> torch.Tensor:
        return sae.decode(sae.encode(x))

    return step, recon


def sparsify_tool(d: int, n: int, k: int, lr: float, sample: torch.Tensor, arch: str = "topk",
                  device: str = "cpu"):
    if arch != "topk":
        raise ImportError(name="sparsify has TopK SAEs only")
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k), device=device)
    with torch.no_grad():
        sae.b_dec.copy_(sample.median(0).values)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)

    def step(x: torch.Tensor, dead: torch.Tensor | None) -> None:
        out = sae(x, dead_mask=dead)
        loss = out.fvu + (1 / 32) * out.auxk_loss
        opt.zero_grad()
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        sae.set_decoder_norm_to_unit_norm()

    def recon(x: torch.Tensor) -> torch.Tensor:
        return sae(x).sae_out

    return step, recon


TOOLS = {"babelscope": babelscope_tool, "saelens": saelens_tool, "sparsify": sparsify_tool}
L1 = 0.01  # ReLU's L1 coefficient (unit-norm inputs; --l1): small enough that 20-40 steps learn something


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_shapes(d: int, n: int, batch: int, arch: str) -> list[tuple[int, int, int]]:
    """(m, k, n) of the dense GEMMs one training step needs: encoder forward and weight gradient; for ReLU also
    the decoder's forward, weight gradient and input gradient."""
    shapes = [(batch, d, n), (d, batch, n)]
    if arch == "relu":
        shapes += [(batch, n, d), (n, batch, d), (batch, d, n)]
    return shapes


def gemm_operands(shapes: list[tuple[int, int, int]], device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(m, k, device=device), torch.randn(k, nn, device=device)) for m, k, nn in shapes]


def gemm_seconds(mats: list[tuple[torch.Tensor, torch.Tensor]], device: str, repeats: int = 5) -> float:
    """The median time of running every GEMM of `mats` once with torch.mm (fp32), measured now."""
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        for a, b in mats:
            torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]


def bench_config(names: list[str], acts: np.ndarray, val: torch.Tensor, d: int, n: int, k: int, steps: int,
                 batch: int, lr: float, arch: str = "topk", device: str = "cpu") -> list[dict]:
    """Train every tool on the same batches, interleaved step by step so machine load hits them alike; the GEMM
    limit of the same shapes is measured between steps, so it sees the same load."""
    import contextlib
    import io

    tools = {}
    sample = torch.from_numpy(np.array(acts[:batch])).to(device)
    for name in names:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                tools[name] = TOOLS[name](d, n, k, lr, sample, arch, device)
        except ImportError as e:
            print(f"  skip {name}: not importable ({e.name or e})", file=sys.stderr)
    window = max(batch, steps * batch // 10)  # one dead-latent clock, shared: same AuxK work for every tool
    since = torch.zeros(n, dtype=torch.long, device=device)
    elapsed = dict.fromkeys(tools, 0.0)
    mats = gemm_operands(gemm_shapes(d, n, batch, arch), device)
    limit = []
    for i in range(steps + 1):  # step 0 is the warm-up, not timed
        x = torch.from_numpy(np.array(acts[i * batch:(i + 1) * batch])).to(device)
        dead = since >= window
        dead_arg = dead if arch == "topk" and bool(dead.any()) else None
        for name, (step, _) in tools.items():
            _sync(device)
            t0 = time.perf_counter()
            step(x, dead_arg)
            _sync(device)
            if i:
                elapsed[name] += time.perf_counter() - t0
        if i % max(1, steps // 10) == 1 or steps == 1:
            limit.append(gemm_seconds(mats, device, repeats=1))
        since += batch
    t_limit = sorted(limit)[len(limit) // 2]
    return [{"tool": name, "arch": arch, "d_in": d, "n_latents": n, "k": k if arch == "topk" else None,
             "steps": steps, "activations_per_s": steps * batch / elapsed[name],
             "limit_activations_per_s": batch / t_limit, "of_limit": t_limit / (elapsed[name] / steps),
             "nmse": nmse(recon, val.to(device))}
            for name, (_, recon) in tools.items()]


def main(argv: list[str] | None = None) -> int:
    global L1
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="d_in 128, expansion 16, 40 steps of 1024")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default 200, quick 40)")
    p.add_argument("--batch-size", type=int, default=None, help="default 4096, quick 1024")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--arch", default="topk", choices=("topk", "relu"))
    p.add_argument("--l1", type=float, default=None, help=f"ReLU's L1 coefficient (default {L1})")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tools", default="babelscope,saelens,sparsify")
    p.add_argument("--configs", default=None, help="d_in x expansion list (default 256x16,256x32,1024x16,1024x32)")
    p.add_argument("--cache-dir", default=os.environ.get("BABELSCOPE_BENCH_CACHE", "/tmp/babelscope-bench"))
    p.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.l1 is not None:
        L1 = args.l1
    steps = args.steps or (40 if args.quick else 200)
    batch = args.batch_size or (1024 if args.quick else 4096)
    spec = args.configs or ("128x16" if args.quick else "256x16,256x32,1024x16,1024x32")
    configs = [tuple(int(v) for v in c.split("x")) for c in spec.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    rows = []
    print(f"threads {torch.get_num_threads()}, {args.device}, {args.arch}, {steps} steps of {batch}, k {args.k}, "
          f"lr {args.lr:g}, load {os.getloadavg()[0]:.1f}")
    for d, exp in configs:
        n_val = 16384
        acts = make_activations(Path(args.cache_dir) / f"acts-{d}.npy", (steps + 1) * batch + n_val, d)
        val = torch.from_numpy(np.array(acts[-n_val:]))
        got = {}
        for row in bench_config(tools, acts, val, d, d * exp, args.k, steps, batch, args.lr, args.arch, args.device):
            rows.append(row)
            got[row["tool"]] = row
            print(f"{args.arch}  d_in {d:5d}  latents {d * exp:6d}  {row['tool']:10s}  "
                  f"{row['activations_per_s']:10.0f} act/s  {row['of_limit']:6.1%} of the GEMM limit "
                  f"({row['limit_activations_per_s']:.0f} act/s)  nmse {row['nmse']:.4f}", flush=True)
        ours = got.get("babelscope")
        for name, row in got.items():
            if ours and name != "babelscope":
                print(f"    babelscope / {name}: {ours['activations_per_s'] / row['activations_per_s']:.2f}x "
                      f"throughput, nmse {ours['nmse']:.4f} vs {row['nmse']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

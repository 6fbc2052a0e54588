"""`babelscope sae train|eval`: train sparse autoencoders on a model's activations and measure them."""

from __future__ import annotations

import argparse
import json

from babelscope.cli._common import command, group, number


def _floats(value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("expected at least one learning rate")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "sae", "Sparse autoencoders: train them on a model's activations and evaluate them.")

    p = command(g, "train", run_train, "Train a ReLU or TopK SAE (one per learning rate; the best is kept).")
    p.add_argument("--model", required=True, help="HF model directory")
    p.add_argument("--hook", required=True, help="hook point, e.g. layers.1.mlp.act or layers.3.resid_post")
    p.add_argument("--data", nargs="+", required=True, help="corpus files (JSONL, .txt, Parquet)")
    p.add_argument("--out", required=True, help="SAE directory to write (SAELens layout + training.json)")
    p.add_argument("--arch", choices=("relu", "topk"), default="topk")
    p.add_argument("--expansion", type=int, default=16, help="latents per input dimension")
    p.add_argument("--k", type=int, default=32, help="active latents per token (topk)")
    p.add_argument("--l1", type=float, default=None,
                   help="L1 coefficient (relu); default 2 for inputs of norm sqrt(d), 2/sqrt(d) with --normalize l2")
    p.add_argument("--tokens", type=number, default=10_000_000, help="training activations (10M, 2.5k, ...)")
    p.add_argument("--val-tokens", type=number, default=100_000, help="held-out activations for picking the lr")
    p.add_argument("--lr", type=_floats, default=(1e-3,),
                   help="learning rate or comma-separated grid (Study B: 1e-4,2e-4,5e-4,1e-3)")
    p.add_argument("--positions", default="first:64", help="all | first:N | random:N tokens per context")
    p.add_argument("--context-size", type=int, default=128, help="tokens per context (BOS included)")
    p.add_argument("--normalize", choices=("none", "l2", "scale"), default="l2",
                   help="input normalisation: l2 = unit norm per vector; scale = one factor, mean norm sqrt(d)")
    p.add_argument("--batch-size", type=number, default=4096, help="activations per step")
    p.add_argument("--buffer-size", type=number, default=1 << 17, help="activations in the shuffling pool")
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--no-auxk", action="store_true", help="TopK without the AuxK loss")
    p.add_argument("--dead-window", type=number, default=None,
                   help="tokens without firing that make a latent dead (default min(10M, tokens/10))")
    p.add_argument("--model-batch-size", type=int, default=32, help="contexts per forward pass of the model")
    p.add_argument("--text-field", default="text")
    p.add_argument("--cache", default=None, help="activation cache dir: computed once, reused by later runs")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)

    e = command(g, "eval", run_eval, "Measure an SAE: MSE, nMSE, FVE, L0, dead/dense latents, loss recovered.")
    e.add_argument("--sae", required=True, help="SAE directory")
    e.add_argument("--model", required=True, help="HF model directory")
    e.add_argument("--data", nargs="+", required=True, help="corpus files")
    e.add_argument("--tokens", type=number, default=1_000_000, help="activations to evaluate on")
    e.add_argument("--hook", default=None, help="hook point (default: the one in the SAE's cfg.json)")
    e.add_argument("--positions", default=None, help="default: the positions the SAE was trained on")
    e.add_argument("--context-size", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=32, help="contexts per forward pass")
    e.add_argument("--no-lm-loss", action="store_true", help="skip the spliced-model cross-entropy")
    e.add_argument("--text-field", default="text")
    e.add_argument("--device", default="auto")
    e.add_argument("--out", default=None, help="also write the metrics to this JSON file")


def run_train(args: argparse.Namespace) -> int:
    from babelscope.manifest import manifest
    from babelscope.sae.train import TrainConfig, train_sae

    cfg = TrainConfig(arch=args.arch, expansion=args.expansion, k=args.k, l1=args.l1, tokens=args.tokens,
                      val_tokens=args.val_tokens, lrs=args.lr, batch_size=args.batch_size,
                      buffer_size=args.buffer_size, warmup_steps=args.warmup_steps, normalize=args.normalize,
                      positions=args.positions, context_size=args.context_size,
                      model_batch_size=args.model_batch_size, auxk=not args.no_auxk, dead_window=args.dead_window,
                      seed=args.seed, checkpoint_every=args.checkpoint_every, text_field=args.text_field,
                      extra={"manifest": manifest("sae train", vars(args))})
    result = train_sae(args.model, args.hook, list(args.data), args.out, config=cfg, cache_dir=args.cache,
                       resume=args.resume, device=args.device, threads=args.threads)
    if result.out_dir is not None:
        m = result.metrics
        print(f"{result.out_dir}: lr {m['lr']:g}  fve {m.get('fve', float('nan')):.4f}  l0 {m.get('l0', 0):.1f}  "
              f"dead {m.get('dead_fraction', float('nan')):.2%}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from babelscope.corpus import iter_corpus
    from babelscope.files import write_json_atomic
    from babelscope.models import load_model
    from babelscope.sae import load_sae
    from babelscope.sae.metrics import evaluate_sae

    sae = load_sae(args.sae)
    model, tok = load_model(args.model, device=args.device)
    sae = sae.to(next(model.parameters()).device)
    metrics = evaluate_sae(sae, model, tok, iter_corpus(args.data, args.text_field), tokens=args.tokens,
                           hook=args.hook, positions=args.positions, context_size=args.context_size,
                           batch_size=args.batch_size, lm_loss=not args.no_lm_loss)
    if args.out:
        write_json_atomic(args.out, metrics)
    print(json.dumps(metrics, indent=2))
    return 0

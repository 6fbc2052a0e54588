"""The bilingual study end to end on storyworld, sized for a laptop CPU: parallel English/Arabic stories, a
small model trained with log-spaced checkpoints, the checkpoint x layer sweep, and the injection table.

    from babelscope.recipes.bilingual import BilingualRecipe, run_bilingual
    result = run_bilingual("demo_out/bilingual")          # every step resumes if its output exists

Outputs under OUT: data/stories.jsonl, tokenizer/, run/ (checkpoints/step-N, final), study/ (the sweep:
index.html, summary.csv, figures), inject/ (table.md, injection.csv) and report.md with the numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from babelscope.errors import UserError


@dataclass
class BilingualRecipe:
    """Sizes of the demo; the defaults take a few minutes on 2 CPU cores."""

    stories: int = 1000  # parallel pairs: 2 x stories documents (~550k tokens)
    vocab_size: int = 2000
    preset: str = "mini"  # 4 layers x 64: enough depth for the per-layer figures, ~3 minutes in all
    context: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    epochs: float = 1.0
    n_checkpoints: int = 6  # log-spaced over the run, the final model included
    first_checkpoint: float = 1 / 64  # the first checkpoint's share of all training tokens
    layers: str = "all"
    k: int = 32  # capped at d / 4 (16 for the mini preset)
    expansion: int = 16
    sae_tokens: int = 40_000
    store_tokens: int = 10_000
    # The study's 0.1 links a third of random token pairs in a 32-dim embedding (see analysis/entropy.py);
    # "zmatch" gives it the z-score it has at the study's width: 0.1 x sqrt(3072 / d).
    sim_threshold: float | str = "zmatch"
    inject_share: float = 1 / 8  # features injected per type, as a share of the latents (the study: 1000 of 32768)
    inject_alpha: float = 0.1
    inject_docs: int = 100
    seed: int = 0
    device: str = "cpu"


def log_spaced(total: int, n: int, first: float) -> list[int]:
    """`n` token counts spaced evenly in log between `first * total` and `total` (distinct, increasing)."""
    if n < 1 or total < 1:
        return []
    lo = max(1.0, first * total)
    if n == 1:
        return [int(total)]
    ratio = (total / lo) ** (1 / (n - 1))
    return sorted({round(lo * ratio**i) for i in range(n)})


def make_corpus(path: Path, n_pairs: int, seed: int) -> Path:
    """storyworld's parallel stories as separate documents: one English and one Arabic per pair, same `id`."""
    from babelscope.corpus import write_corpus
    from babelscope.corpus.storyworld import generate_stories

    if path.exists():
        return path
    records = []
    for r in generate_stories(n_pairs, seed=seed):
        if r.get("lang") not in ("en", "ar") or not r.get("text"):
            raise UserError(f"storyworld returned a record without lang/text: {sorted(r)}")
        records.append({"id": r["id"], "lang": r["lang"], "text": r["text"]})
    write_corpus(path, records)
    return path


def corpus_tokens(tokenizer_dir: Path, path: Path) -> int:
    """Tokens in the corpus (BOS per document), to place the checkpoints."""
    from babelscope.corpus import iter_corpus
    from babelscope.tokenizer import encode_batch, load_tokenizer

    texts = [r["text"] for r in iter_corpus([path])]
    return sum(len(ids) + 1 for ids in encode_batch(load_tokenizer(tokenizer_dir), texts))


def pick_mid(rows: list[dict], layer: int) -> dict:
    """The mid-training checkpoint for the injection: the one (before the last) whose mixed share at `layer`
    is lowest, as the study chose a checkpoint where the mixed share is low."""
    cands = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["train_tokens"])[:-1]
    if not cands:
        raise UserError("the injection needs at least two checkpoints")
    return min(cands, key=lambda r: (r["mixed_share"], -r["train_tokens"]))


def run_bilingual(out: str | Path, recipe: BilingualRecipe | None = None, *, run: str | Path | None = None,
                  data: list[str | Path] | None = None, log=print) -> dict[str, Any]:
    """Corpus -> tokenizer -> training with checkpoints -> sweep -> injection; returns the headline numbers.

    Pass `run` (a run dir with checkpoints/ and final/) and `data` (documents with `lang`) to reuse a model
    trained elsewhere (e.g. by the demo) and skip the first three steps."""
    from babelscope.analysis.sweep import SweepConfig, cell_dir, find_checkpoints, run_sweep, sae_shape
    from babelscope.files import write_json_atomic, write_text_atomic
    from babelscope.intervene.inject import format_table, run_injection

    r = recipe or BilingualRecipe()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "recipe.json", asdict(r))
    if (run is None) != (data is None):
        raise UserError("pass both run and data, or neither")
    if run is None:
        run, data = _train_run(out, r, log)
    run = Path(run)

    cfg = SweepConfig(layers=r.layers, k=r.k, expansion=r.expansion, sae_tokens=r.sae_tokens,
                      store_tokens=r.store_tokens, sim_threshold=r.sim_threshold, seed=r.seed, device=r.device)
    study = out / "study"
    rows = run_sweep([run], list(data), study, cfg, log=log)

    ckpts = find_checkpoints(run / "checkpoints")
    n_layers = int(rows[0]["n_layers"])
    layer = n_layers // 2
    final, mid = ckpts[-1], pick_mid(rows, layer)
    mid_dir = next(c.path for c in ckpts if c.name == mid["checkpoint"])
    final_cell = cell_dir(study, final, layer)
    d_in = json.loads((final.path / "config.json").read_text())["hidden_size"]
    n = max(1, math.ceil(sae_shape(d_in, r.k, r.expansion)[1] * r.inject_share))
    inject_rows, labels = run_injection(
        final.path, mid_dir, final_cell / "sae", [study / "data" / "eval.jsonl"], out / "inject",
        features_dir=final_cell / "features", types=["all-types"], n=[n], alpha=[r.inject_alpha],
        max_docs=r.inject_docs, device=r.device)
    table = format_table(inject_rows, labels)

    first, last = (sorted((x for x in rows if x["layer"] == layer), key=lambda x: x["train_tokens"])[i]
                   for i in (0, -1))
    result = {
        "layer": layer, "n_layers": n_layers, "checkpoints": [c.name for c in ckpts],
        "mixed_share": {"first": first["mixed_share"], "last": last["mixed_share"]},
        "mean_r_mono": {"first": first["mean_r_mono"], "last": last["mean_r_mono"]},
        "mid_checkpoint": mid["checkpoint"], "inject_n": n, "inject": inject_rows,
        "study": str(study / "index.html"), "table": str(out / "inject" / "table.md"),
    }
    write_json_atomic(out / "result.json", result)
    write_text_atomic(out / "report.md", _report(rows, layer, mid["checkpoint"], n, r.inject_alpha, table))
    return result


def _train_run(out: Path, r: BilingualRecipe, log) -> tuple[Path, list[Path]]:
    """The storyworld corpus, a tokenizer and a training run with log-spaced checkpoints (each step resumes)."""
    from babelscope.tokenizer import train_tokenizer
    from babelscope.train.loop import TrainConfig, train

    stories = make_corpus(out / "data" / "stories.jsonl", r.stories, r.seed)

    tok_dir = out / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():
        from babelscope.corpus import iter_corpus

        train_tokenizer((x["text"] for x in iter_corpus([stories])), vocab_size=r.vocab_size, out_dir=tok_dir)
    run = out / "run"
    if not (run / "final" / "checkpoint.json").exists():
        total = int(corpus_tokens(tok_dir, stories) * r.epochs * 0.99)
        # The last log-spaced point is the end of the run, which final/ already holds.
        milestones = log_spaced(total, r.n_checkpoints, r.first_checkpoint)[:-1]
        log(f"training {r.preset} on {total:,} tokens, checkpoints at {milestones}")
        resume = run.exists() and any((run / "checkpoints").glob("step-*"))
        train(TrainConfig(out=str(run), data=[str(stories)], preset=r.preset, tokenizer=str(tok_dir),
                          context=r.context, batch_size=r.batch_size, lr=r.lr, epochs=r.epochs,
                          checkpoint_at=milestones, seed=r.seed, device=r.device, resume=resume,
                          cache_dir=str(out / "cache"), eval_every=10**9))

    return run, [stories]


def _report(rows: list[dict], layer: int, mid: str, n: int, alpha: float, table: str) -> str:
    lines = ["# Bilingual study (storyworld)", "",
             f"Per checkpoint at layer {layer} (the middle layer): mixed-language share (tau 0.9; 0.8-0.95) and "
             "mean monosemanticity (features with enough activations / without single-token ones).", "",
             "| checkpoint | tokens | mixed | mixed 0.8-0.95 | R_mono | R_mono multi | live |", "|---|---|---|---|---|---|---|"]
    for x in sorted((x for x in rows if x["layer"] == layer), key=lambda x: x["train_tokens"]):
        lines.append(f"| {x['checkpoint']} | {x['train_tokens']:,} | {x['mixed_share']:.3f} | "
                     f"{x['mixed_share_t080']:.3f}-{x['mixed_share_t095']:.3f} | {x['mean_r_mono']:.3f} | "
                     f"{x['mean_r_mono_multi']:.3f} | {x['n_alive']} |")
    link = rows[0].get("pair_link_rate", float("nan"))
    lines += ["", f"Semantic clusters: cosine > {rows[0]['sim_threshold']:.3f} "
              f"({rows[0].get('sim_threshold_note', 'fixed')}; random token pairs linked: {link:.1%}), embeddings of "
              "the final model.",
              f"Features with fewer than {rows[0].get('min_activations', 10)} activating occurrences are "
              f"'insufficient' and left out of shares and means ({rows[0].get('n_insufficient', 0)} of "
              f"{rows[0]['n_alive']} live features in the first cell).",
              "", f"Injection into {mid} (n = {n} features per type, alpha = {alpha}, raw space):", "", table]
    return "\n".join(lines) + "\n"

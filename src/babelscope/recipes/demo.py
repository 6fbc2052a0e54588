"""The main job, `make demo`: the first study's pipeline on storyworld, end to end, on a CPU.

Every stage writes into `out/` and is skipped when its output is already there, so a killed demo picks up
where it stopped. Sizes are demo sizes: the paper trains on 2M stories; here a few thousand stories and a
larger learning rate (3e-3 instead of 5e-5) let a small preset learn in minutes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from babelscope.files import write_json_atomic, write_jsonl_atomic
from babelscope.settings import Settings, opt


@dataclass(kw_only=True)
class DemoConfig(Settings):
    """`babelscope demo`: Study A's pipeline (and Study B's, smaller) on storyworld, sized for a 2-core CPU."""

    out: str = opt("demo_out", "output directory (a rerun skips finished stages)")
    stories: int = opt(3000, "translated-style Arabic stories for pre-training", gt=0)
    native_share: float = opt(0.01, "the native set's size relative to the translated one (the study: 1%)",
                              gt=0.0, le=1.0)
    native_epochs: float = opt(20.0, "passes over the small native set during continual pre-training", gt=0.0)
    valid_stories: int = opt(200, "held-out stories of each style, for validation losses", gt=0)
    vocab_size: int = opt(4000, "BPE vocabulary", ge=259)
    preset: str = opt("1M", "model preset (see `babelscope models list`)")
    context: int = opt(128, "tokens per training window", gt=1)
    batch_size: int = opt(16, "windows per step", gt=0)
    lr: float = opt(3e-3, "pre-training learning rate (the paper's 5e-5 needs 2M stories)", gt=0.0)
    cp_lr: float = opt(1e-3, "continual pre-training learning rate", gt=0.0)
    sae_arch: str = opt("relu", "Study A: ReLU + L1, expansion 16, on the last MLP layer after the SiLU",
                        choices=("relu", "topk"))
    sae_expansion: int = opt(16, "SAE latents per input dimension", gt=0)
    sae_tokens: int = opt(200_000, "SAE training activations per model", gt=0)
    sae_lr: float = opt(3e-3, "SAE learning rate", gt=0.0)
    sae_l1: float = opt(2.0, "SAE L1 coefficient on inputs scaled to norm sqrt(d)", ge=0.0)
    store_tokens: int = opt(40_000, "tokens of the feature store per model", gt=0)
    dashboards: int = opt(24, "feature pages per model: the most name-biased features of each kind", ge=0)
    mark_samples: int = opt(4, "generations per opener for the translation-mark counts", gt=0)
    bilingual: bool = opt(True, "skip the bilingual study (the second study's sweep and injection)",
                          flag="--no-bilingual")
    seed: int = opt(0, "seed of the data, models and SAEs")
    device: str = opt("cpu", "cpu, cuda or auto")
    prompts: tuple[str, ...] = opt(("في يوم من الأيام، ذهبت فتاة صغيرة تدعى", "قال", "كان هناك ولد صغير اسمه"),
                                   "story openers the two models complete", cli=False)


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(cfg: DemoConfig, out: Path) -> dict[str, Path]:
    """Translated-style pre-training stories, a native set of `native_share` of their size, and held-out sets."""
    from babelscope.corpus.storyworld import generate_stories

    data = out / "data"
    n_native = max(1, round(cfg.stories * cfg.native_share))
    # Different seeds: the native stories are new stories, not re-renderings of the translated ones.
    plan = {
        "translated": (cfg.stories, "translated", cfg.seed, 0),
        "native": (n_native, "native", cfg.seed + 1, 0),
        "valid_translated": (cfg.valid_stories, "translated", cfg.seed + 2, 0),
        "valid_native": (cfg.valid_stories, "native", cfg.seed + 3, 0),
        "tokenizer_native": (cfg.stories, "native", cfg.seed + 4, 0),
    }
    paths = {}
    for name, (n, style, seed, start) in plan.items():
        paths[name] = data / f"{name}.jsonl"
        if not paths[name].exists():
            write_jsonl_atomic(paths[name], generate_stories(n, langs=("ar",), style=style, seed=seed, start=start))
    _log(f"data: {cfg.stories} translated-style and {n_native} native Arabic stories in {data}")
    return paths


def train_models(cfg: DemoConfig, out: Path, paths: dict[str, Path]) -> dict[str, Path]:
    """Tokenizer, pre-training on translated stories, continual pre-training on the native set."""
    from babelscope.corpus import iter_corpus
    from babelscope.tokenizer import iter_texts, train_tokenizer
    from babelscope.train.loop import TrainConfig, train

    tok = out / "tokenizer"
    if not (tok / "tokenizer.json").exists():
        # The tokenizer also reads as many native stories (used for nothing else), so that Arabic names are
        # tokens and TSEA has an Arabic-name set to score: the study's 32k vocabulary, trained on 2M stories,
        # held common Arabic names; a demo-sized vocabulary trained on translated stories alone would not.
        train_tokenizer(iter_texts(iter_corpus([paths["translated"], paths["tokenizer_native"]])), cfg.vocab_size,
                        tok, model_max_length=cfg.context)
    cache = str(out / "cache")
    common = {"context": cfg.context, "batch_size": cfg.batch_size, "seed": cfg.seed, "device": cfg.device,
              "cache_dir": cache, "eval_batches": 8}
    runs = {"base": out / "base", "cp": out / "cp"}
    if not (runs["base"] / "final").exists():
        _log(f"pre-training preset {cfg.preset} on translated-style stories")
        train(TrainConfig(out=str(runs["base"]), data=[str(paths["translated"])], preset=cfg.preset,
                          tokenizer=str(tok), val_data=[str(paths["valid_translated"])], lr=cfg.lr, epochs=1.0,
                          eval_every=100, resume=runs["base"].exists(), **common))
    if not (runs["cp"] / "final").exists():
        _log("continual pre-training on the native set, from the saved optimizer state")
        train(TrainConfig(out=str(runs["cp"]), data=[str(paths["native"])], init_from=str(runs["base"] / "final"),
                          val_data=[str(paths["valid_native"])], lr=cfg.cp_lr, epochs=cfg.native_epochs,
                          eval_every=25, resume=runs["cp"].exists(), **common))
    return {k: v / "final" for k, v in runs.items()}


def compare(cfg: DemoConfig, out: Path, paths: dict[str, Path], models: dict[str, Path]) -> dict:
    """Validation losses of both models on both styles, and a few generations from each."""
    from babelscope.corpus import iter_corpus
    from babelscope.eval.perplexity import perplexity
    from babelscope.generate import generate
    from babelscope.models import load_model

    table: dict[str, dict] = {}
    samples: dict[str, list] = {}
    for name, path in models.items():
        model, tok = load_model(path, device=cfg.device)
        table[name] = {style: perplexity(model, tok, iter_corpus([paths[f"valid_{style}"]]),
                                         max_tokens=cfg.context, label_field="style")["all"]
                       for style in ("translated", "native")}
        samples[name] = generate(model, tok, list(cfg.prompts), n=1, max_new_tokens=80, temperature=1.0,
                                 top_k=50, seed=cfg.seed)
    print("\nvalidation loss (nats/token) and bits per byte")
    print(f"{'model':<6} {'translated':>12} {'native':>12} {'bpb transl.':>12} {'bpb native':>12}")
    for name, row in table.items():
        print(f"{name:<6} {row['translated']['loss']:>12.3f} {row['native']['loss']:>12.3f} "
              f"{row['translated']['bpb']:>12.3f} {row['native']['bpb']:>12.3f}")
    for name, outs in samples.items():
        print(f"\ngenerations from {name} ({models[name]}):")
        for prompt, (text,) in zip(cfg.prompts, outs, strict=True):
            print(f"  {prompt}{text}".replace("\n", " ")[:300])
    return {"losses": table, "samples": {k: [s[0] for s in v] for k, v in samples.items()}}


def inspect(cfg: DemoConfig, out: Path, paths: dict[str, Path], models: dict[str, Path]) -> dict:
    """Study A's look inside: an SAE on the last MLP layer of each model, TSEA of English vs Arabic names (and
    names before punctuation, the dialogue-tag hypothesis), the feature store and dashboards."""
    import numpy as np
    import pyarrow.parquet as pq
    from transformers import AutoConfig

    from babelscope.analysis.name_bias import findings_lines, name_bias_findings
    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.analysis.tsea import TseaConfig, analyze_tsea
    from babelscope.report.dashboard import build_site, load_for_site, read_tsea
    from babelscope.report.tsea import FIGURES, tsea_figures
    from babelscope.sae import train_sae

    result = {}
    for name, model_dir in models.items():
        layers = AutoConfig.from_pretrained(model_dir).num_hidden_layers
        hook = f"layers.{layers - 1}.mlp.act"
        sae_dir, tsea_dir = out / "sae" / name, out / "tsea" / name
        feats_dir, site = out / "features" / name, out / "site" / name
        if not (sae_dir / "cfg.json").exists():
            _log(f"{name}: training a {cfg.sae_arch} SAE on {hook}")
            train_sae(model_dir, hook, [paths["translated"], paths["native"]], sae_dir, arch=cfg.sae_arch,
                      expansion=cfg.sae_expansion, tokens=cfg.sae_tokens, val_tokens=cfg.sae_tokens // 10,
                      l1=cfg.sae_l1, lrs=[cfg.sae_lr], batch_size=256, buffer_size=1 << 15, positions="all",
                      normalize="scale", context_size=cfg.context, seed=cfg.seed, device=cfg.device)
        if not (tsea_dir / "meta.json").exists():
            _log(f"{name}: token set enrichment (English names, Arabic names, names before punctuation) against "
                 "null directions")
            analyze_tsea(TseaConfig(model=str(model_dir), sae=str(sae_dir),
                                    sets=["english_names", "arabic_names", "name_then_punct"], out=str(tsea_dir),
                                    data=[str(paths["translated"]), str(paths["native"])],
                                    scatter="arabic_names,english_names", device=cfg.device))
        if not (tsea_dir / FIGURES).exists():
            tsea_figures(tsea_dir)
        meta = json.loads((tsea_dir / "meta.json").read_text())
        primary = meta["null"]["families"][meta["null"]["primary"]]["threshold_count"]
        table = pq.read_table(tsea_dir / "tsea.parquet").to_pydict()
        score = {s: np.array([v for v, t in zip(table["log_score"], table["set"], strict=True) if t == s])
                 for s in ("english_names", "arabic_names")}
        gap = score["english_names"] - score["arabic_names"]
        threshold = meta["threshold"]  # Study A's "2 points" from the diagonal, on the -ln(1 - ES) scale
        english, arabic = np.flatnonzero(gap > threshold), np.flatnonzero(gap < -threshold)
        if not (feats_dir / "meta.json").exists():
            build_store(model_dir, sae_dir, [paths["valid_translated"], paths["valid_native"]], feats_dir,
                        StoreConfig(tokens=cfg.store_tokens, context=cfg.context, label_field="style"),
                        device=cfg.device)
        if not (site / "index.html").exists():
            store, tok, model, sae = load_for_site(feats_dir, model_dir=model_dir, sae_dir=sae_dir,
                                                   device=cfg.device)
            half = cfg.dashboards // 2
            pick = [*gap.argsort()[::-1][:half], *gap.argsort()[:half]]
            alive = set(np.flatnonzero(store.features()["n_active"] > 0).tolist())
            build_site(store, site, tok, model=model, sae=sae, tsea=read_tsea(tsea_dir),
                       features=sorted({int(f) for f in pick} & alive), source=str(model_dir))
        result[name] = {"hook": hook, "features": len(gap), "english_biased": len(english),
                        "arabic_biased": len(arabic), "threshold": threshold,
                        "null": meta["null"]["primary"],
                        "random_directions": {"english_biased": primary["english_names"]["mean"],
                                              "arabic_biased": primary["arabic_names"]["mean"]},
                        "top_english": [int(f) for f in english[np.argsort(-gap[english])][:5]]}
    print("\nSAE features whose enrichment for English names exceeds Arabic names by > 2 (log scale), and back;"
          "\nin brackets, the mean count over the seeds of the first null family (directions that learned nothing)")
    for name, r in result.items():
        rnd = r["random_directions"]
        print(f"  {name:<5} {r['english_biased']:>4} ({rnd['english_biased']:>6.1f}) English-biased   "
              f"{r['arabic_biased']:>4} ({rnd['arabic_biased']:>6.1f}) Arabic-biased   of {r['features']} features "
              f"({r['hook']}; null: {r['null']})")
    findings = name_bias_findings({name: out / "tsea" / name for name in models})
    print("\nthe calibrated test (each feature's gap against each null family's, Benjamini-Hochberg):")
    for line in findings_lines(findings):
        print(f"  {line}")
    result["findings"] = findings
    return result


def marks(cfg: DemoConfig, out: Path, models: dict[str, Path]) -> dict:
    """The translation marks counted directly in stories the models write from name-free openers."""
    from babelscope.eval.judge import bundled_prompts, load_prompts
    from babelscope.eval.marks import mark_counts
    from babelscope.generate import generate
    from babelscope.models import load_model

    path = out / "marks.json"
    if path.exists():
        rows = json.loads(path.read_text())
    else:
        prompts = [p["prompt"] for p in load_prompts(bundled_prompts("openers.jsonl"), "ar")]
        rows = {}
        for name, model_dir in models.items():
            model, tok = load_model(model_dir, device=cfg.device)
            outs = generate(model, tok, prompts, n=cfg.mark_samples, max_new_tokens=120, temperature=1.0,
                            seed=cfg.seed)
            texts = [p + t for p, ts in zip(prompts, outs, strict=True) for t in ts]
            rows[name] = mark_counts(texts, "ar")
        write_json_atomic(path, rows)
    print("\ntranslation marks in generated stories (English-origin name share, tags after the quote)")
    for name, r in rows.items():
        print(f"  {name:<5} names {r['names_english']:>3} English / {r['names_arabic']:>3} Arabic "
              f"(share {r['english_name_share']:.2f}; {r.get('names_ambiguous', 0)} ambiguous)   tags {r['tags_after']:>3} after / {r['tags_before']:>3} "
              f"before (share {r['tag_after_share']:.2f})   distinct-2 {r['distinct_2']:.2f}")
    return rows


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage; returns (and writes to out/summary.json) the numbers a person looks at."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    paths = build_data(cfg, out)
    models = train_models(cfg, out, paths)
    summary = {"config": asdict(cfg), **compare(cfg, out, paths, models)}
    summary["marks"] = marks(cfg, out, models)
    summary["tsea"] = inspect(cfg, out, paths, models)
    if cfg.bilingual:
        from babelscope.recipes.bilingual import run_bilingual

        _log("the bilingual study: English + Arabic model, checkpoints x layers sweep, injection")
        summary["bilingual"] = run_bilingual(out / "bilingual", log=_log)
    summary["seconds"] = round(time.time() - t0, 1)
    write_json_atomic(out / "summary.json", summary)
    _log(f"done in {summary['seconds']:.0f} s; outputs in {out}/ (summary.json)")
    return summary

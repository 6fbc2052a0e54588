"""The stage kinds a recipe can name. Each kind runs one library function with one settings dataclass (the same
class its command's flags build), filling in where its files go, and says what its outputs are.

A kind's `fill` gives the fields the runner sets from the stage directory (outputs, resume); a stage table may
not set them. Its `outputs` are the paths other stages refer to (`@stage` is "main"). `volatile` fields
(device, threads) do not enter the stage's key: moving a run to a GPU does not redo finished stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

VOLATILE = ("device", "threads", "model_batch_size", "batch_size_eval")


@dataclass
class Context:
    """What a running stage may need besides its settings: the run's root and a logger."""

    root: Path
    log: Callable[[str], None] = print
    stage: str = ""


@dataclass(frozen=True)
class Kind:
    name: str
    settings: str  # "module:Class"
    run: Callable[[Any, Path, Context], None]
    outputs: Callable[[Any, Path], dict[str, str]]
    fill: dict[str, Callable[[Path, Context], Any]] = field(default_factory=dict)
    command: tuple[str, ...] = ()  # the CLI command that runs this kind under torchrun (nproc > 1)
    volatile: tuple[str, ...] = VOLATILE


def _has_checkpoints(path: Path) -> bool:
    return ((path / "checkpoints").is_dir() and any((path / "checkpoints").iterdir())) or (path / "final").is_dir()


# ---- data ------------------------------------------------------------------------------------------------------

def _storyworld(cfg, d: Path, ctx: Context) -> None:
    from babelscope.corpus.storyworld import generate_stories
    from babelscope.files import write_jsonl_atomic

    n = write_jsonl_atomic(cfg.out, generate_stories(cfg.stories, cfg.langs, cfg.style, cfg.seed,
                                                     cfg.dialogue_before_rate))
    ctx.log(f"{n} records ({cfg.stories} stories x {','.join(cfg.langs)}, {cfg.style})")


def _translate(cfg, d: Path, ctx: Context) -> None:
    from babelscope.data.translate import check_inputs, load_backend, translate_corpus

    check_inputs(cfg.inputs, cfg.text_field)
    stats = translate_corpus(load_backend(cfg.backend, cfg.model, cfg.src, cfg.tgt, **cfg.backend_options()), cfg)
    ctx.log(f"translated {stats.written} records ({stats.skipped} already there)")


def _synth(cfg, d: Path, ctx: Context) -> None:
    import os

    from babelscope.data.client import OpenAIClient
    from babelscope.data.synth import synthesize

    key = os.environ.get(cfg.api_key_env) or None
    with OpenAIClient(cfg.base_url, key, key_name=cfg.api_key_env, timeout=cfg.timeout,
                      max_retries=cfg.max_retries) as client:
        client.check(cfg.model)
        stats = synthesize(client, cfg)
    ctx.log(f"{stats.written} stories written ({stats.already} already there)")


def _tokenizer(cfg, d: Path, ctx: Context) -> None:
    from babelscope.corpus import iter_corpus
    from babelscope.tokenizer import iter_texts, train_tokenizer

    tok = train_tokenizer(iter_texts(iter_corpus(cfg.data, cfg.text_field)), cfg.vocab_size, cfg.out,
                          min_frequency=cfg.min_frequency, model_max_length=cfg.context)
    ctx.log(f"{len(tok)} tokens")


# ---- models ----------------------------------------------------------------------------------------------------

def _train(cfg, d: Path, ctx: Context) -> None:
    from babelscope.train.loop import train

    train(cfg)


def _train_outputs(cfg, d: Path) -> dict[str, str]:
    return {"main": str(d / "final"), "run": str(d), "checkpoints": str(d / "checkpoints"),
            "loss": str(d / "loss.png"), "metrics": str(d / "metrics.csv")}


# ---- evaluation ------------------------------------------------------------------------------------------------

def _losses(cfg, d: Path, ctx: Context) -> None:
    from babelscope.eval.compare import compare_models

    compare_models(cfg, log=ctx.log)


def _marks(cfg, d: Path, ctx: Context) -> None:
    from babelscope.eval.runs import marks_rows

    for r in marks_rows(cfg):
        ctx.log(f"{r['model']}: English-name share {r['english_name_share']:.2f}, tags after the quote "
                f"{r['tag_after_share']:.2f}")


def _judge(cfg, d: Path, ctx: Context) -> None:
    from babelscope.eval.runs import judge_rows

    rows, failures, n = judge_rows(cfg)
    for r in rows:
        ctx.log(f"{r['model']}: grammar {r['grammar']:.2f} creativity {r['creativity']:.2f} "
                f"consistency {r['consistency']:.2f}")
    if failures:
        ctx.log(f"{len(failures)} of {n} completions have no scores (see judgements.jsonl)")


# ---- SAEs and features -----------------------------------------------------------------------------------------

def _sae(cfg, d: Path, ctx: Context) -> None:
    from babelscope.sae.train import train_from_settings

    if cfg.hook:  # `layers.last.*` needs the model's depth, read from its config.json
        cfg = replace(cfg, hook=",".join(resolve_hook(cfg.model, h.strip()) for h in cfg.hook.split(",")))
    for hook, result in train_from_settings(cfg).items():
        m = result.metrics
        ctx.log(f"{hook}: fve {m.get('fve', float('nan')):.3f}, l0 {m.get('l0', float('nan')):.1f}, dead "
                f"{m.get('dead_fraction', float('nan')):.1%}")


def resolve_hook(model_dir: str, hook: str) -> str:
    """A hook name with `last` (or a negative index) as its layer, resolved against the depth in the model's
    config.json: a recipe names the last MLP layer of a model it has not trained yet."""
    from babelscope.inputs import field, read_json
    from babelscope.models.hooks import from_top

    if from_top(hook, 1) == hook:
        return hook
    cfg_path = Path(model_dir) / "config.json"
    return from_top(hook, field(read_json(cfg_path, "config.json"), "num_hidden_layers", int, cfg_path))


def _features(cfg, d: Path, ctx: Context) -> None:
    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.settings import as_dict, narrow

    meta = build_store(cfg.model, cfg.sae, cfg.data, cfg.out, narrow(cfg, StoreConfig), text_field=cfg.text_field,
                       device=cfg.device, keep_cache=cfg.keep_cache, command_args=as_dict(cfg),
                       precision=cfg.precision)
    ctx.log(f"{meta['tokens']:,} tokens, {meta['n_features']:,} features")


def _tsea(cfg, d: Path, ctx: Context) -> None:
    from babelscope.analysis.name_bias import findings_lines, model_findings
    from babelscope.analysis.tsea import analyze_tsea
    from babelscope.report.tsea import tsea_figures

    meta = analyze_tsea(cfg)
    tsea_figures(cfg.out)
    if meta.get("null") and len(meta.get("scatter_pair") or []) == 2:
        for line in findings_lines({"models": {"this": model_findings(meta)}}):
            ctx.log(line)


def _tsea_outputs(cfg, d: Path) -> dict[str, str]:
    from babelscope.analysis.token_sets import parse_specs

    x, y = parse_specs([cfg.scatter]) if cfg.scatter else parse_specs(cfg.sets)[1::-1]
    stem = f"scatter_{y}_vs_{x}"
    return {"main": str(d), "scatter": str(d / f"{stem}.png"), "page": str(d / f"{stem}.html"),
            "manhattan": str(d / "manhattan.png")}


def _dashboard(cfg, d: Path, ctx: Context) -> None:
    from babelscope.report.dashboard import make_site

    ctx.log(f"{make_site(cfg)['pages']} feature pages")


# ---- studies ---------------------------------------------------------------------------------------------------

def _sweep(cfg, d: Path, ctx: Context) -> None:
    from babelscope.recipes.sweep import SweepConfig, run_sweep
    from babelscope.settings import narrow

    runs = ([cfg.checkpoints] if cfg.checkpoints else []) + list(cfg.runs)
    run_sweep(runs, cfg.data, cfg.out, narrow(cfg, SweepConfig), log=ctx.log)


def _inject(cfg, d: Path, ctx: Context) -> None:
    from babelscope.recipes.study_b import run_study_injection

    run_study_injection(cfg, log=ctx.log)


def _study_a(cfg, d: Path, ctx: Context) -> None:
    from babelscope.recipes.study_a import summarize_study_a

    summarize_study_a(cfg, log=ctx.log)


def _study_b(cfg, d: Path, ctx: Context) -> None:
    from babelscope.recipes.study_b import summarize_study_b

    summarize_study_b(cfg, log=ctx.log)


def _report(cfg, d: Path, ctx: Context) -> None:
    from babelscope.report.report import write_report

    page = write_report(cfg, root=ctx.root)
    ctx.log(f"wrote {page}")


def _out(name: str = "") -> Callable[[Path, Context], str]:
    return lambda d, ctx: str(d / name) if name else str(d)


def _main(name: str = "") -> Callable[[Any, Path], dict[str, str]]:
    return lambda cfg, d: {"main": str(d / name) if name else str(d)}


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("storyworld", "babelscope.corpus.storyworld:StoryworldConfig", _storyworld, _main("corpus.jsonl"),
         {"out": _out("corpus.jsonl")}),
    Kind("translate", "babelscope.data.translate:TranslateJob", _translate, _main("translated.jsonl"),
         {"out": _out("translated.jsonl")}, command=("translate",)),
    Kind("synth", "babelscope.data.synth:SynthConfig", _synth, _main("stories.jsonl"), {"out": _out("stories.jsonl")}),
    Kind("tokenizer", "babelscope.tokenizer:TokenizerConfig", _tokenizer, _main(), {"out": _out()}),
    Kind("train", "babelscope.train.loop:TrainConfig", _train, _train_outputs,
         {"out": _out(), "resume": lambda d, ctx: _has_checkpoints(d),
          "cache_dir": lambda d, ctx: str(ctx.root / "cache")}, command=("train",)),
    Kind("losses", "babelscope.eval.compare:CompareConfig", _losses, _main("losses.json"), {"out": _out()}),
    Kind("marks", "babelscope.eval.settings:MarksConfig", _marks, _main("marks.json"), {"out": _out()}),
    Kind("judge", "babelscope.eval.settings:JudgeConfig", _judge, _main("scores.csv"), {"out": _out()}),
    Kind("sae", "babelscope.sae.train:SAETrainSettings", _sae, _main(),
         {"out": _out(), "resume": lambda d, ctx: any(d.glob("**/checkpoint.pt"))}, command=("sae", "train")),
    Kind("features", "babelscope.analysis.store:FeaturesConfig", _features, _main(), {"out": _out()}),
    Kind("tsea", "babelscope.analysis.tsea:TseaConfig", _tsea, _tsea_outputs, {"out": _out()}),
    Kind("dashboard", "babelscope.report.dashboard:DashboardConfig", _dashboard, _main("index.html"),
         {"out": _out()}),
    Kind("sweep", "babelscope.recipes.sweep:StudyConfig", _sweep,
         lambda cfg, d: {"main": str(d), "page": str(d / "index.html"), "fig_layers": str(d / "fig_layers.png"),
                         "fig_spans": str(d / "fig_spans.png"), "summary": str(d / "summary.csv")},
         {"out": _out()}, command=("study", "bilingual")),
    Kind("inject", "babelscope.recipes.study_b:StudyInjectConfig", _inject,
         lambda cfg, d: {"main": str(d / "injection.json"), "table": str(d / "table.md")}, {"out": _out()}),
    Kind("study_a", "babelscope.recipes.study_a:StudyAConfig", _study_a, _main("summary.json"), {"out": _out()}),
    Kind("study_b", "babelscope.recipes.study_b:StudyBConfig", _study_b, _main("summary.json"), {"out": _out()}),
    Kind("report", "babelscope.report.report:ReportConfig", _report, _main("index.html"), {"out": _out()}),
]}

"""Translation quality: sacrebleu's BLEU and chrF++ per corpus and language pair, and COMET from a local model.

A translation is paired with its reference by a field both carry (`--key`), else by `source_index` (what
`translate` writes: the record's position in its input, which is the reference file's order), else by `id`
when the references' ids are unique, else line by line. Scores are sacrebleu's corpus scores, reported with its
signatures so that a number can be compared with a paper's. COMET is optional (`unbabel-comet` and a model
directory the user has; nothing is downloaded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelscope.errors import UserError
from babelscope.settings import Settings, opt

TOKENIZERS = ("13a", "intl", "char", "none", "zh")
COLUMNS = ["corpus", "pair", "segments", "bleu", "chrf++"]


@dataclass(kw_only=True)
class TranslationEvalConfig(Settings):
    """`babelscope eval translation`: BLEU and chrF++ (and COMET) of translations against references."""

    hyp: list[str] = opt(help="translations: JSONL from `babelscope translate`, or any corpus file with a text field")
    ref: list[str] = opt(help="references, one file per --hyp file, in the same order")
    key: str | None = opt(None, "field pairing a translation with its reference (default: source_index, then a "
                                "unique id, then line order)")
    text_field: str = opt("text", "the record field holding the text, in both files")
    tokenize: str = opt("13a", "sacrebleu's BLEU tokenizer", choices=TOKENIZERS)
    comet: str | None = opt(None, "a local COMET model directory (needs `pip install unbabel-comet`; its encoder must "
                                  "be on disk too, nothing is downloaded)")
    comet_batch_size: int = opt(16, "segments per COMET batch", gt=0)
    out: str | None = opt(None, "also write the scores and sacrebleu's signatures to this JSON file")


@dataclass
class Segment:
    hyp: str
    ref: str
    src: str | None
    pair: str
    corpus: str


def read_records(path: str | Path, text_field: str = "text") -> list[dict]:
    from babelscope.corpus import iter_corpus

    records = list(iter_corpus([path], text_field))
    if not records:
        raise UserError("no records", path=path)
    return records


def align(hyps: list[dict], refs: list[dict], key: str | None, hyp_path: str | Path,
          ref_path: str | Path) -> list[tuple[dict, dict]]:
    """(translation, reference) pairs; see the module docstring for how they are matched."""
    if key is not None:
        return _by_field(hyps, refs, key, hyp_path, ref_path)
    if all("source_index" in h for h in hyps):
        pairs = []
        for h in hyps:
            i = h["source_index"]
            if not isinstance(i, int) or not 0 <= i < len(refs):
                raise UserError(f"source_index {i!r} has no reference ({len(refs)} records)", path=ref_path)
            pairs.append((h, refs[i]))
        return pairs
    ids = [r.get("id") for r in refs]
    if all("id" in h for h in hyps) and None not in ids and len(set(map(str, ids))) == len(ids):
        return _by_field(hyps, refs, "id", hyp_path, ref_path)
    if len(hyps) != len(refs):
        raise UserError(f"{len(hyps)} translations but {len(refs)} references, and no field pairs them (give --key)",
                        path=hyp_path)
    return list(zip(hyps, refs, strict=True))


def _by_field(hyps: list[dict], refs: list[dict], key: str, hyp_path, ref_path) -> list[tuple[dict, dict]]:
    table: dict[str, dict] = {}
    for r in refs:
        if key not in r:
            raise UserError(f"a reference has no field '{key}'", path=ref_path)
        if str(r[key]) in table:
            raise UserError(f"two references share {key} {r[key]!r}", path=ref_path)
        table[str(r[key])] = r
    pairs = []
    for h in hyps:
        if key not in h:
            raise UserError(f"a translation has no field '{key}'", path=hyp_path)
        if str(h[key]) not in table:
            raise UserError(f"no reference with {key} {h[key]!r}", path=ref_path)
        pairs.append((h, table[str(h[key])]))
    return pairs


def segments(pairs: list[tuple[dict, dict]], corpus: str) -> list[Segment]:
    """Segments labelled with their language pair (source_lang-lang, as `translate` writes them) and corpus."""
    out = []
    for h, r in pairs:
        src_lang, lang = h.get("source_lang") or r.get("source_lang"), h.get("lang") or r.get("lang")
        pair = f"{src_lang}-{lang}" if src_lang and lang else str(lang or "all")
        out.append(Segment(h["text"], r["text"], h.get("source_text") or r.get("source_text"), pair,
                           str(h.get("corpus") or corpus)))
    return out


def metrics(tokenize: str = "13a") -> tuple[Any, Any]:
    """sacrebleu's BLEU and chrF++ (chrF with word bigrams) scorers."""
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(tokenize=tokenize), CHRF(word_order=2)


def corpus_scores(hyps: Sequence[str], refs: Sequence[str], tokenize: str = "13a",
                  scorers: tuple[Any, Any] | None = None) -> dict[str, float]:
    """Corpus BLEU and chrF++ of aligned hypotheses and references (one reference each)."""
    bleu, chrf = scorers or metrics(tokenize)
    return {"bleu": bleu.corpus_score(list(hyps), [list(refs)]).score,
            "chrf++": chrf.corpus_score(list(hyps), [list(refs)]).score}


def comet_score(model_dir: str | Path, segs: list[Segment], batch_size: int = 16) -> float:
    """The system COMET score of the segments with a local COMET model (sources needed)."""
    try:
        import comet
    except ImportError:
        raise UserError("--comet needs the unbabel-comet package (pip install unbabel-comet)") from None
    path = Path(model_dir)
    ckpt = path if path.is_file() else path / "checkpoints" / "model.ckpt"
    if not ckpt.is_file():
        raise UserError("not a COMET model directory (no checkpoints/model.ckpt)", path=model_dir)
    if any(s.src is None for s in segs):
        raise UserError("COMET needs the source sentences: the translations carry no source_text")
    model = comet.load_from_checkpoint(str(ckpt))
    data = [{"src": s.src, "mt": s.hyp, "ref": s.ref} for s in segs]
    return float(model.predict(data, batch_size=batch_size, gpus=0, progress_bar=False).system_score)


def score_segments(segs: list[Segment], tokenize: str = "13a", comet: str | None = None,
                   comet_batch_size: int = 16) -> dict[str, Any]:
    """{"rows": one per (corpus, language pair) with segments, BLEU, chrF++ (and COMET), "signatures": sacrebleu's}."""
    groups: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    for s in segs:
        groups[(s.corpus, s.pair)].append(s)
    scorers = metrics(tokenize)
    rows = []
    for (corpus, pair), group in sorted(groups.items()):
        row: dict[str, Any] = {"corpus": corpus, "pair": pair, "segments": len(group),
                               **corpus_scores([s.hyp for s in group], [s.ref for s in group], scorers=scorers)}
        if comet:
            row["comet"] = comet_score(comet, group, comet_batch_size)
        rows.append(row)
    signatures = {name: str(m.get_signature()) for name, m in zip(("bleu", "chrf++"), scorers, strict=True)}
    return {"rows": rows, "signatures": signatures}


def evaluate(cfg: TranslationEvalConfig) -> dict[str, Any]:
    """Scores of every --hyp file against its --ref file: {"rows": [...], "signatures": {...}}."""
    if len(cfg.hyp) != len(cfg.ref):
        raise UserError(f"--hyp has {len(cfg.hyp)} files but --ref has {len(cfg.ref)}; give one reference file "
                        "per translation file")
    segs: list[Segment] = []
    for hyp, ref in zip(cfg.hyp, cfg.ref, strict=True):
        pairs = align(read_records(hyp, cfg.text_field), read_records(ref, cfg.text_field), cfg.key, hyp, ref)
        segs += segments(pairs, Path(hyp).name.split(".")[0])
    return score_segments(segs, cfg.tokenize, cfg.comet, cfg.comet_batch_size)


class RunningScore:
    """BLEU and chrF++ of the translations written so far against a reference file (`translate --ref`).

    Keeps sacrebleu's summed sufficient statistics, so each chunk costs only its own segments.
    """

    def __init__(self, ref: str | Path, key: str | None = None, text_field: str = "text", tokenize: str = "13a"):
        self.ref, self.key = ref, key
        self.refs = read_records(ref, text_field)
        self.metrics = metrics(tokenize)
        self.sums: list[list[float] | None] = [None, None]
        self.segments = 0

    def add(self, records: list[dict]) -> dict[str, float]:
        """Take newly written translations; returns {"bleu", "chrf++"} of all taken so far."""
        pairs = align(records, self.refs, self.key, "translations", self.ref)
        if pairs:
            hyps, refs = [h["text"] for h, _ in pairs], [[r["text"] for _, r in pairs]]
            for i, metric in enumerate(self.metrics):
                for seg in metric._extract_corpus_statistics(hyps, refs):  # sacrebleu's per-segment statistics
                    self.sums[i] = list(seg) if self.sums[i] is None else [a + b for a, b in zip(self.sums[i], seg,
                                                                                                  strict=True)]
            self.segments += len(pairs)
        return self.scores()

    def scores(self) -> dict[str, float]:
        if not self.segments:
            return {"bleu": 0.0, "chrf++": 0.0}
        bleu, chrf = (m._compute_score_from_stats(s).score for m, s in zip(self.metrics, self.sums, strict=True))
        return {"bleu": bleu, "chrf++": chrf}

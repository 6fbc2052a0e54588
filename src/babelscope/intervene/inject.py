"""Feature injection (Study B, section 5): add a fully trained model's features of one type to a mid-training
model and measure perplexity per language.

At the SAE's hook (layer L's output, resid_post, in the study) the mid model's activation becomes

    h_mid + alpha * s * W_dec^T (m * E(h_full))

with E the SAE encoder (TopK) applied to the full model's activation on the same tokens, m a 0/1 mask over
the n most frequently active features of one type (frequency = share of tokens on which the feature is
active, from the full model's feature store), W_dec the decoder rows.

Which space D's output is in. The SAE is trained on L2-normalised inputs x / ||x||, so W_dec^T z lives in
that unit-norm space; the study's code works there, but a unit-scale vector means a different thing in
every model and layer (residual norms grow with depth and training). `space="raw"` (the default) sets
s = ||h_full||, which maps the selected features back to their actual contribution to h_full: alpha = 1 with
every feature selected adds (nearly) the full model's own reconstruction, so alpha is a fraction of the full
model's representation, comparable across layers, checkpoints and model sizes. `space="normalised"` sets
s = 1, the study's literal formula. With an SAE whose inputs are not normalised the two are the same.

The decoder bias b_dec is not added: it belongs to no feature, so adding it would shift every type alike and
the empty mask would not be the unmodified model. Positions holding BOS are left alone (the SAE never saw
them). So alpha = 0 or an empty mask reproduces the unmodified mid model exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from babelscope.errors import UserError
from babelscope.settings import Settings, opt

SPACES = ("raw", "normalised")
NONE = "none"
FULL = "full"


# ---- pure functions -------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class InjectConfig(Settings):
    """`babelscope intervene inject`: Study B's injection of a full model's features into a mid checkpoint."""

    full: str = opt(help="the fully trained model dir (e.g. RUN/final)")
    mid: str = opt(help="the mid-training checkpoint dir (e.g. RUN/checkpoints/step-N)")
    sae: str = opt(help="SAE trained on the full model at this layer")
    data: list[str] = opt(help="evaluation documents with a 'lang' field")
    out: str = opt(help="output directory (injection.parquet/.csv, table.md)")
    layer: int | None = opt(None, "checked against the SAE's hook (default: the SAE's layer)", ge=0)
    type: str = opt("all-types", "feature type: a language label (e.g. en, ar), mixed, or all-types (Table 1: "
                                 "none, each language, mixed)")
    n: list[int] = opt(help="features selected per type, comma-separated (capped at the type's size)",
                       default_factory=lambda: [1000], gt=0)
    alpha: list[float] = opt(help="injection strengths, comma-separated", default_factory=lambda: [0.1], gt=0.0)
    grid: bool = opt(False, "the ablation grid: alpha 0.05,0.1,0.2 x n 1000,3000,5000")
    space: str = opt("raw", "raw: rescale by ||h_full|| (alpha is a fraction of the full model's representation); "
                            "normalised: the SAE's unit-norm input space", choices=("raw", "normalised"))
    features: str | None = opt(None, "the full model's feature store (default: built on --data in --out)")
    tau: float = opt(0.9, "language threshold of the feature classes", gt=0.5, le=1.0)
    max_docs: int | None = opt(None, "read at most this many documents", gt=0)
    max_tokens: int | None = opt(None, "window length (default: the model's context)", gt=1)
    batch_size: int = opt(16, "windows per forward pass", gt=0)
    device: str = opt("cpu", "cpu, cuda or auto")
    force: bool = opt(False, "use an SAE that was not trained on --full")


def select_features(classes: Sequence[str], frequency: np.ndarray, feature: np.ndarray, kind: str,
                    n: int) -> np.ndarray:
    """Ids of the `n` most frequently active features of class `kind` (fewer if the class is smaller);
    ties broken by the lower id so the choice repeats."""
    classes = np.asarray(classes, dtype=object)
    sel = np.flatnonzero(classes == kind)
    order = np.lexsort((np.asarray(feature)[sel], -np.asarray(frequency, dtype=np.float64)[sel]))
    return np.asarray(feature)[sel][order][:max(n, 0)].astype(np.int64)


def feature_mask(ids: Sequence[int], d_sae: int) -> torch.Tensor:
    """A float 0/1 mask [d_sae] with ones at `ids`."""
    mask = torch.zeros(d_sae)
    if len(ids):
        ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        if int(ids.max()) >= d_sae or int(ids.min()) < 0:
            raise UserError(f"feature ids must be in 0..{d_sae - 1}")
        mask[ids] = 1.0
    return mask


def injection_delta(z: torch.Tensor, mask: torch.Tensor, w_dec: torch.Tensor, alpha: float,
                    scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """alpha * scale * W_dec^T (mask * z): z [..., d_sae], w_dec [d_sae, d], scale broadcastable to [..., 1]."""
    return alpha * scale * ((z * mask.to(z)) @ w_dec.to(z))


# ---- the SAE and models ---------------------------------------------------------------------------------------

def injected_forward(full, mid, sae, hook: str, mask: torch.Tensor, alpha: float, *, space: str = "raw",
                     bos_token_id: int | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A `forward(ids, mask) -> logits` for `eval.perplexity`: the full model runs to the hook (capture), its
    SAE features under `mask` are injected into the mid model's activation there (patch)."""
    from babelscope.models.hooks import capture, patch

    if space not in SPACES:
        raise UserError(f"space must be one of {', '.join(SPACES)}, got '{space}'")

    def forward(ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        h_full = capture(full, [hook], ids, attn.long())[hook]
        with torch.no_grad():
            z = sae.encode(h_full)
            delta = injection_delta(z, mask.to(z.device), sae.W_dec, alpha)
            if space == "raw":
                delta = sae.to_raw(delta, h_full)  # divide by s(h_full) = 1 / ||h_full|| for an l2 SAE
            if bos_token_id is not None:
                delta = delta * (ids != bos_token_id).unsqueeze(-1).to(delta)
        with patch(mid, hook, lambda h: h + delta.to(h.dtype)):
            return mid(input_ids=ids, attention_mask=attn.long()).logits

    return forward


def check_models(full, mid, sae, hook: str, full_dir: Any, mid_dir: Any, sae_dir: Any = None) -> None:
    """Full and mid model must share architecture and vocabulary, and the SAE must fit the hook of both (it was
    trained on the full model, whose features are injected into the mid one)."""
    from babelscope.sae.pairing import check_pair

    keys = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "vocab_size")
    a, b = full.config.to_dict(), mid.config.to_dict()
    diff = [k for k in keys if a.get(k) != b.get(k)]
    if diff:
        raise UserError(f"--full {full_dir} and --mid {mid_dir} differ in {', '.join(diff)}: injection needs two "
                        "checkpoints of the same model")
    check_pair(sae, full, hook, sae_dir=sae_dir, model_dir=full_dir)
    check_pair(sae, mid, hook, sae_dir=sae_dir, model_dir=mid_dir, origin=False)


# ---- the table ------------------------------------------------------------------------------------------------

def _group(by_doc: dict[str, dict], lang_of: dict[str, str]) -> dict[str, dict]:
    """Per-document scores summed into per-language and overall ones (loss, ppl, tokens)."""
    sums: dict[str, list[float]] = {}
    for d, r in by_doc.items():
        for name in (lang_of[d], "all"):
            acc = sums.setdefault(name, [0.0, 0.0])
            acc[0] += r["loss"] * r["tokens"]
            acc[1] += r["tokens"]
    out = {}
    for name, (nll, tokens) in sums.items():
        loss = nll / max(tokens, 1)
        out[name] = {"loss": loss, "ppl": math.exp(loss), "tokens": int(tokens)}
    return out


def _row(kind: str, alpha: float | None, n: int, n_selected: int, scores: dict[str, dict], labels: Sequence[str],
         note: str | None = None) -> dict:
    """One table row; `alpha` is None (JSON null, not NaN) where it does not apply, with `alpha_note` saying why."""
    row: dict[str, Any] = {"type": kind, "alpha": alpha, "alpha_note": note, "n": n, "n_selected": n_selected}
    for name in [*labels, "all"]:
        row[f"ppl_{name}"] = scores.get(name, {}).get("ppl", float("nan"))
    for name in [*labels, "all"]:
        row[f"loss_{name}"] = scores.get(name, {}).get("loss", float("nan"))
    row["tokens"] = scores.get("all", {}).get("tokens", 0)
    return row


def injection_table(full_dir: str | Path, mid_dir: str | Path, sae_dir: str | Path, records: list[dict], *,
                    features_dir: str | Path | None = None, layer: int | None = None,
                    types: Sequence[str] = ("all-types",), n: int | Sequence[int] = 1000,
                    alpha: float | Sequence[float] = 0.1, space: str = "raw", tau: float = 0.9,
                    max_tokens: int | None = None, batch_size: int = 16, device: str = "cpu",
                    work_dir: str | Path | None = None, store_tokens: int = 200_000,
                    include_full: bool = True, per_doc: dict | None = None, force: bool = False) -> list[dict]:
    """Rows of Table 1: perplexity per language and overall for the unmodified mid model (`none`), the mid
    model with each type's features injected (a grid when several `n` or `alpha` are given), and the full
    model for reference. Feature classes come from the full model's feature store (built on `records` in
    `work_dir` when `features_dir` is not given). With `per_doc`, each scored (type, alpha, n) also gets its
    per-document (nll, tokens, language) there, for intervals over documents."""
    from babelscope.analysis.languages import check_labels, measures_from_store
    from babelscope.eval.perplexity import perplexity
    from babelscope.models import load_model
    from babelscope.models.hooks import HookPoint
    from babelscope.sae.pairing import load_pair

    label_field = "lang"
    check_labels(records, label_field)
    full, tok, sae, hook = load_pair(full_dir, sae_dir, device=device, force=force)  # features of the full model
    mid, mid_tok = load_model(mid_dir, device=device)
    if tok.get_vocab() != mid_tok.get_vocab():
        raise UserError(f"--full {full_dir} and --mid {mid_dir} use different tokenizers")
    if layer is not None and HookPoint.parse(hook).layer != layer:
        raise UserError(f"--layer {layer} does not match the SAE's hook {hook}")
    check_models(full, mid, sae, hook, full_dir, mid_dir, sae_dir)

    if features_dir is None:
        features_dir = _build_full_store(full_dir, sae_dir, records, Path(work_dir or "."), store_tokens, force)
    cols, summary = measures_from_store(features_dir, tau=tau)
    labels = list(summary["labels"])
    kinds = [NONE, *labels, "mixed"] if "all-types" in types else [NONE, *types]
    for k in kinds:
        if k not in (NONE, "mixed", *labels):
            raise UserError(f"unknown feature type '{k}'; choose from {', '.join([*labels, 'mixed', 'all-types'])}")
    ns = [n] if isinstance(n, int) else list(n)
    alphas = [alpha] if isinstance(alpha, int | float) else list(alpha)

    docs = [{**r, "_doc": str(i)} for i, r in enumerate(records)]
    lang_of = {str(i): str(r[label_field]) for i, r in enumerate(records)}

    def ppl(model, forward=None, key: tuple | None = None) -> dict[str, dict]:
        """Scores per language and overall, from one pass scored per document (kept in `per_doc[key]`)."""
        by_doc = perplexity(model, tok, docs, max_tokens=max_tokens, batch_size=batch_size, label_field="_doc",
                            forward=forward)
        by_doc.pop("all")
        if per_doc is not None and key is not None:
            per_doc[key] = {d: (r["loss"] * r["tokens"], r["tokens"], lang_of[d]) for d, r in by_doc.items()}
        return _group(by_doc, lang_of)

    rows = [_row(NONE, 0.0, 0, 0, ppl(mid, key=(NONE, 0.0, 0)), labels)]
    d_sae = int(sae.cfg.d_sae)
    for a in alphas:
        for k in kinds:
            if k == NONE:
                continue
            for count in ns:
                ids = select_features(cols["class"], cols["frequency"], cols["feature"], k, count)
                fwd = injected_forward(full, mid, sae, hook, feature_mask(ids, d_sae), a, space=space,
                                       bos_token_id=tok.bos_token_id)
                rows.append(_row(k, a, count, len(ids), ppl(mid, fwd, key=(k, a, count)), labels))
    if include_full:
        rows.append(_row(FULL, None, 0, 0, ppl(full), labels,
                         note="the full model itself, for reference: nothing is injected, so alpha does not apply"))
    base = rows[0]
    for r in rows:
        for name in [*labels, "all"]:
            r[f"d_ppl_{name}"] = r[f"ppl_{name}"] - base[f"ppl_{name}"]
    return rows


def _build_full_store(full_dir, sae_dir, records: list[dict], work: Path, tokens: int, force: bool) -> Path:
    """The full model's feature store on the evaluation records (for the feature classes and frequencies)."""
    from babelscope.analysis.store import StoreConfig, build_store
    from babelscope.corpus import write_corpus

    out = work / "full_features"
    if (out / "meta.json").exists():
        return out
    data = work / "inject_data.jsonl"
    write_corpus(data, records)
    build_store(full_dir, sae_dir, [data], out, StoreConfig(tokens=tokens, context=64), force=force)
    return out


def format_table(rows: list[dict], labels: Sequence[str]) -> str:
    """A Markdown table in the study's Table 1 layout (perplexity per language and overall)."""
    cols = [*labels, "all"]
    grid = len({(r["alpha"], r["n"]) for r in rows if r["type"] not in (NONE, FULL)}) > 1
    head = (["alpha", "n"] if grid else []) + ["add", *[f"ppl {c}" for c in cols]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        name = {NONE: "-", FULL: "(full model)"}.get(r["type"], r["type"])
        lead = [f"{r['alpha']:g}" if r["type"] not in (NONE, FULL) else "", str(r["n"] or "")] if grid else []
        lines.append("| " + " | ".join([*lead, name, *[f"{r[f'ppl_{c}']:.3f}" for c in cols]]) + " |")
    return "\n".join(lines) + "\n"


def write_table(out: str | Path, rows: list[dict], labels: Sequence[str]) -> Path:
    """injection.parquet, injection.csv and table.md under `out`, each written atomically."""
    import pyarrow as pa

    from babelscope.files import write_table_atomic, write_text_atomic

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table_atomic(out / "injection", pa.Table.from_pylist(rows))
    note = ("Perplexity of the mid-training model with the full model's SAE features of each type added at the "
            "hook; per type, the n features most frequently active in the full model's feature store.\n\n")
    write_text_atomic(out / "table.md", note + format_table(rows, labels))
    return out


def write_doc_scores(stem: Path, per_doc: dict) -> None:
    """documents.parquet/.csv: per (type, alpha, n) and document its summed NLL, tokens and language."""
    import pyarrow as pa

    from babelscope.files import write_table_atomic

    rows = [{"type": k[0], "alpha": k[1], "n": k[2], "doc": d, "lang": lang, "nll": nll, "tokens": tokens}
            for k, docs in per_doc.items() for d, (nll, tokens, lang) in docs.items()]
    write_table_atomic(stem, pa.Table.from_pylist(rows))


def run_injection(full_dir: str | Path, mid_dir: str | Path, sae_dir: str | Path, data: Sequence[str | Path],
                  out: str | Path, *, max_docs: int | None = None, command_args: dict | None = None,
                  **kwargs: Any) -> tuple[list[dict], list[str]]:
    """`babelscope intervene inject`: read the documents, build the table, write it with a manifest."""
    import itertools

    from babelscope.analysis.languages import check_labels
    from babelscope.corpus import iter_corpus
    from babelscope.files import check_output, write_json_atomic
    from babelscope.manifest import manifest

    records = list(itertools.islice(iter_corpus(data), max_docs))
    check_output(out, directory=True)
    labels = check_labels(records, "lang")
    per_doc: dict = {}
    rows = injection_table(full_dir, mid_dir, sae_dir, records, work_dir=out, per_doc=per_doc, **kwargs)
    write_table(out, rows, labels)
    write_doc_scores(Path(out) / "documents", per_doc)
    args = {k: v for k, v in (command_args or {}).items() if not callable(v)}
    write_json_atomic(Path(out) / "manifest.json", manifest("intervene inject", args))
    return rows, labels

"""`babelscope run RECIPE`: run a recipe's stages in order, each keyed by a hash of its settings and inputs.

For every stage the runner resolves its references, builds its settings object and computes its key: a hash
of its kind, its settings (each reference replaced by the key of the stage it names, each user input by a
fingerprint of its content) and nothing volatile (device, threads). Then, in OUT/STAGE/:

    stage.json says done with the same key    -> skipped (a rerun of a finished recipe takes seconds)
    stage.json says running with the same key -> resumed: the stage's own resume (checkpoints, journals, shards)
    a different key, or no stage.json         -> the directory is cleared and the stage runs from the start

Since a key includes its upstream keys, a changed setting reruns that stage and every stage that depends on it.
stage.json keeps every run's timing (the first run's included); OUT/summary.json gathers the studies' results.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelscope.errors import UserError
from babelscope.recipes.recipe import InputRef, Recipe, Ref, StageSpec, load_recipe
from babelscope.recipes.stages import KINDS, Context, Kind

STATE = "stage.json"


def _log(msg: str) -> None:
    print(f"[run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- inputs ----------------------------------------------------------------------------------------------------

def fingerprint(path: str | Path) -> str:
    """A content fingerprint of a file or a directory (`resume.fingerprint`: size and a hash of the first and last
    MiB of each file), so a moved or re-pathed input keeps its key and an edited one does not."""
    from babelscope.resume import fingerprint as content

    return content(path)["sha256"][:16]


def check_inputs(recipe: Recipe) -> dict[str, Any]:
    """The user inputs' values, each checked (a file exists, a directory exists, an endpoint answers) before
    anything runs; a missing required input is one line naming it and what it is for."""
    values: dict[str, Any] = {}
    for spec in recipe.inputs.values():
        value = spec.value
        if value in (None, ""):
            if not spec.optional:
                raise UserError(f"recipe input '{spec.name}' is required ({spec.help or spec.kind}); give it with "
                                f"--set inputs.{spec.name}=...", path=recipe.path)
            values[spec.name] = None
            continue
        if spec.kind == "file" and not Path(value).is_file():
            raise UserError(f"recipe input '{spec.name}': no such file", path=value)
        if spec.kind == "dir" and not Path(value).is_dir():
            raise UserError(f"recipe input '{spec.name}': no such directory", path=value)
        if spec.kind == "url":
            _check_url(spec.name, str(value))
        values[spec.name] = value
    return values


def _check_url(name: str, url: str) -> None:
    import httpx

    try:
        httpx.get(url.rstrip("/") + "/models", timeout=10.0)
    except httpx.HTTPError as e:
        raise UserError(f"recipe input '{name}': cannot reach {url} ({type(e).__name__})") from None


# ---- resolving settings ----------------------------------------------------------------------------------------

@dataclass
class StageState:
    spec: StageSpec
    kind: Kind
    dir: Path
    enabled: bool
    key: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    settings: Any = None
    status: str = "pending"


def _resolve(value: Any, states: dict[str, StageState], inputs: dict[str, Any], *, for_key: bool) -> Any:
    """A settings value with references replaced: by paths to run it, by keys and fingerprints to hash it."""
    if isinstance(value, Ref):
        st = states[value.stage]
        if not st.enabled:
            if not value.optional:
                raise UserError(f"stage '{value.stage}' is disabled but another stage needs @{value.stage}; mark "
                                f"the reference optional (@{value.stage}?) or enable the stage")
            return None
        if for_key:
            return {"stage": st.key, "output": value.output}
        if value.output not in st.outputs:
            raise UserError(f"stage '{value.stage}' has no output '{value.output}' (it has "
                            f"{', '.join(st.outputs)})")
        return st.outputs[value.output]
    if isinstance(value, InputRef):
        v = inputs.get(value.name)
        if for_key and v is not None and Path(str(v)).exists():
            return {"input": fingerprint(v)}
        return v
    if isinstance(value, list):
        return [_resolve(v, states, inputs, for_key=for_key) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, states, inputs, for_key=for_key) for k, v in value.items()}
    return value


def stage_key(kind: Kind, values: dict[str, Any]) -> str:
    """The hash of a stage's kind and its result-relevant settings (values with references already keyed)."""
    keep = {k: v for k, v in sorted(values.items()) if k not in kind.volatile and k not in kind.fill}
    text = json.dumps({"kind": kind.name, "settings": keep}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(recipe: Recipe, root: Path, inputs: dict[str, Any], defaults: dict[str, Any]) -> dict[str, StageState]:
    """Every stage's key, directory and enabled flag, in order (no settings object is built, nothing runs)."""
    from babelscope.cli._common import resolve
    from babelscope.settings import fields_of

    states: dict[str, StageState] = {}
    for name, spec in recipe.stages.items():
        kind = KINDS[spec.kind]
        enabled = spec.enabled if isinstance(spec.enabled, bool) else inputs.get(spec.enabled.name) not in (None, "")
        st = StageState(spec, kind, root / name, bool(enabled))
        states[name] = st
        bad = sorted(set(spec.settings) & set(kind.fill))
        if bad:
            raise UserError(f"stage '{name}': '{bad[0]}' is set by the runner (the stage's own directory); remove it",
                            path=recipe.path)
        names = {f.name for f, _, _ in fields_of(resolve(kind.settings))}
        values = {**{k: v for k, v in defaults.items() if k in names}, **spec.settings}
        st.key = stage_key(kind, _resolve(values, states, inputs, for_key=True)) if enabled else ""
    return states


def build_settings(st: StageState, states: dict[str, StageState], inputs: dict[str, Any],
                   defaults: dict[str, Any], ctx: Context, recipe: Recipe) -> Any:
    """The stage's settings object: defaults, the recipe's values (references resolved), the runner's fills."""
    from babelscope.cli._common import resolve
    from babelscope.settings import build, fields_of

    cls = resolve(st.kind.settings)
    names = {f.name for f, _, _ in fields_of(cls)}
    values = {**{k: v for k, v in defaults.items() if k in names}, **st.spec.settings}
    values = _resolve(values, states, inputs, for_key=False)
    values.update({k: fn(st.dir, ctx) for k, fn in st.kind.fill.items()})
    return build(cls, values, where=f"{recipe.path} [stages.{st.spec.name}]")


# ---- running ---------------------------------------------------------------------------------------------------

def read_state(d: Path) -> dict[str, Any] | None:
    try:
        return json.loads((d / STATE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(d: Path, state: dict[str, Any]) -> None:
    from babelscope.files import write_json_atomic

    write_json_atomic(d / STATE, state)


def _run_distributed(st: StageState, cfg: Any, nproc: int) -> None:
    """Run the stage's command under torchrun with its settings as a --config file (DDP on nproc processes)."""
    from babelscope.files import write_json_atomic
    from babelscope.settings import as_dict

    config = st.dir / "settings.json"
    write_json_atomic(config, as_dict(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "-m", "babelscope.cli",
           *st.kind.command, "--config", str(config)]
    rc = subprocess.run(cmd).returncode
    if rc != 0:
        raise UserError(f"stage '{st.spec.name}' failed under torchrun (exit {rc}); rerun the recipe to resume it")


def run_recipe(spec: str | Path, out: str | Path | None = None, overrides: tuple[str, ...] | list[str] = (),
               *, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Run (or resume, or skip) every stage; returns and writes OUT/summary.json."""
    from babelscope.files import check_output, write_json_atomic
    from babelscope.manifest import manifest
    from babelscope.settings import as_dict

    recipe = load_recipe(spec, overrides)
    root = Path(out or recipe.meta.get("out") or f"{recipe.name}_out")
    inputs = check_inputs(recipe)
    check_output(root, directory=True, what="run directory")
    defaults = recipe.defaults
    states = prepare(recipe, root, inputs, defaults)
    root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(root / "run.json", {**manifest("run", {"recipe": str(recipe.path), "set": list(overrides)}),
                                          "stages": {n: s.key for n, s in states.items()}})
    t_all = time.time()
    total = len(states)
    for i, (name, st) in enumerate(states.items(), 1):
        tag = f"stage {i}/{total} {name} ({st.spec.kind})"
        if not st.enabled:
            st.status = "disabled"
            log(f"{tag}: disabled")
            continue
        ctx = Context(root, lambda m, tag=tag: log(f"{tag}: {m}"), name)
        old = read_state(st.dir)
        cfg = build_settings(st, states, inputs, defaults, ctx, recipe)
        st.settings = cfg
        st.outputs = st.kind.outputs(cfg, st.dir)
        if old and old.get("key") == st.key and old.get("status") == "done":
            st.status = "skipped"
            _write_state(st.dir, {**old, "runs": [*old.get("runs", []), {"action": "skipped", "at": _now()}]})
            log(f"{tag}: done earlier, skipped")
            continue
        if old and old.get("key") != st.key:
            log(f"{tag}: settings or inputs changed since the last run; starting it again")
            shutil.rmtree(st.dir)
        action = "resumed" if old and old.get("key") == st.key else "ran"
        runs = old.get("runs", []) if old and old.get("key") == st.key else []
        state = {"kind": st.spec.kind, "key": st.key, "status": "running", "settings": as_dict(cfg),
                 "outputs": st.outputs, "runs": runs}
        st.dir.mkdir(parents=True, exist_ok=True)
        _write_state(st.dir, state)
        log(f"{tag}: {'resuming' if action == 'resumed' else 'running'}")
        t0 = time.time()
        if st.spec.nproc > 1 and st.kind.command:
            _run_distributed(st, cfg, st.spec.nproc)
        else:
            st.kind.run(cfg, st.dir, ctx)
        seconds = round(time.time() - t0, 1)
        state.update(status="done", runs=[*runs, {"action": action, "at": _now(), "seconds": seconds}])
        _write_state(st.dir, state)
        st.status = action
        log(f"{tag}: finished in {seconds:.0f} s")
    summary = _summary(recipe, root, states, round(time.time() - t_all, 1))
    write_json_atomic(root / "summary.json", summary)
    for line in claim_lines(summary):
        print(line)
    log(f"all {total} stages done; {root / 'summary.json'}" + (
        f", report {states['report'].outputs['main']}" if "report" in states and states["report"].enabled else ""))
    return summary


def claim_lines(summary: dict[str, Any]) -> list[str]:
    """The studies' claims as printable lines: each SAE's health, then per claim ours with its interval beside
    the paper's number, the verdict and the note's findings (one per line)."""
    from babelscope.report.report import SAE_COLUMNS, claim_cells, sae_rows

    lines = []
    for study in summary.get("studies", {}).values():
        lines.append(f"\nStudy {study.get('study')}: {study.get('title', '')}")
        for r in sae_rows(study.get("models") or {}):
            lines.append(f"  SAE {r['model']}: " + ", ".join(f"{SAE_COLUMNS[k]} {r[k]}" for k in SAE_COLUMNS
                                                           if k != "model"))
        for c in map(claim_cells, study.get("claims", [])):
            lines.append(f"  {c['id']} {c['verdict'].upper():<26} {c['claim']}")
            lines.append(f"      ours {c['ours_text']} {c['interval_text']} {c['unit']}".rstrip())
            lines.append(f"      paper: {c['paper']}")
            lines += [f"      {part}" for part in c["note_lines"]]
    return lines


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _summary(recipe: Recipe, root: Path, states: dict[str, StageState], seconds: float) -> dict[str, Any]:
    """summary.json: the studies' results, and per stage its status and timings (every run's, the first kept)."""
    stages, studies = {}, {}
    for name, st in states.items():
        state = read_state(st.dir) or {}
        runs = state.get("runs", [])
        worked = [r for r in runs if r.get("action") in ("ran", "resumed")]
        stages[name] = {"kind": st.spec.kind, "status": st.status, "key": st.key,
                        "seconds": round(sum(r.get("seconds", 0) for r in worked), 1), "runs": runs,
                        "outputs": {k: _rel(v, root) for k, v in st.outputs.items()}}
        if st.spec.kind in ("study_a", "study_b") and st.enabled:
            studies[name] = json.loads(Path(st.outputs["main"]).read_text(encoding="utf-8"))
    return {"recipe": recipe.name, "title": recipe.title, "path": str(recipe.path), "studies": studies,
            "stages": stages, "seconds_this_run": seconds,
            "seconds_compute": round(sum(s["seconds"] for s in stages.values()), 1)}


def _rel(path: str, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path

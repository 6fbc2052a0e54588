"""Recipes as data: a TOML file names a study's inputs and stages; this module reads it into a checked graph.

    [recipe]                       name, title, the studies it reproduces
    [inputs.NAME]                  what the user must supply: kind = file | dir | url | text, help, optional
    [defaults]                     settings applied to every stage whose kind has the field (device, seed, ...)
    [stages.NAME]                  kind = a stage kind (recipes/stages.py); every other key sets a field of that
                                   kind's settings dataclass, the same fields its command's flags set

Values may refer to other things: "@stage" is a stage's main output, "@stage/name" one of its named outputs,
"$input" a user input; a list may mix them. A reference ending in "?" is optional: None when the stage is
disabled (`enabled = false`, or `enabled = "$input"` for "only when that input is given"). `--set
stages.NAME.KEY=VALUE` (or `inputs.NAME=VALUE`, or `NAME.KEY=VALUE` for a stage) overrides the file; a value
is read as TOML (`--set base.lr=1e-3`, `--set base.data='["a.jsonl"]'`) and falls back to a plain string.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from babelscope.errors import UserError

RUNNER_KEYS = ("kind", "enabled", "nproc", "after")  # stage keys read by the runner, not by the stage's settings
INPUT_KINDS = ("file", "dir", "url", "text")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REF = re.compile(r"^@([A-Za-z_][A-Za-z0-9_]*)(?:/([A-Za-z_][A-Za-z0-9_]*))?(\?)?$")
_INPUT = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class Ref:
    """A reference to a stage output (`@stage/output`) in a settings value."""

    stage: str
    output: str = "main"
    optional: bool = False


@dataclass(frozen=True)
class InputRef:
    """A reference to a user input (`$name`)."""

    name: str


@dataclass
class InputSpec:
    name: str
    kind: str = "file"
    help: str = ""
    optional: bool = False
    value: Any = None


@dataclass
class StageSpec:
    name: str
    kind: str
    settings: dict[str, Any]  # parsed values, references as Ref / InputRef
    enabled: bool | InputRef = True
    nproc: int = 1
    after: list[str] = field(default_factory=list)

    def deps(self) -> list[str]:
        """Stages this one reads from (references and `after`), in first-mention order."""
        out = list(self.after)
        for ref in iter_refs(self.settings):
            if isinstance(ref, Ref) and ref.stage not in out:
                out.append(ref.stage)
        return out


@dataclass
class Recipe:
    name: str
    title: str
    path: Path
    studies: list[str]
    inputs: dict[str, InputSpec]
    stages: dict[str, StageSpec]  # in execution order (dependencies first)
    defaults: dict[str, Any] = field(default_factory=dict)  # [defaults]: fields set in every stage that has them
    meta: dict[str, Any] = field(default_factory=dict)


def iter_refs(value: Any):
    """Every Ref / InputRef inside a settings value (nested lists and tables included)."""
    if isinstance(value, Ref | InputRef):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_refs(v)


def parse_value(value: Any) -> Any:
    """A TOML value with "@stage/output" and "$input" strings turned into references."""
    if isinstance(value, str):
        if m := _REF.match(value):
            return Ref(m[1], m[2] or "main", bool(m[3]))
        if m := _INPUT.match(value):
            return InputRef(m[1])
        return value
    if isinstance(value, list):
        return [parse_value(v) for v in value]
    if isinstance(value, dict):
        return {k: parse_value(v) for k, v in value.items()}
    return value


def find_recipe(spec: str | Path) -> Path:
    """A recipe path: the file itself, or a bundled recipe by name or file name (`demo`, `recipes/demo.toml`)."""
    path = Path(spec)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".toml" else f"{path.name}.toml"
    bundled = resources.files("babelscope.recipes") / name
    if bundled.is_file():
        return Path(str(bundled))
    names = sorted(p.name[:-5] for p in resources.files("babelscope.recipes").iterdir() if p.name.endswith(".toml"))
    raise UserError(f"no such recipe file, and no bundled recipe by that name (bundled: {', '.join(names)})",
                    path=spec)


def _override(raw: dict, assignment: str) -> None:
    """Apply one `--set KEY=VALUE` to the raw TOML tables."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set expects KEY=VALUE (e.g. sae.tokens=1M), got {assignment!r}")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    parts = key.split(".")
    if parts[0] == "defaults" and len(parts) == 2:
        raw.setdefault("defaults", {})[parts[1]] = value
        return
    if parts[0] == "inputs" and len(parts) == 2:
        if parts[1] not in raw.get("inputs", {}):
            raise UserError(f"--set {key}: the recipe has no input '{parts[1]}' (inputs: "
                            f"{', '.join(raw.get('inputs', {})) or 'none'})")
        raw["inputs"][parts[1]]["value"] = value
        return
    if parts[0] == "stages":
        parts = parts[1:]
    if len(parts) != 2:
        raise UserError(f"--set {key}: expected STAGE.KEY=VALUE, inputs.NAME=VALUE or defaults.KEY=VALUE")
    stage, field_name = parts
    if stage not in raw.get("stages", {}):
        raise UserError(f"--set {key}: the recipe has no stage '{stage}' (stages: {', '.join(raw['stages'])})")
    raw["stages"][stage][field_name] = value


def load_recipe(spec: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and check a recipe: names, kinds, references (no cycle, no unknown stage or input)."""
    from babelscope.recipes.stages import KINDS

    path = find_recipe(spec)
    raw = _read_toml(path)
    for assignment in overrides:
        _override(raw, assignment)
    head = raw.get("recipe", {})
    inputs = {}
    for name, table in raw.get("inputs", {}).items():
        if not isinstance(table, dict):
            raise UserError(f"[inputs.{name}] must be a table (kind, help, optional)", path=path)
        spec_ = InputSpec(name, table.get("kind", "file"), table.get("help", ""), bool(table.get("optional", False)),
                          table.get("value", table.get("default")))
        if spec_.kind not in INPUT_KINDS:
            raise UserError(f"input '{name}': kind must be one of {', '.join(INPUT_KINDS)}", path=path)
        inputs[name] = spec_
    stages: dict[str, StageSpec] = {}
    for name, table in raw.get("stages", {}).items():
        if not _NAME.match(name) or not isinstance(table, dict):
            raise UserError(f"stage '{name}': a stage is a table [stages.NAME] with a plain name", path=path)
        kind = table.get("kind")
        if kind not in KINDS:
            raise UserError(f"stage '{name}': unknown kind {kind!r} (kinds: {', '.join(sorted(KINDS))})", path=path)
        settings = {k: parse_value(v) for k, v in table.items() if k not in RUNNER_KEYS}
        enabled = parse_value(table.get("enabled", True))
        stages[name] = StageSpec(name, kind, settings, enabled, int(table.get("nproc", 1)),
                                 list(table.get("after", [])))
    if not stages:
        raise UserError("a recipe needs at least one [stages.NAME] table", path=path)
    for st in stages.values():
        for ref in [*iter_refs(st.settings), *iter_refs(st.enabled)]:
            if isinstance(ref, Ref) and ref.stage not in stages:
                raise UserError(f"stage '{st.name}' refers to @{ref.stage}, which is not a stage of the recipe",
                                path=path)
            if isinstance(ref, InputRef) and ref.name not in inputs:
                raise UserError(f"stage '{st.name}' refers to ${ref.name}, which is not among [inputs]", path=path)
        for dep in st.after:
            if dep not in stages:
                raise UserError(f"stage '{st.name}': after = {dep!r} is not a stage", path=path)
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise UserError("[defaults] must be a table of settings", path=path)
    return Recipe(head.get("name", path.stem), head.get("title", ""), path, list(head.get("studies", [])), inputs,
                  _ordered(stages, path), dict(defaults),
                  {k: v for k, v in head.items() if k not in ("name", "title", "studies")})


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe's tables; `[recipe] extends = "other"` starts from that recipe's tables and merges these over
    them (stage by stage, key by key; `[stages.X] kind = "none"` drops a stage)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"not valid TOML ({e})", path=path) from None
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text (byte {e.start})", path=path) from None
    parent = raw.get("recipe", {}).get("extends")
    if not parent:
        return raw
    base_path = find_recipe(parent)
    if base_path.resolve() in seen:
        raise UserError(f"recipes extend each other in a cycle ({parent})", path=path)
    base = _read_toml(base_path, (*seen, path.resolve()))
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for table, value in raw.items():
        if table == "stages":
            stages = {name: dict(t) for name, t in merged.get("stages", {}).items()}
            for name, t in value.items():
                stages[name] = {**stages.get(name, {}), **t}
            merged["stages"] = {n: t for n, t in stages.items() if t.get("kind") != "none"}
        elif isinstance(value, dict):
            merged[table] = {**merged.get(table, {}), **value}
        else:
            merged[table] = value
    merged.setdefault("recipe", {}).pop("extends", None)
    return merged


def _ordered(stages: dict[str, StageSpec], path: Path) -> dict[str, StageSpec]:
    """The stages in dependency order (file order among independent ones); a cycle is an error."""
    done: dict[str, StageSpec] = {}
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise UserError(f"stages refer to each other in a cycle: {cycle}", path=path)
        visiting.append(name)
        for dep in stages[name].deps():
            visit(dep)
        visiting.pop()
        done[name] = stages[name]

    for name in stages:
        visit(name)
    return done


def downstream(recipe: Recipe, names: set[str]) -> set[str]:
    """`names` and every stage that depends on them, directly or not."""
    out = set(names)
    for st in recipe.stages.values():  # dependency order: one pass suffices
        if out.intersection(st.deps()):
            out.add(st.name)
    return out

"""Settings declared once: one dataclass per command, whose fields (with their help text) are the command's flags.

The same fields are set three ways, later ones winning: the dataclass defaults, a `--config FILE` (TOML or JSON,
flat keys named like the fields), and the flags given on the command line. A recipe's stage table sets them too
(`build`). `--help` shows every default. Field metadata (`opt(...)`) carries the help and, where the type alone
does not say it, how the flag is spelled and parsed.

Types map to flags: `int` accepts 10M / 2.5k / 4e6, `bool` is a switch (`--x`, or `--no-x` when it defaults to
true), `list[str]` takes several values (`--data a.jsonl b.jsonl`), numeric lists and tuples take a comma list
(`--lr 1e-4,2e-4`), `X | None` means "optional, unset by default".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from babelscope.errors import UserError

T = TypeVar("T")
_META = "babelscope"
SEED = {"ge": 0, "le": 2**32 - 1}  # the bounds of every seed field: what NumPy, torch and Python all accept


def opt(default: Any = dataclasses.MISSING, help: str = "", *, default_factory: Any = dataclasses.MISSING,
        flag: str | None = None, short: str | None = None, positional: bool = False, choices: Any = None,
        parse: Callable[[str], Any] | None = None, metavar: str | None = None, cli: bool = True,
        nargs: str | None = None, gt: float | None = None, ge: float | None = None, le: float | None = None,
        lt: float | None = None) -> Any:
    """A dataclass field with its flag's help and spelling, and the bounds a number must keep (`gt`, `ge`, `le`,
    `lt`, checked for every element of a list) wherever the value comes from (see the module docstring)."""
    meta = {_META: {"help": help, "flag": flag, "short": short, "positional": positional, "choices": choices,
                    "parse": parse, "metavar": metavar, "cli": cli, "nargs": nargs, "gt": gt, "ge": ge, "le": le,
                    "lt": lt}}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- parsing single values --------------------------------------------------------------------------------------

def number(value: str | int | float) -> int:
    """An integer that may be written 10M, 2.5k or 4e6."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != int(value):
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    v = str(value).strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}.get(v[-1:], 1)
    try:
        x = float(v[:-1] if scale != 1 else v) * scale
    except ValueError:
        raise ValueError(f"expected a count such as 5000, 10M or 4e6, got {value!r}") from None
    if x != int(x):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(x)


def csv(value: str) -> list[str]:
    """`a,b,c` -> ['a', 'b', 'c']: the parser of a list field written as one comma-separated value."""
    return [str(v) for v in _split(value)]


def _split(value: Any) -> list:
    if isinstance(value, list | tuple):
        return list(value)
    if not isinstance(value, str):  # one number from a settings file: a list of one (a string list rejects it)
        return [value]
    items = [v.strip() for v in str(value).split(",") if v.strip()]
    if not items:
        raise ValueError("expected a comma-separated list")
    return items


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside `X | None`, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return hint, False


def _scalar(hint: Any) -> Callable[[Any], Any]:
    if hint is int:
        return number
    if hint is float:
        return lambda v: float(v) if not isinstance(v, bool) else _fail(v)
    if hint is bool:
        return _bool
    if hint in (str, Path):
        return lambda v: str(v) if isinstance(v, str | Path) else _fail(v)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # e.g. float | str: first type that parses
        parsers = [_scalar(a) for a in typing.get_args(hint)]

        def first(v: Any) -> Any:
            for p in parsers:
                try:
                    return p(v)
                except (TypeError, ValueError):
                    continue
            raise ValueError(f"unexpected value {v!r}")
        return first
    if hint in (dict, Any) or typing.get_origin(hint) is dict:
        return lambda v: v
    raise TypeError(f"no parser for settings type {hint!r}")


def _fail(v: Any) -> Any:
    raise ValueError(f"unexpected value {v!r}")


def coerce(hint: Any, value: Any, parse: Callable[[str], Any] | None = None, *, each: bool = False) -> Any:
    """`value` (from a flag, a TOML file or JSON) as the field type `hint`; ValueError when it does not fit.

    `parse` reads text into the whole value, or into each item of a list when `each` (a repeatable flag)."""
    inner, optional = _unwrap(hint)
    if value is None:
        if optional:
            return None
        raise ValueError("a value is required")
    if parse is not None and each:
        return [parse(v) if isinstance(v, str) else v for v in (value if isinstance(value, list | tuple) else [value])]
    if parse is not None:  # a custom parser for text; a value it already produced passes through
        return parse(value) if isinstance(value, str) else value
    origin = typing.get_origin(inner)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(inner) if a is not Ellipsis] or [str]
        items = [_scalar(args[0])(v) for v in _split(value)]
        fixed = origin is tuple and Ellipsis not in typing.get_args(inner) and len(args) > 1
        if fixed and len(items) != len(args):
            raise ValueError(f"expected {len(args)} comma-separated values, got {len(items)}")
        return tuple(items) if origin is tuple else items
    return _scalar(inner)(value)


# ---- argparse -------------------------------------------------------------------------------------------------

def fields_of(cls: type) -> list[tuple[dataclasses.Field, Any, dict]]:
    """(field, type hint, metadata) of every field of a settings dataclass, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name], f.metadata.get(_META, {})) for f in dataclasses.fields(cls)]


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _shown(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def flag_name(f: dataclasses.Field, meta: dict) -> str:
    return meta.get("flag") or "--" + f.name.replace("_", "-")


def add_settings(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a flag for every field of `cls` (and `--config FILE`), each help line ending with its default."""
    for f, hint, meta in fields_of(cls):
        if not meta.get("cli", True):
            continue
        default = default_of(f)
        inner = _unwrap(hint)[0]
        help_text = (meta.get("help") or "").replace("%", "%%")
        if default is dataclasses.MISSING:
            help_text += " (required)"
        elif default is None or "default" in help_text or default == []:
            pass
        elif inner is not bool:
            help_text += f" (default: {_shown(default)})".replace("%", "%%")
        kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text.strip()}
        names = [] if meta.get("positional") else [flag_name(f, meta)]
        if meta.get("short"):
            names.insert(0, meta["short"])
        if inner is bool and not meta.get("positional"):
            if default is True:
                names = ["--no-" + names[-1][2:]] if not meta.get("flag") else names
                kw.update(action="store_false")
            else:
                kw.update(action="store_true")
            parser.add_argument(*names, **kw)
            continue
        origin = typing.get_origin(inner)
        parse = meta.get("parse")
        if meta.get("nargs") == "append":  # a repeatable flag: --prompt A --prompt B
            kw["action"] = "append"
            kw["type"] = _arg_type(typing.get_args(inner)[0], parse)
        elif origin is list and typing.get_args(inner)[:1] in ((str,), (Path,)) and parse is None:
            kw["nargs"] = meta.get("nargs") or "+"
        else:
            kw["type"] = _arg_type(hint, parse)
        if meta.get("choices"):
            kw["choices"] = meta["choices"]
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        if meta.get("positional"):
            kw.pop("dest")
            if default is not dataclasses.MISSING or kw.get("nargs") == "*":
                kw["nargs"] = kw.get("nargs") or "?"
            parser.add_argument(f.name, **kw)
        else:
            parser.add_argument(*names, **kw)
    if not any(a.dest == "config" for a in parser._actions):
        parser.add_argument("--config", metavar="FILE", default=None,
                            help="read settings from a TOML or JSON file (keys named like the flags, with "
                                 "underscores); flags given here win")


def _arg_type(hint: Any, parse: Callable[[str], Any] | None) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return coerce(hint, text, parse)
        except (TypeError, ValueError, UserError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = getattr(_unwrap(hint)[0], "__name__", "value")
    return convert


def read_config(path: str | Path) -> dict[str, Any]:
    """A settings file: TOML (`.toml`) or JSON, one flat table of field names."""
    import tomllib

    from babelscope.inputs import read_text

    path = Path(path)
    text = read_text(path, "settings file")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({e})", path=path) from None
    if not isinstance(data, dict):
        raise UserError("expected a table of settings", path=path)
    return data


def build(cls: type[T], values: Mapping[str, Any], *, where: str | Path | None = None,
          defaults: Mapping[str, Any] | None = None) -> T:
    """An instance of `cls` from `values` (flags, a settings file or a recipe table), every value checked against
    its field's type; an unknown or ill-typed key is a UserError naming `where` and the key."""
    known = {f.name: (f, hint, meta) for f, hint, meta in fields_of(cls)}
    merged: dict[str, Any] = dict(defaults or {})
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            close = ", ".join(sorted(known))
            raise UserError(f"unknown setting '{key}' for {cls.__name__} (known: {close})", path=where)
        f, hint, meta = known[name]
        label = flag_name(f, meta) if meta.get("cli", True) and not where else key
        try:
            merged[name] = coerce(hint, value, meta.get("parse"), each=meta.get("nargs") == "append")
        except (TypeError, ValueError) as e:
            raise UserError(f"setting '{label}': {e}", path=where) from None
        check_bounds(label, merged[name], meta, where)
    missing = [f for f, _, _ in known.values()
               if default_of(f) is dataclasses.MISSING and f.name not in merged]
    if missing:
        names = ", ".join(flag_name(f, known[f.name][2]) if known[f.name][2].get("cli", True) else f.name
                          for f in missing)
        raise UserError(f"missing required setting(s): {names}", path=where)
    return cls(**merged)


def check_bounds(label: str, value: Any, meta: dict, where: str | Path | None = None) -> None:
    """A UserError when a number (or any number of a list) breaks the field's `gt`/`ge`/`le` bounds."""
    choices = meta.get("choices")
    if choices and value is not None and value not in choices:
        raise UserError(f"{label} must be one of {', '.join(map(str, choices))}, got {value!r}", path=where)
    for v in value if isinstance(value, list | tuple) else [value]:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        for key, ok, word in (("gt", lambda a, b: a > b, ">"), ("ge", lambda a, b: a >= b, ">="),
                              ("le", lambda a, b: a <= b, "<="), ("lt", lambda a, b: a < b, "<")):
            bound = meta.get(key)
            if bound is not None and not ok(v, bound):
                raise UserError(f"{label} must be {word} {bound:g}, got {v:g}", path=where)


def from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The settings of a parsed command line: defaults, then `--config FILE`, then the flags given."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    config = getattr(args, "config", None)
    if config:
        file_values = read_config(config)
        unknown = sorted(set(k.replace("-", "_") for k in file_values) - names)
        if unknown:
            raise UserError(f"unknown setting '{unknown[0]}' (known: {', '.join(sorted(names))})", path=config)
        merged = {**{k.replace("-", "_"): v for k, v in file_values.items()}, **given}
        return build(cls, merged, where=config)
    return build(cls, given)


class Settings:
    """Base of settings dataclasses: construction checks every field's bounds and choices (see `opt`)."""

    def __post_init__(self) -> None:
        for f, _, meta in fields_of(type(self)):
            check_bounds(flag_name(f, meta), getattr(self, f.name), meta)


def narrow(cfg: Any, cls: type[T]) -> T:
    """The `cls` part of a settings object whose class extends `cls` (a command's settings -> its stage config)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: getattr(cfg, k) for k in names})


def as_dict(cfg: Any) -> dict[str, Any]:
    """A settings object as JSON-ready values (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))

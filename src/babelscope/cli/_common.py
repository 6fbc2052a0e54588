"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from babelscope.errors import UserError
from babelscope.settings import add_settings
from babelscope.settings import number as _number


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose flags may come from a settings dataclass named by "module:Class", imported only
    when this (sub)command is parsed, so `babelscope --help` never imports torch."""

    settings_ref: str | type | None = None

    def error(self, message: str):  # type: ignore[override]
        """A usage error as one line (and exit 2), like every other user error."""
        import sys

        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.settings_ref is not None and not getattr(self, "_settings_added", False):
            self._settings_added = True
            add_settings(self, resolve(self.settings_ref))
        return super().parse_known_args(args, namespace)


def resolve(ref: str | type) -> type:
    """A settings class from itself or from "package.module:Class"."""
    if isinstance(ref, str):
        import importlib

        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)
    return ref


def command(sub: argparse._SubParsersAction, name: str, func: Callable[[Any], int | None], help: str,
            description: str | None = None, settings: str | type | None = None) -> argparse.ArgumentParser:
    """Add a subcommand whose handler is `func`; with `settings` (a dataclass, or "module:Class" to import it
    lazily) its flags come from the fields and the handler receives the built settings object."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.set_defaults(func=func, settings=settings)
    if isinstance(p, Parser):
        p.settings_ref = settings
    elif settings is not None:
        add_settings(p, resolve(settings))
    return p


def group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """The command group `name` (`babelscope sae train`, ...), created on first use so that several modules
    can add commands to one group (`analyze features` and `analyze languages`)."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help, description=help)
        return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def csv_list(value: str) -> list[str]:
    """`a,b,c` -> ['a', 'b', 'c'] (argparse type)."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def number(value: str) -> int:
    """An integer that may be written 10M, 2.5k or 4e6 (argparse type)."""
    try:
        return _number(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def require(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)

"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from babelscope.errors import UserError
from babelscope.settings import add_settings
from babelscope.settings import number as _number


def command(sub: argparse._SubParsersAction, name: str, func: Callable[[Any], int | None], help: str,
            description: str | None = None, settings: type | None = None) -> argparse.ArgumentParser:
    """Add a subcommand whose handler is `func`; with `settings` (a dataclass) its flags come from the fields and
    the handler receives the built settings object instead of the parsed arguments."""
    p = sub.add_parser(name, help=help, description=description or help)
    p.set_defaults(func=func, settings=settings)
    if settings is not None:
        add_settings(p, settings)
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

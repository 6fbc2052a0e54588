"""The `babelscope` command. Each module in this package registers its subcommands with `register(sub)`;
the command only parses arguments and calls library functions, importing heavy libraries lazily."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from babelscope import __version__
from babelscope.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from babelscope.cli._common import Parser

    parser = Parser(
        prog="babelscope",
        description="Train small language models for low-resource languages and look inside them with SAEs.",
    )
    parser.add_argument("--version", action="version", version=f"babelscope {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    package = importlib.import_module(__name__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        args = build_parser().parse_args(argv)
        if args.settings is not None:
            from babelscope.cli._common import resolve
            from babelscope.settings import from_args

            rc = args.func(from_args(resolve(args.settings), args))
        else:
            rc = args.func(args)
    except UserError as e:
        _fail(f"babelscope: error: {e}", 2)
    except OSError as e:  # what no up-front check can foresee (a disk filling up mid-run, a file removed)
        where = f"{e.filename}: " if e.filename else ""
        _fail(f"babelscope: error: {where}{e.strerror or e}", 2)
    except KeyboardInterrupt:
        _fail("babelscope: interrupted", 130)
    sys.exit(rc or 0)


def _fail(line: str, code: int) -> None:
    """Print one error line (on a line of its own, below any progress bar) and exit with `code`."""
    if "tqdm" in sys.modules:
        from babelscope.progress import close_all

        close_all()
    print(" ".join(line.split()), file=sys.stderr)
    sys.exit(code)

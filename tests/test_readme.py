"""Every command the README shows works: each `babelscope ...` example (code blocks, the command table, inline
code) parses with the real parser and builds its settings (so a flag that does not exist, a required flag left
out or a bad value fails here), its command's --help renders, and the walkthrough block runs as it stands."""

from __future__ import annotations

import argparse
import io
import re
import shlex
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from babelscope.cli import build_parser
from helpers import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_MARK = "<!-- tests/test_readme.py runs the next block as it stands -->"


def _argv(line: str) -> list[str] | None:
    """The arguments after `babelscope` (or `-m babelscope.cli`, as under torchrun) of one shell line."""
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value prefixes
        words = words[1:]
    if words[:1] == ["babelscope"]:
        return words[1:]
    if "babelscope.cli" in words:
        return words[words.index("babelscope.cli") + 1:]
    return None


def readme_commands() -> list[tuple[str, list[str], bool]]:
    """(text, argv, in the runnable block) for every babelscope command in the README."""
    text = README.read_text(encoding="utf-8")
    found = []
    fences = list(re.finditer(r"```sh\n(.*?)```", text, re.S))
    for m in fences:
        runnable = text[:m.start()].rstrip().endswith(RUN_MARK)
        for line in m.group(1).replace("\\\n", " ").splitlines():
            argv = _argv(line) if line.strip() else None
            if argv is not None:
                found.append((line.strip(), argv, runnable))
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"`(babelscope [^`]+)`", prose):
        line = " ".join(m.group(1).split())
        found.append((line, _argv(line), False))
    return found


COMMANDS = readme_commands()


def _path(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The subcommand words at the start of argv (`sae train`, `translate`, ...)."""
    path, p = [], parser
    for word in argv:
        sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            break
        path.append(word)
        p = sub.choices[word]
    return path


def test_the_readme_shows_commands_and_a_runnable_block():
    names = {" ".join(_path(build_parser(), argv)) for _, argv, _ in COMMANDS}
    assert len(COMMANDS) >= 40 and sum(r for _, _, r in COMMANDS) >= 8
    for command in ("train", "sae train", "analyze tsea", "browse", "intervene inject", "study bilingual", "demo"):
        assert command in names, command
    assert README.read_text(encoding="utf-8").startswith("```sh\nmake demo")


@pytest.mark.parametrize("text,argv", [(t, a) for t, a, _ in COMMANDS], ids=[t[:60] for t, _, _ in COMMANDS])
def test_every_readme_command_parses_and_builds_its_settings(text, argv, capsys):
    from babelscope.cli._common import resolve
    from babelscope.settings import from_args

    parser = build_parser()
    path = _path(parser, argv)
    with redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as e:
        build_parser().parse_args([*path, "--help"])
    assert e.value.code == 0 and "%%" not in out.getvalue() and "usage:" in out.getvalue()
    if argv[len(path):] == ["--help"]:
        return
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{text}\n{capsys.readouterr().err}")
    if args.settings is not None:
        from_args(resolve(args.settings), args)  # a bad value or a missing setting raises a UserError


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch):
    from babelscope.report.links import dead_links

    monkeypatch.chdir(tmp_path)
    steps = [(t, a) for t, a, runnable in COMMANDS if runnable]
    for text, argv in steps:
        assert run_cli(*argv) == 0, text
    assert (tmp_path / "try" / "site" / "index.html").exists() and (tmp_path / "try" / "languages").is_dir()
    assert dead_links(tmp_path / "try") == []

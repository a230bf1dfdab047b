"""The ``agentmem`` command itself: --version, the help texts, fast --help, one-line errors."""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import agentmem.cli as cli
from agentmem.cli import BUILTIN_COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["chat", "demo", *BUILTIN_COMMANDS]


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"agentmem {version('agentmem')}\n"


def test_help_describes_the_package_and_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "The ``agentmem`` command" not in out and "δ-mem" in out and "--version" in out
    assert all(f"\n    {c} " in out or f"\n    {c}\n" in out for c in COMMANDS), out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command):
    p = _subparser(command)
    assert p.description
    missing = [a.option_strings or a.dest for a in p._actions if not a.help]
    assert not missing, f"{command}: {missing}"


@pytest.mark.parametrize("command, shown", [
    ("chat", ["--window WINDOW", "(default: 4)"]), ("demo", ["(default: 24)"]),
    ("eval", ["(default: eval_out)", "(default: auto)"]), ("train", ["(default: "]),
    ("inspect", [f"(default: {cli.DEFAULT_BACKBONE})"]),
])
def test_help_shows_the_defaults(command, shown, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = _subparser(command).format_help()
    assert all(s in text for s in shown) and "(default: None)" not in text


def test_the_default_backbone_is_the_models():
    from agentmem.model.backbones import DEFAULT_BACKBONE

    assert cli.DEFAULT_BACKBONE == DEFAULT_BACKBONE


_IMPORTS = """
import sys
from agentmem.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in ("torch", "transformers", "langchain_core", "langgraph") if m in sys.modules))
"""


@pytest.mark.parametrize("argv, heavy", [
    (["--help"], ["langchain_core", "langgraph", "torch", "transformers"]),
    (["demo", "--help"], ["langchain_core", "langgraph", "torch", "transformers"]),
    (["chat", "--help"], ["torch", "transformers"]),  # the default database path loads the store
])
def test_help_imports_no_model_code(argv, heavy):
    out = subprocess.run([sys.executable, "-c", _IMPORTS, *argv], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    loaded = ast.literal_eval(out.splitlines()[-1])
    assert not set(heavy) & set(loaded), loaded


def test_ctrl_c_in_a_command_is_one_line(monkeypatch, capsys):
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_eval_merge", interrupted)
    try:
        code = main(["eval-merge", "a", "--out", "b"])
    except KeyboardInterrupt:  # pytest would stop the whole run
        pytest.fail("Ctrl-C escaped agentmem's main()")
    assert code == 130
    assert capsys.readouterr().err == "\nagentmem eval-merge: interrupted\n"

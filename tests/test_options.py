"""Each training and evaluation option is defined once, as a dataclass field; the CLI flags, their
defaults, types and help text are built from it."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest

from agentmem.cli import main
from agentmem.eval.regimes import EvalOptions
from agentmem.model.config import DeltaMemConfig
from agentmem.options import add_options, at_least, option, values, windows
from agentmem.train.config import ADAPTER_DEFAULTS, ADAPTER_FLAGS, TrainConfig


@dataclass
class Example:
    path: str = option(help="a required path")
    steps: int = option(3, help="steps", parse=at_least(1))
    rate: float | None = option(None, help="a rate")
    fast: bool = option(False, help="go fast")
    check: bool = option(True, help="skip the check")
    mode: str = option("a", help="mode", choices=("a", "b"))
    hidden: int = 7  # no help: not a flag


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser()
    names = add_options(p, Example)
    return p.parse_args(argv), names


def test_flags_types_defaults_and_switches_come_from_the_fields():
    args, names = parse(["--path", "x", "--steps", "5", "--rate", "0.5", "--fast", "--no-check"])
    assert names == ["path", "steps", "rate", "fast", "check", "mode"]
    assert Example(**values(args, names)) == Example("x", 5, 0.5, True, False, "a")
    args, _ = parse(["--path", "x"])
    assert Example(**values(args, names)) == Example("x")


@pytest.mark.parametrize("argv", [[], ["--path", "x", "--steps", "0"], ["--path", "x", "--mode", "c"],
                                  ["--path", "x", "--steps", "two"]])
def test_bad_flags_are_refused_by_argparse(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse(argv)
    assert e.value.code == 2


def test_a_field_without_a_parser_is_refused_when_the_parser_is_built():
    @dataclass
    class Bad:
        items: list[int] = option(help="no parser for this", default_factory=list)

    with pytest.raises(TypeError, match="Bad.items"):
        add_options(argparse.ArgumentParser(), Bad)


def test_windows_parser():
    assert windows("0,4") == (0, 4)
    for bad in ("0,-1", "a"):
        with pytest.raises(argparse.ArgumentTypeError):
            windows(bad)


def _subparser(name: str) -> argparse.ArgumentParser:
    captured = {}

    class Stop(Exception):
        pass

    def grab(args: argparse.Namespace) -> int:
        captured["args"] = args
        raise Stop

    import agentmem.cli as cli

    old = (cli._train, cli._eval)
    cli._train = cli._eval = grab  # type: ignore[assignment]
    try:
        argv = {"train": ["train", "--data", "d.jsonl", "--out", "o"], "eval": ["eval"]}[name]
        with pytest.raises(Stop):
            main(argv)
    finally:
        cli._train, cli._eval = old
    return captured["args"]


def test_train_flags_rebuild_the_default_config():
    args = _subparser("train")
    adapter = values(args, ADAPTER_FLAGS)
    cfg = TrainConfig(**values(args, args.train_options), adapter=adapter)
    assert cfg == TrainConfig(data=["d.jsonl"], out="o", adapter=adapter)
    flagged = {f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("help")}
    assert set(args.train_options) == flagged
    # the adapter flags are DeltaMemConfig's fields, with training's own defaults
    assert adapter == {**{n: getattr(DeltaMemConfig(), n) for n in ADAPTER_FLAGS}, **ADAPTER_DEFAULTS}


def test_eval_flags_rebuild_the_default_options():
    args = _subparser("eval")
    got = values(args, args.eval_options)
    assert got.pop("max_new_tokens") is None  # chosen per suite: 32, or 48 for reply-harm
    assert EvalOptions(**got) == EvalOptions()

"""Command-line flags built from dataclass fields, so that each option is defined once.

A field becomes ``--field-name`` when its metadata has ``help`` (see `option`). The flag's type
comes from the annotation (``int``, ``float``, ``str``, each optionally ``| None``) or from
``parse``; a ``bool`` field is a switch (``--name`` when it defaults to False, ``--no-name`` when it
defaults to True); ``choices`` and ``action="append"`` pass through to argparse. `values` reads the
parsed flags back into keyword arguments for the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_SCALARS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def option(default: Any = dataclasses.MISSING, *, help: str, parse: Callable[[str], Any] | None = None,
           choices: Iterable[Any] | None = None, action: str | None = None,
           default_factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field that is also a command-line flag."""
    meta = {"help": help, "parse": parse, "choices": tuple(choices) if choices else None,
            "action": action}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str, negated: bool = False) -> str:
    return ("--no-" if negated else "--") + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type, *, only: Iterable[str] | None = None,
                defaults: Mapping[str, Any] | None = None, helps: Mapping[str, str] | None = None
                ) -> list[str]:
    """Add a flag for every field of ``cls`` with help text (or for the fields named in ``only``,
    whose help may come from ``helps``); ``defaults`` overrides field defaults. Returns the names."""
    wanted = set(only) if only is not None else None
    names = []
    for f in dataclasses.fields(cls):
        text = (helps or {}).get(f.name) or f.metadata.get("help")
        if (wanted is not None and f.name not in wanted) or not text:
            continue
        default = (defaults or {}).get(f.name, _default(f))
        kind = str(f.type).replace(" ", "")
        kwargs: dict[str, Any] = {"dest": f.name, "help": text}
        if kind == "bool":
            flag = flag_name(f.name, negated=bool(default))
            kwargs.update(action="store_false" if default else "store_true", default=default)
        else:
            flag = flag_name(f.name)
            parse = f.metadata.get("parse") or _SCALARS.get(kind.removesuffix("|None"))
            if parse is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no parser for {f.type!r}; give parse=")
            kwargs.update(type=parse, default=default)
            if f.metadata.get("choices"):
                kwargs["choices"] = f.metadata["choices"]
            if f.metadata.get("action"):
                kwargs["action"] = f.metadata["action"]
            if default is dataclasses.MISSING:
                kwargs.update(required=True, default=None)
        parser.add_argument(flag, **kwargs)
        names.append(f.name)
    return names


def values(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The parsed values of ``names`` as keyword arguments."""
    return {n: getattr(args, n) for n in names}


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def at_least(low: int) -> Callable[[str], int]:
    """A flag type: an int ≥ ``low``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} < {low}")
        return value
    parse.__name__ = f"int ≥ {low}"
    return parse


def non_negative_float(text: str) -> float:
    """A flag type: a float ≥ 0 (nan refused)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 0")
    return value


def unit_gate(text: str) -> float:
    """A flag type: a float in (0, 1] (nan refused)."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1]")
    return value


def windows(text: str) -> tuple[int, ...]:
    """A flag type: comma-separated non-negative integers."""
    try:
        values = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if any(w < 0 for w in values):
        raise argparse.ArgumentTypeError(f"{text!r} has a negative window")
    return values

"""Argument checks, checkpoint ids and back-off shared by the repository and its async twin."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agentmem.errors import AgentMemError
from store import codec
from store.errors import CorruptCheckpointError

MAX_COUNT = 2**62  # limits and counts beyond this cannot be a row count on any database


def new_checkpoint_id(checkpoint_id: str | None) -> str:
    """``checkpoint_id`` if it has the store's form (32 lowercase hex digits), else a fresh one
    for None.

    Raises:
        InvalidIdError: anything else.
    """
    if checkpoint_id is None:
        return uuid.uuid4().hex
    if not codec.is_checkpoint_id(checkpoint_id):
        raise codec.InvalidIdError(f"checkpoint_id {codec.show(checkpoint_id)}: expected 32 "
                                   "lowercase hex digits (uuid.uuid4().hex)")
    return checkpoint_id


def backoff_delay(attempt: int, base_s: float, cap_s: float = 0.1) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base · 2^attempt)]."""
    return random.uniform(0.0, min(cap_s, base_s * 2 ** min(attempt, 30)))


def count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_COUNT:
        raise ValueError(f"{name}={value!r}; expected an integer in {minimum}..2**62")
    return value


def seconds(name: str, value: Any, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}={value!r}; expected a finite number of seconds "
                         f"{'> 0' if positive else '>= 0'}")
    return float(value)


@contextmanager
def rows_checked(what: str) -> Iterator[None]:
    """A stored value of the wrong type (a column altered outside the store) is a corrupt row.

    Only ValueError and OverflowError (what the drivers' and SQLAlchemy's converters raise); a
    TypeError is a bug, and row mapping (``queries.info``) checks its own conversions.
    """
    try:
        yield
    except (ValueError, OverflowError) as e:
        if isinstance(e, AgentMemError):
            raise
        raise CorruptCheckpointError(f"{what}: a stored value does not have the store's type "
                                     f"({type(e).__name__}: {e}); was the table altered?") from e

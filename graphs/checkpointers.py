"""LangGraph checkpointers for the memory graphs: SQLite (the default) and PostgreSQL.

LangGraph's tables (``checkpoints``, ``writes``, …) and the memory store's (``memory_*``) do not
collide, so one SQLite file (or one PostgreSQL database) can hold both: a conversation's graph
state and its δ-mem checkpoints then travel together.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from sqlalchemy.engine import make_url

from agentmem.errors import require
from store import default_url

__all__ = ["async_postgres_checkpointer", "async_sqlite_checkpointer", "default_checkpoint_path",
           "default_checkpointer", "postgres_checkpointer", "sqlite_checkpointer", "sqlite_path"]

BUSY_TIMEOUT_S = 30.0


def sqlite_path(database: str | Path) -> Path:
    """The file of an SQLite URL (``sqlite:///x.db``) or plain path.

    Raises:
        ValueError: a URL of another database.
    """
    text = str(database)
    if "://" not in text:
        return Path(text).expanduser()
    url = make_url(text)
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ValueError(f"{text!r} is not an SQLite file URL")
    return Path(url.database).expanduser()


def default_checkpoint_path() -> Path:
    """The memory store's default SQLite file, or ``graphs.sqlite3`` beside it under PostgreSQL."""
    url = default_url()
    if "://" not in url or make_url(url).get_backend_name() == "sqlite":
        return sqlite_path(url)
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "agentmem" / "graphs.sqlite3"


def sqlite_checkpointer(database: str | Path) -> SqliteSaver:
    """A ``SqliteSaver`` on its own connection to the file (created if missing), set up.

    The file may be the memory store's too; either may create it. Close the saver with
    ``saver.conn.close()``.
    """
    path = sqlite_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    if conn.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: as the store makes
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # them, so pruning memory shrinks it
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def default_checkpointer() -> SqliteSaver:
    """``SqliteSaver`` on :func:`default_checkpoint_path`."""
    return sqlite_checkpointer(default_checkpoint_path())


@asynccontextmanager
async def async_sqlite_checkpointer(database: str | Path) -> AsyncIterator[AsyncSqliteSaver]:
    """An ``AsyncSqliteSaver`` (for ``ainvoke``) on the file, set up; open it inside the event loop."""
    path = sqlite_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        yield saver


def _libpq(url: str) -> str:
    """A psycopg connection string from an SQLAlchemy URL (drops ``+psycopg``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"{url!r} is not a PostgreSQL URL")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def postgres_checkpointer(url: str) -> Iterator[Any]:
    """A ``PostgresSaver`` for a ``postgresql[+psycopg]://`` URL, set up (a context manager)."""
    saver_cls = require("langgraph.checkpoint.postgres", "postgres").PostgresSaver
    with saver_cls.from_conn_string(_libpq(url)) as saver:
        saver.setup()
        yield saver


@asynccontextmanager
async def async_postgres_checkpointer(url: str) -> AsyncIterator[Any]:
    """The async twin of :func:`postgres_checkpointer`."""
    saver_cls = require("langgraph.checkpoint.postgres.aio", "postgres").AsyncPostgresSaver
    async with saver_cls.from_conn_string(_libpq(url)) as saver:
        await saver.setup()
        yield saver

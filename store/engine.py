"""`make_engine`: an SQLAlchemy engine for the store, SQLite by default, PostgreSQL by URL.

SQLite connections get WAL (readers never block the writer), a busy timeout (writers queue
instead of failing), foreign keys, ``synchronous=FULL`` (a commit survives a crash of the process
and of the machine) and ``secure_delete`` (deleted checkpoints are overwritten, not left in free
pages); new files get ``auto_vacuum=INCREMENTAL``, so pruning gives space back, and the WAL is cut
back to ``journal_size_limit`` after each checkpoint. Write
transactions start with ``BEGIN IMMEDIATE``, so two writers never both read under a shared lock
and then deadlock upgrading it; the repository asks for one through the execution option
:data:`WRITE_OPTION`.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

from store.errors import NotADatabaseError
from store.faults import translated

URL_ENV = "AGENTMEM_STORE_URL"
WRITE_OPTION = "agentmem_write"
BUSY_TIMEOUT_S = 30.0
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SCHEMA_LOCK = 0x6167_6D65_6D00  # pg advisory lock key for CREATE SCHEMA ("agmem")


def default_url() -> str:
    """``$AGENTMEM_STORE_URL``, else an SQLite file under ``$XDG_DATA_HOME/agentmem``."""
    if os.environ.get(URL_ENV):
        return os.environ[URL_ENV]
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return f"sqlite:///{base / 'agentmem' / 'memory.sqlite3'}"


def make_engine(url: str | None = None, *, schema: str | None = None, **kwargs: Any) -> Engine:
    """Create the engine the repository runs on.

    Args:
        url: an SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://user@host/db``) or a
            plain file path, taken as an SQLite file. None: :func:`default_url`.
        schema: PostgreSQL only: keep the store's tables in this schema (lowercase letters,
            digits, underscores; created if missing). Default: the server's search_path.
        **kwargs: passed to :func:`sqlalchemy.create_engine`.

    Raises:
        ValueError: an in-memory SQLite URL (each connection would see its own empty database),
            a schema on SQLite, or a schema name outside ``[a-z_][a-z0-9_]*``.
        NotADatabaseError, ReadOnlyStoreError: an SQLite path that is a directory, or whose
            folder cannot be made (a file in the way, no permission).
    """
    url = url or default_url()
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("schema= is for PostgreSQL; SQLite keeps one schema per file")
        return _sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)  # survive server restarts and idle disconnects
    engine = create_engine(url, **kwargs)
    if schema is not None:
        if not _SCHEMA_RE.fullmatch(schema):
            raise ValueError(f"schema={schema!r}; expected [a-z_][a-z0-9_]* (at most 63 chars)")
        event.listen(engine, "connect", _pg_search_path(schema))
    return engine


def is_sqlite(engine: Engine | Connection) -> bool:
    """Whether the engine (or connection) talks to SQLite."""
    return engine.dialect.name == "sqlite"


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    path = make_url(url).database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        raise ValueError("the store needs an SQLite file, not an in-memory database")
    if path.startswith("file:"):  # an SQLite URI (?mode=ro&uri=true): SQLite opens it as given
        return _sqlite_connected(url, **kwargs)
    file = Path(path).expanduser()
    if file.is_dir():
        raise NotADatabaseError(f"{file} is a directory; the store needs an SQLite file path "
                                "(e.g. a memory.sqlite3 inside it)")
    with translated(f"creating the folder of {file}"):
        file.parent.mkdir(parents=True, exist_ok=True)
    return _sqlite_connected(url, **kwargs)


def _sqlite_connected(url: str, **kwargs: Any) -> Engine:
    connect_args = {"timeout": BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _sqlite_connect(float(connect_args["timeout"])))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(timeout_s: float) -> Any:
    def connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy's "begin" event (below) owns BEGIN; pysqlite's own BEGIN would be DEFERRED.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")  # first: WAL may wait
        if cur.execute("PRAGMA page_count").fetchone()[0] == 0:  # a new file: pruning and
            cur.execute("PRAGMA auto_vacuum = INCREMENTAL")  # deleting can then shrink it
        try:
            cur.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError:  # a read-only file: reads still work, writes say why
            pass
        cur.execute("PRAGMA journal_size_limit = 4194304")  # the WAL shrinks back to 4 MiB
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA secure_delete = ON")
        cur.close()

    return connect


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _pg_search_path(schema: str) -> Any:
    def connect(dbapi_conn: Any, _record: Any) -> None:
        # The name matched _SCHEMA_RE, so it is a plain identifier that needs no quoting.
        with dbapi_conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is None:  # CREATE needs a privilege that using it does not
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            cur.execute(f"SET search_path TO {schema}")
        dbapi_conn.commit()

    return connect

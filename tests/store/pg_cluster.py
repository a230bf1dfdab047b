"""A private, throw-away PostgreSQL cluster for tests that crash or inspect the server.

The shared server (if any) is never touched: :class:`PgCluster` runs ``initdb`` into a fresh
temporary folder, listens on 127.0.0.1 only (a free port, the unix socket inside the folder), with
trust authentication and ``fsync`` on, so that ``crash()`` (``pg_ctl stop -m immediate``: no
shutdown checkpoint, crash recovery at the next start) is a faithful power cut of the server
process. Running as root, every server command runs as the ``postgres`` OS user (``initdb`` and
``postgres`` refuse root), through ``runuser`` or else ``su``. Tests skip where none of this is
possible (no binaries, no ``postgres`` user).

Use the fixture :func:`pg_cluster` (module scope) or the context manager :func:`private_cluster`.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

RUN_USER = "postgres"


def find_bindir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        real = Path(os.path.realpath(on_path)).parent
        if (real / "pg_ctl").exists() and (real / "postgres").exists():
            return real
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    for cand in reversed(candidates):
        if all((Path(cand) / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            return Path(cand)
    return None


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wrapper() -> list[str] | None:
    """How to run a command as the ``postgres`` user: [] when not root, None when impossible."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam(RUN_USER)
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    if runuser and subprocess.run([runuser, "-u", RUN_USER, "--", "true"],
                                  capture_output=True, timeout=30).returncode == 0:
        return [runuser, "-u", RUN_USER, "--"]
    su = shutil.which("su")
    if su and subprocess.run([su, RUN_USER, "-s", "/bin/sh", "-c", "true"],
                             capture_output=True, timeout=30).returncode == 0:
        return [su, RUN_USER, "-s", "/bin/sh", "-c"]
    return None


class PgCluster:
    """One private cluster: ``url`` while it runs, ``crash()``, ``start()``, ``stop()``."""

    def __init__(self, bindir: Path, wrapper: list[str], root: Path) -> None:
        self.bindir, self._wrapper, self.root = bindir, wrapper, root
        self.datadir = root / "data"
        self.sockdir = root / "sock"
        self.logfile = root / "server.log"
        self.port = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def base_dir(self) -> Path:
        """Where the table files of every database live (``base/<db oid>/<relfilenode>``)."""
        return self.datadir / "base"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._wrapper and self._wrapper[-1] == "-c":  # su: one shell command line
            cmd = [*self._wrapper, shlex.join(cmd)]
        else:
            cmd = [*self._wrapper, *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        res = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{shlex.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n"
                               f"{res.stderr}\n--- server log ---\n{self.log_tail()}")
        return res

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"

    def init(self) -> None:
        self.sockdir.mkdir()
        if self._wrapper:
            shutil.chown(self.root, RUN_USER, RUN_USER)
            shutil.chown(self.sockdir, RUN_USER, RUN_USER)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write("\n# private test cluster (tests/store/pg_cluster.py)\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.sockdir}'\n"
                    "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n"
                    "max_connections = 40\nshared_buffers = 32MB\n")

    def start(self, timeout_s: float = 60) -> None:
        """Start the server (after a crash: recover) and wait until it accepts connections.

        The first start picks a free port; later starts keep it, so clients' URLs stay valid."""
        first = not self.port
        for attempt in range(3):
            if first:
                self.port = free_port()
            elif attempt:
                time.sleep(1.0)
            res = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile),
                            "-o", f"-p {self.port}", "-w", "-t", str(int(timeout_s)), "start",
                            check=False, timeout=timeout_s + 30)
            if res.returncode == 0:
                return
            log = self.log_tail()
            if "could not bind" not in log and "in use" not in log:
                break
        raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n"
                           f"--- server log ---\n{self.log_tail()}")

    def crash(self) -> None:
        """Kill the server the hard way (``pg_ctl stop -m immediate``): no shutdown checkpoint,
        every connection cut; the next ``start()`` runs crash recovery from the WAL."""
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "immediate", "-w", "stop")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def _kill_leftover(self) -> None:
        """Last resort at teardown: SIGKILL the postmaster this cluster started (by its pid file)."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def destroy(self) -> None:
        try:
            if self.datadir.exists() and self.running():
                self.stop("immediate")
        except Exception:
            self._kill_leftover()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_cluster() -> Iterator[PgCluster]:
    """A running private cluster; stopped and removed (data, socket, log) when the block ends.
    Skips the test where PostgreSQL's binaries or a non-root user to run them are missing."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl, postgres) not found")
    wrapper = _wrapper()
    if wrapper is None:
        pytest.skip("running as root without a usable 'postgres' user (runuser/su) for initdb")
    root = Path(tempfile.mkdtemp(prefix="agentmem-pg-"))
    cluster = PgCluster(bindir, wrapper, root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster shared by one test module (see :class:`PgCluster`)."""
    with private_cluster() as cluster:
        yield cluster

"""The deploy path of ``langgraph.json``: ``langgraph dev`` serves the memory graph over HTTP.

The test starts the in-memory LangGraph server (``langgraph-cli[inmem]``) on the repository's own
``langgraph.json``, with a tiny random backbone and a fresh SQLite memory store, and drives it with
the LangGraph SDK: two threads keep separate memories, and a run from an earlier checkpoint of a
thread continues from the memory checkpoint recorded there (on a new store branch
``<thread_id>~<12 hex>``), while the thread's own memory chain is left as it was.

The server runs in a temporary working directory holding a ``graphs`` link to the repository's
package: ``langgraph.json`` names ``./graphs/server.py`` relative to the working directory, and the
in-memory runtime saves its threads under ``./.langgraph_api/``, which must not land in (or be read
from) the checkout. Nothing phones home: tracing, CLI analytics and the version check are off, and
no LangSmith key or license reaches the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphs.branches import is_branch_of
from store import MemoryRepository
from tests.graphs.conftest import same_state

pytest.importorskip("langgraph_cli", reason="langgraph-cli[inmem] is not installed (pip install -e '.[dev]')")
pytest.importorskip("langgraph_api", reason="langgraph-cli is installed without its [inmem] extra")
langgraph_sdk = pytest.importorskip("langgraph_sdk", reason="langgraph-sdk is not installed")

pytestmark = pytest.mark.slow  # a server start and ~12 turns of a tiny model: ~20 s on 2 cores

ROOT = Path(__file__).resolve().parents[2]
GRAPH = "memory_agent"  # the graph id langgraph.json serves
AGENT = "assistant"
START_TIMEOUT_S = 120
TURNS = ["My sister Lin lives in Porto.", "I have a dog called Biscuit.", "I moved to Lyon last year."]
OTHER = ["I play the cello.", "My favourite colour is green."]
NEW = "Where does my sister live?"

# Environment that would send data away or switch tracing on: never passed to the server.
_SECRETS = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGGRAPH_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY",
            "LANGSMITH_CONTROL_PLANE_API_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(backbone: str, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AGENTMEM_") and k not in _SECRETS}
    env.update(AGENTMEM_BACKBONE=backbone, AGENTMEM_STORE_URL=str(db), AGENTMEM_MAX_NEW_TOKENS="6",
               AGENTMEM_WINDOW="4",
               LANGSMITH_TRACING="false", LANGSMITH_TRACING_V2="false", LANGCHAIN_TRACING_V2="false",
               LANGCHAIN_TRACING="false", LANGGRAPH_CLI_NO_ANALYTICS="1", LANGGRAPH_NO_VERSION_CHECK="true",
               OTEL_ENABLED="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _wait_ok(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ok", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    pytest.fail(f"langgraph dev did not answer {url}/ok in {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tiny_backbone: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``langgraph dev`` on the repository's langgraph.json; yields its URL and the store's path."""
    work = tmp_path_factory.mktemp("langgraph_dev")
    cwd = work / "cwd"
    cwd.mkdir()
    (cwd / "graphs").symlink_to(ROOT / "graphs", target_is_directory=True)
    db = work / "memory.sqlite3"
    log = work / "server.log"
    port = _free_port()
    cmd = [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
           "--port", str(port), "--config", str(ROOT / "langgraph.json")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=_server_env(tiny_backbone, db), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ok(url, proc, log)
        yield {"url": url, "db": db, "log": log}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def client(server: dict[str, Any]) -> Any:
    return langgraph_sdk.get_sync_client(url=server["url"], api_key=None, timeout=300)


@pytest.fixture
def repo(server: dict[str, Any]) -> Iterator[MemoryRepository]:
    """The server's memory store, opened read-side by the test."""
    repository = MemoryRepository(str(server["db"]))
    yield repository
    repository.close()


def _turn(client: Any, thread_id: str, text: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    """One user turn over HTTP; returns the run's final state values."""
    kwargs = {"checkpoint_id": checkpoint_id} if checkpoint_id else {}
    out = client.runs.wait(thread_id, GRAPH, input={"messages": [{"role": "user", "content": text}]},
                           raise_error=True, **kwargs)
    assert isinstance(out, dict) and "memory" in out, out
    return out


def _play(client: Any, thread_id: str, turns: list[str], last: dict[str, Any] | None = None
          ) -> list[dict[str, Any]]:
    """Play ``turns`` after the turn that wrote ``last`` (None: the first turns of the thread);
    checks that each turn reads what the one before wrote. Returns the memory refs."""
    refs: list[dict[str, Any]] = [last] if last else []
    for text in turns:
        ref = _turn(client, thread_id, text)["memory"][AGENT]
        assert ref["thread"] == thread_id
        assert ref["read"] == (refs[-1]["written"] if refs else None), text
        assert ref["written"] and ref["tokens"] > (refs[-1]["tokens"] if refs else 0)
        refs.append(ref)
    return refs[1:] if last else refs


def _turn_ends(client: Any, thread_id: str) -> list[dict[str, Any]]:
    """The thread's checkpoints at the end of each turn, oldest first."""
    history = client.threads.get_history(thread_id, limit=1000)
    return [s for s in reversed(history) if not s["next"] and s["values"].get("messages")]


def test_the_server_serves_the_memory_graph(client):
    assistants = client.assistants.search(graph_id=GRAPH)
    assert [a["graph_id"] for a in assistants] == [GRAPH]
    schema = client.assistants.get_schemas(assistants[0]["assistant_id"])
    assert "memory" in schema["state_schema"]["properties"]
    assert "model" not in schema["context_schema"]["properties"]  # the model comes from the env


def test_two_threads_keep_their_own_memory(client, repo):
    one, two = (client.threads.create()["thread_id"] for _ in range(2))
    refs_one = _play(client, one, TURNS[:2])
    refs_two = _play(client, two, OTHER)
    refs_one += _play(client, one, TURNS[2:], refs_one[-1])  # thread 2's turns left it alone
    for thread, refs in ((one, refs_one), (two, refs_two)):
        state = client.threads.get_state(thread)["values"]
        assert state["memory"][AGENT] == refs[-1]
        assert len(state["messages"]) == 2 * len(refs)
        assert [i.checkpoint_id for i in repo.history(AGENT, thread)] == [r["written"] for r in refs[::-1]]


def test_a_fork_from_an_earlier_checkpoint_continues_its_memory(client, repo):
    main = client.threads.create()["thread_id"]
    refs = _play(client, main, TURNS)
    ends = _turn_ends(client, main)
    assert [e["values"]["memory"][AGENT] for e in ends] == refs
    at = ends[1]  # after turn 2
    recorded = at["values"]["memory"][AGENT]

    forked = _turn(client, main, NEW, checkpoint_id=at["checkpoint"]["checkpoint_id"])
    ref = forked["memory"][AGENT]
    assert ref["thread"] != main and is_branch_of(ref["thread"], main)  # <main>~<12 hex>
    assert [m["content"] for m in forked["messages"][::2]] == TURNS[:2] + [NEW]
    # the fork continues from a copy of the memory checkpoint recorded at turn 2, not from turn 3's
    start = repo.get(AGENT, ref["thread"], ref["read"])
    assert start.parent_checkpoint_id == recorded["written"]
    assert start.tokens_written == recorded["tokens"]
    assert same_state(start.state, repo.get(AGENT, main, recorded["written"]).state)
    # bit-identical to a fresh thread that plays the forked history
    fresh = client.threads.create()["thread_id"]
    expected = _play(client, fresh, TURNS[:2] + [NEW])[-1]
    assert same_state(repo.get(AGENT, ref["thread"], ref["written"]).state,
                      repo.get(AGENT, fresh, expected["written"]).state)

    # the main memory chain is untouched, and continuing from its latest checkpoint extends it
    assert repo.latest(AGENT, main).checkpoint_id == refs[-1]["written"]
    head = _turn(client, main, NEW, checkpoint_id=ends[-1]["checkpoint"]["checkpoint_id"])
    again = head["memory"][AGENT]
    assert again["thread"] == main and again["read"] == refs[-1]["written"]
    assert repo.latest(AGENT, main).checkpoint_id == again["written"]

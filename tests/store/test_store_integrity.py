"""Bad input and damaged rows: typed errors, and the database exactly as it was."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, update
from store_helpers import make_state, snapshot, states_equal

from agentmem.errors import AgentMemError
from store import (
    CheckpointNotFound,
    CorruptCheckpointError,
    InvalidIdError,
    InvalidMetadataError,
    MemoryRepository,
    NonFiniteStateError,
)
from store.codec import MAX_ID_CHARS
from store.models import CheckpointRow

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
HOSTILE = ["'; DROP TABLE memory_checkpoints; --", "\" OR 1=1 --", "%", "_", "\\", "?", ":agent",
           "$1", "%(agent)s", "a' || 'b", "🧠 памяти", "\u202etxet", " ", "x" * MAX_ID_CHARS,
           "\U0010ffff" * MAX_ID_CHARS]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


def tamper(engine, cid: str, **values) -> None:
    """Change stored columns behind the repository's back (as disk damage or an editor would)."""
    with engine.begin() as conn:
        conn.execute(update(CheckpointRow).where(CheckpointRow.checkpoint_id == cid)
                     .values(**values))


@pytest.fixture
def stored(repo: MemoryRepository) -> str:
    return repo.put("a", "t", make_state(1), parent=None).checkpoint_id


def _flip(blob: bytes, i: int) -> bytes:
    return blob[:i] + bytes([blob[i] ^ 0x01]) + blob[i + 1:]


def test_a_flipped_bit_in_the_blob_is_caught(repo, engine, stored) -> None:
    blob = make_state(1).to_bytes()
    tamper(engine, stored, blob=_flip(blob, len(blob) - 100))
    before = snapshot(engine)
    for read in (lambda: repo.latest("a", "t"), lambda: repo.get("a", "t", stored),
                 lambda: repo.latest_for_agent("a"), lambda: repo.fork("a", "t", stored, "t2")):
        with pytest.raises(CorruptCheckpointError, match="checksum"):
            read()
    assert snapshot(engine) == before


def test_a_wrong_checksum_is_caught(repo, engine, stored) -> None:
    tamper(engine, stored, checksum="0" * 64)
    with pytest.raises(CorruptCheckpointError, match="checksum"):
        repo.get("a", "t", stored)


@pytest.mark.parametrize("values", [
    {"blob": b"not safetensors", "checksum": hashlib.sha256(b"not safetensors").hexdigest()},
    {"codec": "pickle"},
    {"adapter_fingerprint": "e" * 64},
    {"tokens_written": 6},
    {"shape": "[30,1,8,9]"},
], ids=["garbage-blob", "codec", "fingerprint-column", "tokens-column", "shape-column"])
def test_rows_that_disagree_with_their_blob_are_refused(repo, engine, stored, values) -> None:
    tamper(engine, stored, **values)
    with pytest.raises(CorruptCheckpointError):
        repo.latest("a", "t")


def test_a_non_finite_blob_with_a_matching_checksum_is_refused(repo, engine, stored) -> None:
    bad = make_state(1)
    bad.tensors[0, 0, 0, 0, 0] = math.nan  # written behind the store's back, checksum recomputed
    blob = bad.to_bytes()
    tamper(engine, stored, blob=blob, checksum=hashlib.sha256(blob).hexdigest())
    with pytest.raises(CorruptCheckpointError):
        repo.latest("a", "t")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_states_are_never_written(repo, engine, stored, value) -> None:
    state = make_state(2)
    state.tensors[0, 29, 0, 7, 7] = value
    before = snapshot(engine)
    with pytest.raises(NonFiniteStateError):
        repo.put("a", "t", state, parent=stored)
    with pytest.raises(NonFiniteStateError):
        repo.put("a", "new", state, parent=None)
    with pytest.raises(NonFiniteStateError):
        repo.update("a", "t", lambda s: state)
    assert snapshot(engine) == before


def test_other_bad_states_are_refused_before_writing(repo, engine, stored) -> None:
    before = snapshot(engine)
    two = make_state(3)
    two = type(two).stack([two, two])
    with pytest.raises(ValueError, match="batch size 2"):
        repo.put("a", "t", two, parent=stored)
    with pytest.raises(TypeError):
        repo.put("a", "t", torch.zeros(1, 30, 1, 8, 8), parent=stored)
    assert snapshot(engine) == before


@pytest.mark.parametrize("bad", ["", "a\x00b", "\x00", "x" * (MAX_ID_CHARS + 1), "\ud800",
                                 None, 7, b"bytes"])
def test_invalid_ids_raise_typed_errors_and_write_nothing(repo, engine, stored, bad) -> None:
    before = snapshot(engine)
    calls = [lambda: repo.put(bad, "t", make_state(2), parent=None),
             lambda: repo.put("a", bad, make_state(2), parent=None),
             lambda: repo.latest(bad, "t"), lambda: repo.history("a", bad),
             lambda: repo.fork("a", "t", stored, bad), lambda: repo.prune(bad, "t", keep_last=1),
             lambda: repo.delete_thread("a", bad), lambda: repo.delete_agent(bad),
             lambda: repo.list_threads(bad), lambda: repo.latest_for_agent(bad)]
    for call in calls:
        with pytest.raises(InvalidIdError):
            call()
    assert snapshot(engine) == before
    assert isinstance(InvalidIdError("x"), AgentMemError | ValueError)


@pytest.mark.parametrize("cid", ["", "'; DROP TABLE memory_threads; --", "0" * 31, "A" * 32])
def test_foreign_checkpoint_ids_are_not_found(repo, stored, cid) -> None:
    with pytest.raises(CheckpointNotFound):
        repo.get("a", "t", cid)
    with pytest.raises(CheckpointNotFound):
        repo.history("a", "t", before=cid)


@pytest.mark.parametrize("agent,thread", [(h, h[::-1] or "t") for h in HOSTILE])
def test_hostile_ids_are_plain_data(repo, stored, agent, thread) -> None:
    state = make_state(4)
    info = repo.put(agent, thread, state, parent=None, metadata={"k": agent})
    got = repo.latest(agent, thread)
    assert states_equal(got.state, state) and (got.agent_id, got.thread_id) == (agent, thread)
    assert got.metadata == {"k": agent} and repo.latest("a", "t").checkpoint_id == stored
    assert [t.thread_id for t in repo.list_threads(agent)] == [thread]
    with pytest.raises(CheckpointNotFound):
        repo.get(agent, thread, stored)
    assert repo.delete_agent(agent) == 1 and repo.latest("a", "t").checkpoint_id == stored
    assert info.checkpoint_id not in {h.checkpoint_id for h in repo.history("a", "t")}


@FUZZ
@given(agent=st.text(min_size=1, max_size=40), thread=st.text(min_size=1, max_size=40),
       meta=st.dictionaries(st.text(max_size=10), JSON, max_size=4))
def test_fuzzed_ids_and_metadata_round_trip_in_isolation(repo, engine, stored, agent, thread,
                                                         meta) -> None:
    if "\x00" in agent + thread:
        with pytest.raises(InvalidIdError):
            repo.put(agent, thread, make_state(5), parent=None, metadata=meta)
        return
    head = repo.latest(agent, thread)
    info = repo.put(agent, thread, make_state(5), metadata=meta,
                    parent=None if head is None else head.checkpoint_id)
    got = repo.get(agent, thread, info.checkpoint_id)
    assert got.metadata == meta and states_equal(got.state, make_state(5))
    if (agent, thread) != ("a", "t"):
        with pytest.raises(CheckpointNotFound):
            repo.get(agent, thread, stored)
        assert repo.latest("a", "t").checkpoint_id == stored


@FUZZ
@given(meta=st.one_of(
    st.dictionaries(st.text(max_size=5), st.sampled_from(
        [math.nan, math.inf, (1, 2), {1, 2}, b"x", object()]), min_size=1, max_size=3),
    st.dictionaries(st.integers(), JSON, min_size=1, max_size=3),
    st.lists(JSON, max_size=3), st.text(), st.integers()))
def test_fuzzed_bad_metadata_is_refused_and_writes_nothing(repo, engine, stored, meta) -> None:
    before = snapshot(engine)
    with pytest.raises(InvalidMetadataError):
        repo.put("a", "t", make_state(6), parent=stored, metadata=meta)
    with pytest.raises(InvalidMetadataError):
        repo.fork("a", "t", stored, "t-fork", metadata=meta)
    assert snapshot(engine) == before


def test_ids_and_metadata_travel_only_as_parameters(repo, engine) -> None:
    agent, thread, note = "ag'); DELETE FROM x; --", "th\" OR 1=1", "note'--"
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        head = repo.put(agent, thread, make_state(1), parent=None, metadata={"n": note})
        repo.update(agent, thread, lambda s: make_state(2))
        repo.get(agent, thread, head.checkpoint_id)
        repo.history(agent, thread, before=repo.latest(agent, thread).checkpoint_id)
        repo.fork(agent, thread, head.checkpoint_id, thread + "'")
        repo.prune(agent, thread, keep_last=1)
        repo.list_threads(agent)
        repo.delete_agent(agent)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(sent) > 10
    assert not [s for s in sent if agent in s or thread in s or note in s
                or head.checkpoint_id in s]

"""What goes into and comes out of a checkpoint row: ids, keys, metadata, verified state bytes.

Nothing here touches the database. Writing: :func:`encode_state` refuses a batch other than one
conversation and a state holding NaN/Inf, then returns the safetensors blob with its sha256.
Reading: :func:`decode_state` checks the codec, the checksum, that the blob decodes, and that the
decoded state agrees with the row's own columns; any failure is a :class:`CorruptCheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from agentmem.errors import StateFormatError
from agentmem.model.state import MemoryState
from store.errors import (
    CorruptCheckpointError,
    InvalidIdError,
    InvalidMetadataError,
    NonFiniteStateError,
)

CODEC = "safetensors"  # the blob is MemoryState.to_bytes(); never pickle
MAX_ID_CHARS = 4096
MAX_METADATA_BYTES = 64 * 1024
CHECKPOINT_ID_RE = re.compile(r"[0-9a-f]{32}")


def check_id(name: str, value: Any) -> str:
    """Return ``value`` if it can key rows: a non-empty str, no NUL, encodable as UTF-8.

    Raises:
        InvalidIdError: anything else (PostgreSQL text cannot hold NUL or lone surrogates).
    """
    if not isinstance(value, str):
        raise InvalidIdError(f"{name} must be a str; got {type(value).__name__}")
    if not value or len(value) > MAX_ID_CHARS:
        raise InvalidIdError(f"{name} must have 1..{MAX_ID_CHARS} characters; got {len(value)}")
    if "\x00" in value:
        raise InvalidIdError(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidIdError(f"{name} is not valid Unicode text: {e.reason}") from e
    return value


def show(value: str, limit: int = 40) -> str:
    """An id for error messages: its repr, cut at ``limit`` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "…"


def is_checkpoint_id(value: Any) -> bool:
    """Whether ``value`` has the form of ids this store makes (32 lowercase hex digits)."""
    if not isinstance(value, str):
        raise InvalidIdError(f"checkpoint_id must be a str; got {type(value).__name__}")
    return CHECKPOINT_ID_RE.fullmatch(value) is not None


def agent_key(agent_id: str) -> bytes:
    """Fixed-size index key of an agent id (32 bytes)."""
    return hashlib.sha256(b"agentmem.agent\x00" + agent_id.encode("utf-8")).digest()


def thread_key(agent_id: str, thread_id: str) -> bytes:
    """Fixed-size index key of (agent_id, thread_id); length-prefixed, so no two pairs meet."""
    a = agent_id.encode("utf-8")
    t = thread_id.encode("utf-8")
    data = b"agentmem.thread\x00" + len(a).to_bytes(8, "little") + a + t
    return hashlib.sha256(data).digest()


def encode_metadata(metadata: Any) -> str:
    """Compact JSON text of ``metadata``, which must round-trip through JSON exactly.

    Raises:
        InvalidMetadataError: not a dict, non-str keys, tuples, NaN/Inf, non-JSON values, or more
            than :data:`MAX_METADATA_BYTES` once encoded.
    """
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise InvalidMetadataError(f"metadata must be a dict; got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, allow_nan=False, separators=(",", ":"))
        same = json.loads(text) == metadata and _same_types(json.loads(text), metadata)
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidMetadataError(f"metadata is not plain JSON: {e}") from e
    if not same:
        raise InvalidMetadataError("metadata does not round-trip through JSON (non-str keys, "
                                   "tuples or other non-JSON types)")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise InvalidMetadataError(f"metadata is over {MAX_METADATA_BYTES} bytes as JSON")
    return text


def decode_metadata(text: str) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise CorruptCheckpointError(f"stored metadata is not JSON: {e}") from e
    if not isinstance(value, dict):
        raise CorruptCheckpointError("stored metadata is not a JSON object")
    return value


def _same_types(a: Any, b: Any) -> bool:
    # json.loads(json.dumps(x)) == x also holds for 1 vs 1.0 and True vs 1; require the types too.
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return all(_same_types(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b)
    return True


@dataclass(frozen=True)
class EncodedState:
    """The columns a state contributes to its checkpoint row."""

    blob: bytes
    checksum: str  # sha256 hex of blob
    adapter_fingerprint: str
    backbone_id: str
    shape: str  # JSON list [L, N, r, r]
    dtype: str
    tokens_written: int
    codec: str = CODEC


def encode_state(state: MemoryState) -> EncodedState:
    """Serialize one conversation's state for a row.

    Raises:
        TypeError: ``state`` is not a MemoryState.
        ValueError: the state holds more than one conversation (batch size != 1).
        NonFiniteStateError: the state holds NaN or Inf.
    """
    if not isinstance(state, MemoryState):
        raise TypeError(f"expected a MemoryState; got {type(state).__name__}")
    if state.batch_size != 1:
        raise ValueError(f"a checkpoint holds one conversation; got batch size {state.batch_size}"
                         " (use state.row(i))")
    if not state.is_finite():
        raise NonFiniteStateError("state holds NaN or Inf; refusing to save it")
    blob = state.to_bytes()
    return EncodedState(blob=blob, checksum=hashlib.sha256(blob).hexdigest(),
                        adapter_fingerprint=state.adapter_fingerprint,
                        backbone_id=state.backbone_id, shape=shape_text(state.shape),
                        dtype=str(state.tensors.dtype).removeprefix("torch."),
                        tokens_written=int(state.tokens_written[0]))


def same_state(a: bytes, b: bytes) -> bool:
    """Whether two blobs hold the same state (safetensors' header order is not stable, so equal
    states may differ byte for byte)."""
    if a == b:
        return True
    try:
        x, y = MemoryState.from_bytes(a), MemoryState.from_bytes(b)
    except StateFormatError:
        return False
    return (x.tensors.dtype == y.tensors.dtype and x.tensors.shape == y.tensors.shape
            and bool((x.tensors == y.tensors).all())
            and bool((x.tokens_written == y.tokens_written).all())
            and (x.layer_indices, x.adapter_fingerprint, x.backbone_id, x.config)
            == (y.layer_indices, y.adapter_fingerprint, y.backbone_id, y.config))


def decode_state(row: EncodedState, where: str) -> MemoryState:
    """Verify a stored row and return its state.

    Args:
        row: the row's state columns, as read.
        where: names the row in error messages.

    Raises:
        CorruptCheckpointError: unknown codec, checksum mismatch, undecodable blob, non-finite
            values, or a blob that disagrees with the row's columns.
    """
    if row.codec != CODEC:
        raise CorruptCheckpointError(f"{where}: unknown codec {row.codec!r}")
    blob = bytes(row.blob)
    if hashlib.sha256(blob).hexdigest() != row.checksum:
        raise CorruptCheckpointError(f"{where}: blob fails its sha256 checksum")
    try:
        state = MemoryState.from_bytes(blob)
    except StateFormatError as e:
        raise CorruptCheckpointError(f"{where}: blob does not decode: {e}") from e
    if encode_columns(state) != _columns(row):
        raise CorruptCheckpointError(f"{where}: blob disagrees with the row's columns")
    if state.batch_size != 1 or not state.is_finite():
        raise CorruptCheckpointError(f"{where}: stored state is not one finite conversation")
    return state


def shape_text(shape: tuple[int, ...]) -> str:
    """Compact JSON of a shape: ``[30,1,8,8]``."""
    return json.dumps(list(shape), separators=(",", ":"))


def encode_columns(state: MemoryState) -> tuple[Any, ...]:
    return (state.adapter_fingerprint, state.backbone_id, shape_text(state.shape),
            str(state.tensors.dtype).removeprefix("torch."),
            int(state.tokens_written[0]) if state.batch_size == 1 else None)


def _columns(row: EncodedState) -> tuple[Any, ...]:
    return (row.adapter_fingerprint, row.backbone_id, row.shape, row.dtype, row.tokens_written)

"""`DeltaMemConfig`: the frozen, validated description of a δ-mem adapter."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from agentmem.options import at_least, option

WRITE_MODES = ("token", "message")  # TSW, SSW (docs/design.md#the-mechanism)
BRANCHES = ("q", "k", "v", "o")
INITS = ("base_slice", "zero")
WRITE_POLICIES = ("all", "user")
NUMERICS = ("fp32", "bf16")  # docs/official_adapters.md#numerics
WRITE_CONTEXTS = ("turn", "history")
MESSAGE_SPANS = ("content", "template")
# Fields added after adapters were shipped: left out of the JSON while at their default, so an
# older adapter's config (and so its fingerprint) reads back byte for byte.
_OMIT_AT_DEFAULT = {"write_policy": "all", "write_reads": True, "numerics": "fp32",
                    "write_context": "turn", "message_span": "content", "generation_writes": False}


@dataclass(frozen=True)
class DeltaMemConfig:
    """Hyper-parameters of a δ-mem adapter.

    Attributes:
        rank: r, the side of each r×r state matrix.
        num_states: N independent states per layer (1 = TSW/SSW, 4 = the paper's MSW).
        write_mode: "token" writes every token (TSW); "message" writes the mean of each
            message's content tokens once (SSW).
        branches: which projections receive a correction s·U·m; q and o by default.
        target_layers: decoder-layer indices that get a memory; None means all of them.
        alpha: correction scale numerator; s = alpha / rank.
        beta_bias: initial b_β; sigmoid(-1.5) ≈ 0.18 write strength.
        init: "base_slice" (U columns copy the frozen projections, times init_gain) or "zero".
        init_gain: gain of the base_slice initialisation.
        write_policy: which messages are written: "all", or "user" (user messages only; replies
            are shown to the write pass but not written). Message-level writes only.
        write_reads: whether the write pass also reads the memory (its corrections apply while
            writing). False: a write pass is the frozen backbone's, so each message's write
            features depend on its text alone (training can cache them). Message-level only.
        numerics: "fp32" computes every δ-mem step in fp32 and keeps the state in fp32; "bf16"
            keeps the dtype behaviour of the method authors' release: features and corrections
            in bf16, the recurrence of a pass in fp32, the state rounded to bf16 after every pass
            (a backbone served for such an adapter is loaded in bf16).
        write_context: "turn" writes each turn in a pass of its own tokens; "history" writes the
            whole conversation as one sequence (each written token attends to every earlier one),
            as the authors' release was trained and evaluated.
        message_span: what one message-level write averages: the message's "content" tokens, or
            its whole chat-template span ("template": role header, content, end of turn).
        generation_writes: the chat model's read pass writes as it reads, as the authors' chat
            session does: the whole conversation from an empty memory, then each generated token
            before the next one is decoded (token writes and write_context="history" only; the
            read pass then shows the whole conversation). Evaluation reads with writes off, as
            the authors' evaluation does.
    """

    rank: int = option(8, help="side r of each r×r state matrix", parse=at_least(1))
    num_states: int = option(1, help="independent states per layer (4: the paper's MSW)",
                             parse=at_least(1))
    write_mode: str = option("token", help="token: write every token (TSW); message: write each "
                             "message's mean once (SSW)", choices=WRITE_MODES)
    branches: tuple[str, ...] = ("q", "o")
    target_layers: tuple[int, ...] | None = None
    alpha: float = 16.0
    beta_bias: float = option(-1.5, help="initial write-gate bias b_β (sigmoid(-1.5) ≈ 0.18)")
    init: str = "base_slice"
    init_gain: float = 0.05  # small enough that a fresh memory barely moves the backbone
    write_policy: str = option("all", help="which messages are written: all, or user (user "
                               "messages only; message-level writes)", choices=WRITE_POLICIES)
    write_reads: bool = option(True, help="write passes run the frozen backbone (no reads while "
                               "writing; message-level writes; lets training cache write features)")
    numerics: str = option("fp32", help="fp32; or bf16: δ-mem in bf16 with the state rounded to "
                           "bf16 after every pass, as the method authors' release", choices=NUMERICS)
    write_context: str = option("turn", help="turn: each turn is written in a pass of its own; "
                                "history: the conversation is written as one sequence",
                                choices=WRITE_CONTEXTS)
    message_span: str = option("content", help="what a message-level write averages: the "
                               "message's content tokens, or its whole chat-template span",
                               choices=MESSAGE_SPANS)
    generation_writes: bool = option(False, help="the read pass writes the whole conversation "
                                     "and each generated token as it reads them (token writes, "
                                     "write_context history), as the method authors' chat session")

    def __post_init__(self) -> None:
        # Accept lists from JSON/users but store tuples so the dataclass stays hashable.
        object.__setattr__(self, "branches", tuple(self.branches))
        if self.target_layers is not None:
            object.__setattr__(self, "target_layers", tuple(self.target_layers))
        self._validate()

    def _validate(self) -> None:
        _check_int("rank", self.rank, low=1)
        _check_int("num_states", self.num_states, low=1)
        if self.write_mode not in WRITE_MODES:
            raise ValueError(f"write_mode={self.write_mode!r}; expected one of {WRITE_MODES}")
        if not self.branches:
            raise ValueError("branches=(); at least one corrected branch is required")
        bad = [b for b in self.branches if b not in BRANCHES]
        if bad or len(set(self.branches)) != len(self.branches):
            raise ValueError(f"branches={self.branches!r}; expected distinct items of {BRANCHES}")
        if self.target_layers is not None:
            if not self.target_layers:
                raise ValueError("target_layers=(); use None for all layers")
            for i in self.target_layers:
                _check_int("target_layers item", i, low=0)
            if len(set(self.target_layers)) != len(self.target_layers):
                raise ValueError(f"target_layers={self.target_layers!r} has duplicates")
        for name in ("alpha", "beta_bias", "init_gain"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError(f"{name}={value!r}; expected a finite number")
            if abs(value) == float("inf"):
                raise ValueError(f"{name}={value!r}; expected a finite number")
        if self.alpha <= 0:
            raise ValueError(f"alpha={self.alpha!r}; expected > 0")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r}; expected one of {INITS}")
        if self.write_policy not in WRITE_POLICIES:
            raise ValueError(f"write_policy={self.write_policy!r}; expected one of {WRITE_POLICIES}")
        if not isinstance(self.write_reads, bool):
            raise ValueError(f"write_reads={self.write_reads!r}; expected a bool")
        if self.write_mode != "message" and (self.write_policy != "all" or not self.write_reads):
            raise ValueError("write_policy and write_reads=False need write_mode='message': "
                             "token writes write every token of a pass and read while writing")
        for name, allowed in (("numerics", NUMERICS), ("write_context", WRITE_CONTEXTS),
                              ("message_span", MESSAGE_SPANS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        if self.message_span != "content" and self.write_mode != "message":
            raise ValueError("message_span='template' needs write_mode='message'")
        if not isinstance(self.generation_writes, bool):
            raise ValueError(f"generation_writes={self.generation_writes!r}; expected a bool")
        if self.generation_writes and (self.write_mode != "token" or self.write_context != "history"):
            raise ValueError("generation_writes=True needs write_mode='token' and "
                             "write_context='history': the read pass rewrites the conversation")
        if self.numerics != "fp32" and not self.write_reads:
            raise ValueError(f"numerics={self.numerics!r} rounds the state after every pass; "
                             "write_reads=False batches the passes of a history into one")

    @property
    def scale(self) -> float:
        """s = alpha / rank, the factor of every correction."""
        return self.alpha / self.rank

    @property
    def read_dim(self) -> int:
        """Width of one token's read-out m: N states × r."""
        return self.num_states * self.rank

    def layer_indices(self, num_layers: int) -> tuple[int, ...]:
        """The target layers resolved against a backbone with ``num_layers`` layers."""
        if self.target_layers is None:
            return tuple(range(num_layers))
        bad = [i for i in self.target_layers if i >= num_layers]
        if bad:
            raise ValueError(f"target_layers {bad} out of range for {num_layers} layers")
        return tuple(sorted(self.target_layers))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["branches"] = list(self.branches)
        if self.target_layers is not None:
            data["target_layers"] = list(self.target_layers)
        for name, default in _OMIT_AT_DEFAULT.items():
            if data[name] == default:
                del data[name]
        return data

    def to_json(self) -> str:
        """Sorted, compact JSON; equal configs give identical strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeltaMemConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DeltaMemConfig keys: {unknown}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> DeltaMemConfig:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("DeltaMemConfig JSON must be an object")
        return cls.from_dict(data)


def _check_int(name: str, value: Any, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}; expected an integer >= {low}")

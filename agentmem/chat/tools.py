"""Tool calling for chat templates with Hermes/Qwen-style markup (Qwen2.5, Qwen3).

Such templates list the tools in the system header and expect the model to answer with

    <tool_call>
    {"name": "get_weather", "arguments": {"location": "Paris"}}
    </tool_call>

This module renders that markup, parses it out of generated text (fixed strings in, calls out,
no model needed) and detects whether a tokenizer's chat template takes tools at all.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.S)
_PROBE = "agentmem_probe_tool"


@dataclass(frozen=True)
class ToolCall:
    """A well-formed call: tool name, JSON-object arguments and a fresh id."""

    name: str
    args: dict[str, Any]
    id: str


@dataclass(frozen=True)
class InvalidToolCall:
    """Markup that could not be read as a call (bad JSON, no name, truncated)."""

    name: str | None
    args: str
    id: str
    error: str


@dataclass(frozen=True)
class ParsedAnswer:
    """Generated text split into its plain content and the calls in it."""

    content: str
    calls: list[ToolCall]
    invalid: list[InvalidToolCall]


def render_tool_call(name: str, args: dict[str, Any]) -> str:
    """The markup of one call, as Qwen templates render an assistant's ``tool_calls``."""
    return (f'{OPEN}\n{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": '
            f"{json.dumps(args, ensure_ascii=False)}}}\n{CLOSE}")


def parse_tool_calls(text: str) -> ParsedAnswer:
    """Split ``text`` into content (every character outside the markup) and tool calls.

    An unterminated ``<tool_call>`` at the end (generation cut by the token limit) is parsed like
    a closed one. Markup that does not parse (incomplete JSON, no name) becomes an
    `InvalidToolCall` and stays in the content as text, so nothing the model wrote is lost.
    """
    pieces, calls, invalid, pos = [], [], [], 0
    for m in _BLOCK.finditer(text):
        call = _parse_body(m.group(1).strip())
        if isinstance(call, ToolCall):
            pieces.append(text[pos : m.start()])
            pos = m.end()
            calls.append(call)
        else:
            invalid.append(call)
    pieces.append(text[pos:])
    return ParsedAnswer("".join(pieces), calls, invalid)


def _parse_body(body: str) -> ToolCall | InvalidToolCall:
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        return InvalidToolCall(None, body, call_id, f"tool call is not valid JSON: {e}")
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return InvalidToolCall(None, body, call_id, 'tool call has no "name" string')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models emit the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    if not isinstance(args, dict):
        return InvalidToolCall(obj["name"], json.dumps(args, ensure_ascii=False), call_id,
                               '"arguments" is not a JSON object')
    return ToolCall(obj["name"], args, call_id)


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the chat template renders a ``tools=`` list (probed, not guessed from its text)."""
    probe = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": _PROBE, "description": "probe",
                                             "parameters": {"type": "object", "properties": {}}}}
    try:
        text = tokenizer.apply_chat_template(probe, tools=[tool], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that fails on tools does not support them
        return False
    return _PROBE in text


def forced_prefix(tool_choice: str | None, names: list[str]) -> str:
    """Text that starts the answer so that a call is made (``tool_choice`` any/required/name).

    Returns "" when the model may choose (None, "auto", "none").

    Raises:
        ValueError: ``tool_choice`` names no bound tool.
    """
    if tool_choice in (None, "auto", "none"):
        return ""
    if tool_choice in ("any", "required", True):
        if len(names) != 1:
            return f'{OPEN}\n{{"name": "'
        tool_choice = names[0]
    if tool_choice not in names:
        raise ValueError(f"tool_choice={tool_choice!r} is not a bound tool ({', '.join(names)})")
    return f'{OPEN}\n{{"name": {json.dumps(tool_choice, ensure_ascii=False)}, "arguments": '

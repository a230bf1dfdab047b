"""Tool calling: the markup parser on fixed strings, and the chat model's tool path end to end
(a scripted decoder writes the markup a tool-capable backbone would)."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool

from agentmem.chat.shared_backbone import ChatBackend
from agentmem.chat.tools import forced_prefix, parse_tool_calls, render_tool_call, template_supports_tools
from agentmem.errors import ToolCallingNotSupportedError
from tests.chat.conftest import cfg
from tests.chat.tiny import byte_tokenizer


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "sunny"


def test_parse_one_call_with_text_around():
    parsed = parse_tool_calls('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": '
                              '{"location": "Paris"}}\n</tool_call>')
    assert parsed.content == "Let me check.\n" and not parsed.invalid
    assert [(c.name, c.args) for c in parsed.calls] == [("get_weather", {"location": "Paris"})]
    assert parsed.calls[0].id.startswith("call_")


def test_parse_several_calls_unicode_and_string_arguments():
    text = ('<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
            '<tool_call>\n{"name": "b", "arguments": "{\\"name\\": \\"你好啊集团\\"}"}\n</tool_call>')
    parsed = parse_tool_calls(text)
    assert [(c.name, c.args) for c in parsed.calls] == [("a", {"x": 1}), ("b", {"name": "你好啊集团"})]
    assert parsed.content == "\n"
    assert len({c.id for c in parsed.calls}) == 2


@pytest.mark.parametrize("body, error", [
    ('{"name": "a", "arguments": {"x": 1}', "not valid JSON"),  # cut by the token limit
    ('{"arguments": {}}', "no \"name\""),
    ('{"name": "a", "arguments": [1, 2]}', "not a JSON object"),
])
def test_unparseable_markup_stays_in_the_content(body, error):
    text = f"Sure. <tool_call>\n{body}\n</tool_call>"
    parsed = parse_tool_calls(text)
    assert not parsed.calls and parsed.content == text
    assert error in parsed.invalid[0].error


def test_unterminated_call_at_the_end_is_still_a_call():
    parsed = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {}}')
    assert [(c.name, c.args) for c in parsed.calls] == [("f", {})] and parsed.content == ""


def test_render_then_parse_round_trips():
    args = {"customer_name": "こんにちは株式会社", "n": [1, 2]}
    parsed = parse_tool_calls(render_tool_call("unicode_customer", args))
    assert [(c.name, c.args) for c in parsed.calls] == [("unicode_customer", args)]
    assert "こんにちは" in render_tool_call("f", args)  # not escaped


def test_template_support_is_probed():
    from tests.chat.tiny import SMOL_TEMPLATE

    assert template_supports_tools(byte_tokenizer())
    assert not template_supports_tools(byte_tokenizer(SMOL_TEMPLATE))


def test_forced_prefix():
    assert forced_prefix(None, ["a"]) == forced_prefix("auto", ["a"]) == ""
    assert forced_prefix("any", ["a"]) == forced_prefix("a", ["a", "b"]) == \
        '<tool_call>\n{"name": "a", "arguments": '
    assert forced_prefix("required", ["a", "b"]) == '<tool_call>\n{"name": "'
    with pytest.raises(ValueError, match="not a bound tool"):
        forced_prefix("c", ["a", "b"])


def test_backbone_without_tool_template_says_so_at_bind_time(make_model, smol_dir):
    model = make_model(backbone=smol_dir)
    with pytest.raises(ToolCallingNotSupportedError, match="no tool support.*local folder"):
        model.bind_tools([get_weather])
    with pytest.raises(ToolCallingNotSupportedError):
        model.with_structured_output({"title": "Weather", "type": "object", "properties": {
            "location": {"type": "string"}}})
    assert make_model(backbone=smol_dir).bind_tools([get_weather], tool_choice="none").invoke("Hi")


class ScriptedDecoder:
    """Stands in for BatchDecoder: 'generates' the tokens of a fixed text."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self.finish_reason, self.generated = ["stop"], [len(tokens)]

    def finish(self, row: int, reason: str = "stop") -> None:
        self.finish_reason[row] = reason

    def __iter__(self):
        for t in self.tokens:
            yield [t]


def script(monkeypatch, text: str) -> list[list[int]]:
    """Make every read pass 'generate' ``text``; returns the prompts it received."""
    prompts = []

    def decoder(self, prompt, states, params):
        prompts.append(prompt[0])
        return ScriptedDecoder(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    monkeypatch.setattr(ChatBackend, "decoder", decoder)
    return prompts


CALL = 'Checking.<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n</tool_call>'


def test_streamed_tool_call_is_held_back_then_parsed(make_model, monkeypatch):
    prompts = script(monkeypatch, CALL)
    model = make_model().bind_tools([get_weather])
    chunks = list(model.stream("Weather in Paris?", config=cfg("t")))
    assert all("<" not in c.content for c in chunks)  # no markup ever streamed as text
    assert "".join(c.content for c in chunks) == "Checking."
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("get_weather", {"location": "Paris"})]
    assert full.response_metadata["finish_reason"] == "tool_calls"
    assert chunks[-1].chunk_position == "last"
    tokenizer = make_model()._backend().tokenizer
    assert '"name": "get_weather"' in tokenizer.decode(prompts[0])  # tools rendered in the prompt


def test_invoke_returns_tool_calls_and_a_returned_call_is_not_rewritten(make_model, monkeypatch):
    script(monkeypatch, CALL)
    model = make_model().bind_tools([get_weather])
    question = HumanMessage("Weather in Paris?")
    ai = model.invoke([question], config=cfg("t"))
    assert ai.content == "Checking." and ai.tool_calls[0]["args"] == {"location": "Paris"}
    written = ai.response_metadata["memory"]["tokens_written"]
    result = ToolMessage("sunny", tool_call_id=ai.tool_calls[0]["id"])
    script(monkeypatch, "It is sunny.")
    final = model.invoke([question, ai, result], config=cfg("t"))
    assert final.content == "It is sunny." and not final.tool_calls
    backend = make_model()._backend()
    from agentmem.model.chat_template import encode_chat

    turn = [{"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "It is sunny."}]
    prefix = [{"role": "user", "content": "Weather in Paris?"}, {"role": "assistant", "content": CALL}]
    added = len(encode_chat(backend.tokenizer, turn, prefix=prefix).input_ids)
    assert final.response_metadata["memory"]["tokens_written"] == written + added


def test_forced_tool_choice_prefills_the_answer(make_model):
    model = make_model(max_tokens=4).bind_tools([get_weather], tool_choice="get_weather")
    chunks = list(model.stream("Hi"))
    assert all(c.content == "" for c in chunks[:-1])  # a forced call is never streamed as text
    full = chunks[0]
    for c in chunks[1:]:
        full += c
    # the random backbone cannot finish the JSON: the call stays readable as content
    assert full.content.startswith('<tool_call>\n{"name": "get_weather", "arguments": ')

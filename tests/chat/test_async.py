"""Async calls run the model off the event loop and keep the same memory semantics."""

from __future__ import annotations

import asyncio

import torch

from tests.chat.conftest import cfg


async def ticks_during(coro) -> tuple[object, int]:
    """Run ``coro`` while a 1 ms ticker runs; a blocked event loop would barely tick."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        return await coro, ticks
    finally:
        done.set()
        await task


def test_ainvoke_and_astream_do_not_block_the_event_loop(make_model):
    model = make_model(max_tokens=48)
    model.invoke("warm up")  # the backbone load is not what this measures

    async def stream() -> str:
        return "".join([c.content async for c in model.astream("My name is Ada.")])

    async def main():
        reply, ticks = await ticks_during(model.ainvoke("My name is Ada.", config=cfg("t")))
        streamed, stream_ticks = await ticks_during(stream())
        return reply, ticks, streamed, stream_ticks

    reply, ticks, streamed, stream_ticks = asyncio.run(main())
    assert ticks >= 5 and stream_ticks >= 5
    assert reply.usage_metadata["output_tokens"] >= 20
    assert streamed == reply.content == model.invoke("My name is Ada.").content
    assert reply.response_metadata["memory"]["thread_id"] == "t"


def test_abatch_and_aremember_match_their_sync_twins(make_model):
    async_model, sync_model = make_model(), make_model()
    prompts, configs = ["Hello", "Where does Lin live?"], [cfg("b"), cfg("a")]

    async def main():
        await async_model.aremember("Lin lives in Porto.", config=cfg("a"))
        return await async_model.abatch(prompts, configs)

    results = asyncio.run(main())
    sync_model.remember("Lin lives in Porto.", config=cfg("a"))
    expected = sync_model.batch(prompts, configs)
    assert [r.content for r in results] == [e.content for e in expected]
    assert torch.equal(async_model.memory_state(cfg("a")).tensors,
                       sync_model.memory_state(cfg("a")).tensors)
    assert results[1].response_metadata["memory"]["parent_checkpoint_id"] is not None
    assert results[0].response_metadata["memory"]["parent_checkpoint_id"] is None

"""Team events without a shared channel layer (`make run`'s embedded defaults): published to the outbox table and
relayed, in order and once each, to the web process's own sockets (common/events.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from common import events
from common.channel_groups import team_group
from common.events import EventRelay, team_event_publish, team_event_publish_async
from common.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def in_memory(settings) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def listener(team: str) -> str:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(team_group(team), channel)
    return channel


async def received(channel: str) -> list[dict]:
    """What reached the channel so far, without waiting for more."""
    layer = get_channel_layer()
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), 0.05))
        except TimeoutError:
            return got


async def test_without_a_shared_layer_events_go_through_the_outbox_in_order_once(in_memory) -> None:
    channel = await listener("alpha")
    other = await listener("beta")
    relay = EventRelay()
    relay.last = await sync_to_async(events._outbox_newest)()
    try:
        await _relay_in_order(relay, channel, other)
    finally:
        await relay.stop()


async def _relay_in_order(relay: EventRelay, channel: str, other: str) -> None:
    await sync_to_async(team_event_publish)(team="alpha", kind="job", data={"id": 1, "status": "queued"})
    await team_event_publish_async(team="alpha", kind="alert", data={"id": 7})
    await sync_to_async(team_event_publish)(team="beta", kind="release", data={"endpoint": "b"})
    assert await received(channel) == []  # nothing is sent directly: a worker's memory reaches no socket
    assert await sync_to_async(OutboxEvent.objects.count)() == 3

    assert await relay.relay_once() == 3
    assert [m["event"] for m in await received(channel)] == [
        {"kind": "job", "data": {"id": 1, "status": "queued"}},
        {"kind": "alert", "data": {"id": 7}},
    ]
    assert [m["event"]["kind"] for m in await received(other)] == ["release"]
    # Read again (recent rows are, in case one committed late), but never sent twice.
    await relay.relay_once()
    assert await received(channel) == []


async def test_a_row_that_commits_after_a_newer_one_is_still_sent(in_memory) -> None:
    channel = await listener("alpha")
    relay = EventRelay()
    early = await sync_to_async(OutboxEvent.objects.create)(team="alpha", kind="job", data={"n": 1})
    late = await sync_to_async(OutboxEvent.objects.create)(team="alpha", kind="job", data={"n": 2})
    # As if `early` committed only after `late` had been relayed: the relay has gone past its id.
    relay.last = late.pk
    relay._sent[late.pk] = asyncio.get_running_loop().time()
    try:
        await relay.relay_once()
    finally:
        await relay.stop()
    assert [m["event"]["data"] for m in await received(channel)] == [{"n": 1}]
    assert early.pk < late.pk


async def test_old_rows_are_pruned(in_memory) -> None:
    old = await sync_to_async(OutboxEvent.objects.create)(team="alpha", kind="job", data={})
    fresh = await sync_to_async(OutboxEvent.objects.create)(team="alpha", kind="job", data={})
    await sync_to_async(OutboxEvent.objects.filter(pk=old.pk).update)(
        created_at=timezone.now() - events.OUTBOX_RETENTION - timedelta(seconds=1)
    )
    assert await sync_to_async(events._outbox_prune)() == 1
    assert await sync_to_async(lambda: list(OutboxEvent.objects.values_list("pk", flat=True)))() == [fresh.pk]


async def test_the_relay_runs_only_without_a_shared_layer(settings) -> None:
    relay = EventRelay()
    relay.start()  # the suite's layer is Redis: events go straight to the group, no relay
    assert relay._task is None
    channel = await listener("alpha")
    await sync_to_async(team_event_publish)(team="alpha", kind="job", data={"id": 2})
    assert [m["event"]["data"] for m in await received(channel)] == [{"id": 2}]
    assert await sync_to_async(OutboxEvent.objects.count)() == 0

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel = await listener("alpha")
    relay.start()
    try:
        await sync_to_async(team_event_publish)(team="alpha", kind="job", data={"id": 3})
        for _ in range(40):
            got = await received(channel)
            if got:
                break
            await asyncio.sleep(0.05)
        assert [m["event"]["data"] for m in got] == [{"id": 3}]
    finally:
        await relay.stop()

"""Publish events to a team's live stream (/ws/teams/{team}/events/), and access changes to a user's sockets.

Registry, deployments and monitoring all publish; monitoring's consumers deliver. Publishing sits in common, below
every app that publishes, so no app imports monitoring to announce its writes (docs/architecture.md).

With a shared channel layer (Redis), an event goes straight to the team's group. With the embedded defaults the
layer lives in the web process's memory, where a worker's publish would reach no socket: events are then written to
the outbox table (OutboxEvent), and `event_relay`, running in each web process, reads new rows a few times a second
and sends them to its own sockets. Inside a transaction the row commits or rolls back with the change it announces.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer
from django.db import close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from common.channel_groups import team_group, user_group
from common.models import OutboxEvent
from common.signals import team_event_published

logger = logging.getLogger(__name__)
T = TypeVar("T")

RELAY_POLL_SECONDS = 0.25
RELAY_BATCH = 500
# A row can commit after one with a higher id (PostgreSQL hands out ids before commit): rows this recent are read
# again on every poll, and the ones already sent are skipped.
RELAY_LATE_SECONDS = 5.0
# Rows are kept this long (a web process that restarts starts from the newest row, so older ones serve nobody).
OUTBOX_RETENTION = timedelta(minutes=10)
OUTBOX_PRUNE_SECONDS = 60.0


def _layer() -> BaseChannelLayer:
    layer = get_channel_layer()
    assert layer is not None
    return layer


def events_through_outbox() -> bool:
    """Whether events travel through the outbox: the channel layer is this process's memory, shared with no other."""
    return isinstance(_layer(), InMemoryChannelLayer)


def _team_message(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "team.event", "event": {"kind": kind, "data": data}}


def _team_event_receivers_notify(team: str, kind: str, data: dict[str, Any]) -> None:
    """Tell the receivers of `team_event_published` (webhooks record their deliveries) before the live stream.

    First, so a delivery row is written even when the stream (Redis) is away. send_robust: a receiver that fails is
    logged by Django, and the live notice still goes out.
    """
    team_event_published.send_robust(sender=None, team=team, kind=kind, data=data)


async def team_event_publish_async(*, team: str, kind: str, data: dict[str, Any]) -> None:
    await sync_to_async(_team_event_receivers_notify)(team, kind, data)
    if events_through_outbox():
        await sync_to_async(OutboxEvent.objects.create)(team=team, kind=kind, data=data)
        return
    await _layer().group_send(team_group(team), _team_message(kind, data))


def team_event_publish(*, team: str, kind: str, data: dict[str, Any]) -> None:
    """Send an event to every socket of the team (from sync code: services, tasks), and to its webhooks."""
    _team_event_receivers_notify(team, kind, data)
    if events_through_outbox():
        OutboxEvent.objects.create(team=team, kind=kind, data=data)
        return
    async_to_sync(_layer().group_send)(team_group(team), _team_message(kind, data))


def user_sockets_recheck(*, user_id: int) -> None:
    """Tell every open socket of the user to re-check its access now (a membership of theirs changed)."""
    async_to_sync(_layer().group_send)(user_group(user_id), {"type": "access.changed"})


def _outbox_newest() -> int:
    close_old_connections()
    newest = OutboxEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    return newest or 0


def _outbox_after(last: int) -> list[tuple[int, str, str, dict[str, Any]]]:
    """The rows after `last`, and the recent ones before it (which may have committed late)."""
    close_old_connections()
    recent = timezone.now() - timedelta(seconds=RELAY_LATE_SECONDS)
    rows = OutboxEvent.objects.filter(Q(pk__gt=last) | Q(created_at__gte=recent)).order_by("pk")[:RELAY_BATCH]
    return list(rows.values_list("pk", "team", "kind", "data"))


def _outbox_prune() -> int:
    close_old_connections()
    deleted, _ = OutboxEvent.objects.filter(created_at__lt=timezone.now() - OUTBOX_RETENTION).delete()
    return deleted


class EventRelay:
    """Deliver the outbox's new events to this process's sockets, in order, until stopped (web processes)."""

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self.last = 0
        self._sent: dict[int, float] = {}  # recent rows already sent -> when
        # The relay's reads run on one thread of its own, with one database connection, closed by stop().
        self._executor: ThreadPoolExecutor | None = None

    async def _db(self, call: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="event-relay")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)

    def start(self) -> None:
        """Start relaying on the running loop, from the newest event now (once; nothing without the outbox)."""
        if events_through_outbox() and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._executor is not None:
            await self._db(connections.close_all)
            self._executor.shutdown(wait=False)
            self._executor = None

    async def relay_once(self) -> int:
        """Send the events written since the last call, each once; how many rows were read."""
        rows = await self._db(_outbox_after, self.last)
        layer = _layer()
        now = asyncio.get_running_loop().time()
        for pk, team, kind, data in rows:
            if pk in self._sent:
                continue
            await layer.group_send(team_group(team), _team_message(kind, data))
            self._sent[pk] = now
            self.last = max(self.last, pk)
        for pk, sent_at in list(self._sent.items()):
            if now - sent_at > 2 * RELAY_LATE_SECONDS:
                del self._sent[pk]
        return len(rows)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = False
        pruned_at = 0.0
        while True:
            try:
                if not started:
                    self.last = await self._db(_outbox_newest)
                    started = True
                while await self.relay_once() == RELAY_BATCH:
                    pass
                if loop.time() - pruned_at > OUTBOX_PRUNE_SECONDS:
                    pruned_at = loop.time()
                    await self._db(_outbox_prune)
            except Exception:  # the database away: log, and go on from the same row once it is back
                logger.warning("event relay: could not read the outbox", exc_info=True)
            await asyncio.sleep(RELAY_POLL_SECONDS)


event_relay = EventRelay()

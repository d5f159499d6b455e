"""Signals a higher layer receives to react to what common does (docs/architecture.md: a lower layer never imports up).

`team_event_published`: sent by `common.events.team_event_publish` (and its async twin) for every team event, before
it goes to the live stream, with `team` (slug), `kind` and `data`. The webhooks app records a delivery per webhook
that subscribes to the kind; a receiver raising is logged by the publisher, never raised to it.
"""

from __future__ import annotations

from django.dispatch import Signal

team_event_published = Signal()

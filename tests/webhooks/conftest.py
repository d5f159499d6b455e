from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from teams.choices import Role
from teams.models import Team
from teams.permissions import Actor
from webhooks.services import CreatedWebhook, webhook_create


@dataclass
class Sent:
    """The delivery tasks sent to the broker (captured, not sent): (delivery id, countdown)."""

    calls: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [delivery_id for delivery_id, _ in self.calls]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    captured = Sent()

    def apply_async(args: tuple[Any, ...], countdown: float | None = None, **_: Any) -> None:
        captured.calls.append((args[0], countdown))

    monkeypatch.setattr("webhooks.tasks.webhook_delivery_task.apply_async", apply_async)
    return captured


@pytest.fixture
def admin(make_member, team_a: Team) -> Actor:
    return Actor(user=make_member(team=team_a, role=Role.ADMIN, username="ada").user)


@pytest.fixture
def make_webhook(admin: Actor, team_a: Team):
    def make(
        url: str, events: list[str] | None = None, format: str = "modeldeck", name: str = "hook"
    ) -> CreatedWebhook:
        return webhook_create(
            actor=admin, team=team_a, name=name, url=url, events=events or ["release", "job"], format=format
        )

    return make

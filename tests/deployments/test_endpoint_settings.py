"""Endpoint serving settings over the API (public, batching), and the stamp that tells serving processes."""

from __future__ import annotations

import pytest

from deployments.models import Endpoint
from deployments.selectors import release_live_list, release_stamp
from deployments.services import endpoint_create, release_promote
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import setup  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


def test_patch_changes_batching_and_is_audited(setup) -> None:  # noqa: F811
    dev, _, model = setup
    endpoint_create(actor=Actor(user=dev.user), model=model, name="iris", version=model.versions.get(number=1))
    response = dev.token_client().patch(
        "/api/v1/endpoints/iris", {"max_batch_size": 16, "max_queue_delay_ms": 1.5}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["max_batch_size"], response.json()["max_queue_delay_ms"]) == (16, 1.5)
    assert Endpoint.objects.filter(name="iris", max_batch_size=16, max_queue_delay_ms=1.5).exists()
    event = AuditEvent.objects.get(action="endpoint.update")
    assert event.data == {
        "endpoint": "iris",
        "before": {"max_batch_size": 0, "max_queue_delay_ms": 2.0},
        "after": {"max_batch_size": 16, "max_queue_delay_ms": 1.5},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [({"max_batch_size": -1}, "max_batch_size"), ({"max_queue_delay_ms": 5000}, "max_queue_delay_ms"), ({}, None)],
)
def test_patch_refuses_bad_settings_and_changes_nothing(setup, body, field) -> None:  # noqa: F811
    dev, _, model = setup
    endpoint_create(actor=Actor(user=dev.user), model=model, name="iris", version=model.versions.get(number=1))
    response = dev.token_client().patch("/api/v1/endpoints/iris", body, format="json")
    assert response.status_code == 400
    if field:
        assert field in response.json()["error"]["detail"]
    assert Endpoint.objects.filter(name="iris", max_batch_size=0, max_queue_delay_ms=2.0).exists()
    assert not AuditEvent.objects.filter(action="endpoint.update").exists()


def test_protected_endpoint_settings_need_an_admin(setup, make_member) -> None:  # noqa: F811
    dev, admin, model = setup
    endpoint_create(
        actor=Actor(user=admin.user), model=model, name="iris", version=model.versions.get(number=1), protected=True
    )
    assert dev.token_client().patch("/api/v1/endpoints/iris", {"public": True}, format="json").status_code == 403
    assert dev.token_client().patch("/api/v1/endpoints/iris", {"protected": False}, format="json").status_code == 403
    assert admin.token_client().patch("/api/v1/endpoints/iris", {"public": True}, format="json").status_code == 200
    viewer = make_member(team=dev.team, role=Role.VIEWER, username="viewer")
    assert viewer.token_client().patch("/api/v1/endpoints/iris", {"public": False}, format="json").status_code == 403
    assert Endpoint.objects.get(name="iris").public is True


def test_other_teams_get_404(setup, make_member, team_b) -> None:  # noqa: F811
    dev, _, model = setup
    endpoint_create(actor=Actor(user=dev.user), model=model, name="iris", version=model.versions.get(number=1))
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider")
    assert outsider.token_client().patch("/api/v1/endpoints/iris", {"public": True}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_every_change_bumps_the_release_stamp_on_commit(setup) -> None:  # noqa: F811
    dev, _, model = setup
    actor = Actor(user=dev.user)
    stamps = [release_stamp()]
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=model.versions.get(number=1))
    stamps.append(release_stamp())
    release_promote(actor=actor, endpoint=endpoint, version=model.versions.get(number=2))
    stamps.append(release_stamp())
    dev.token_client().patch("/api/v1/endpoints/iris", {"max_batch_size": 8}, format="json")
    stamps.append(release_stamp())
    assert len(set(stamps)) == 4, stamps


def test_live_list_is_the_newest_release_of_each_endpoint(setup, django_assert_num_queries) -> None:  # noqa: F811
    dev, _, model = setup
    actor = Actor(user=dev.user)
    first = endpoint_create(actor=actor, model=model, name="a", version=model.versions.get(number=1))
    endpoint_create(actor=actor, model=model, name="b", version=model.versions.get(number=2))
    release_promote(actor=actor, endpoint=first, version=model.versions.get(number=3))
    release_promote(actor=actor, endpoint=first, version=model.versions.get(number=2), canary_percent=10)
    with django_assert_num_queries(1):
        live = {
            r.endpoint.name: (r.number, r.primary.number, r.canary and r.canary.number) for r in release_live_list()
        }
    assert live == {"a": (3, 3, 2), "b": (1, 2, None)}


@pytest.mark.django_db(transaction=True)
def test_each_release_is_announced_on_the_team_stream_after_commit(setup) -> None:  # noqa: F811
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from common.channel_groups import team_group

    dev, _, model = setup
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(team_group("alpha"), channel)
    actor = Actor(user=dev.user)
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=model.versions.get(number=1))
    release_promote(actor=actor, endpoint=endpoint, version=model.versions.get(number=2), reason="better")

    async def releases_announced(count: int) -> list[dict[str, object]]:
        # One event loop for every receive: channels_redis keeps its receive state per loop.
        events: list[dict[str, object]] = []
        while len(events) < count:  # (the versions' benchmark jobs announce themselves on the same stream)
            event = (await layer.receive(channel))["event"]
            if event["kind"] == "release":
                events.append(event)
        return events

    events = async_to_sync(releases_announced)(2)
    assert events == [
        {
            "kind": "release",
            "data": {
                "endpoint": "iris",
                "release": 1,
                "primary": 1,
                "canary": None,
                "canary_percent": 0,
                "shadow": None,
                "reason": "",
                "by": "dev",
                "action": "create",
            },
        },
        {
            "kind": "release",
            "data": {
                "endpoint": "iris",
                "release": 2,
                "primary": 2,
                "canary": None,
                "canary_percent": 0,
                "shadow": None,
                "reason": "better",
                "by": "dev",
                "action": "promote",
            },
        },
    ]


class FlakyCache:
    """A cache whose writes fail while `away` (Redis stopped), then land."""

    def __init__(self) -> None:
        self.away = True
        self.values: dict[str, object] = {}

    def set(self, key: str, value: object, timeout: object = None) -> None:
        if self.away:
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.values[key] = value


def test_a_release_made_while_the_cache_is_away_is_committed_and_its_stamp_bumped_once_it_is_back(
    setup,  # noqa: F811
    monkeypatch,
    django_capture_on_commit_callbacks,
) -> None:
    from deployments import services
    from deployments.selectors import RELEASE_STAMP_KEY
    from deployments.signals import releases_changed
    from tests.registry.test_worker_kill import wait_until

    dev, _, model = setup
    actor = Actor(user=dev.user)
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=model.versions.get(number=1))
    flaky = FlakyCache()
    monkeypatch.setattr(services, "cache", flaky)
    monkeypatch.setattr(services, "STAMP_RETRY_SECONDS", 0.01)
    told: list[object] = []
    releases_changed.connect(lambda **kwargs: told.append(kwargs["sender"]), weak=False, dispatch_uid="test-told")
    try:
        # Before: the failed stamp write escaped the on-commit hook and the committed promote answered 500.
        with django_capture_on_commit_callbacks(execute=True):
            release = release_promote(actor=actor, endpoint=endpoint, version=model.versions.get(number=2))
    finally:
        releases_changed.disconnect(dispatch_uid="test-told")
    assert release.number == 2 and endpoint.releases.count() == 2
    assert told  # this process follows at once, from the database
    assert flaky.values == {}
    flaky.away = False
    wait_until(lambda: RELEASE_STAMP_KEY in flaky.values, 5, "the stamp to be bumped once the cache is back")
    wait_until(lambda: services._stamp_retry_thread is None, 5, "the retrying thread to end")

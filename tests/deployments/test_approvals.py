"""Four-eyes approvals: enabling them, change requests for promotes and rollouts, deciding, expiry, races, the API."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from deployments.approvals import change_requests_expire
from deployments.models import ChangeRequest, Endpoint, Release, Rollout
from deployments.rollouts import Traffic, rollout_judge, rollouts_running
from deployments.services import endpoint_create
from deployments.tasks import change_requests_expire_task
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.usefixtures("artifact_dir")]

GOOD = Traffic(requests=200, errors=1, disagreements=0, p95_ms=10.0)
PRIMARY = Traffic(requests=2000, errors=10, disagreements=0, p95_ms=10.0)


def _deck(make_member, team: Any, tmp_path: Any, *, second_admin: bool = True) -> dict[str, Any]:
    from registry.services.versions import registered_model_create

    boss = make_member(team=team, role=Role.ADMIN, username="boss")
    other = make_member(team=team, role=Role.ADMIN, username="ada") if second_admin else None
    dev = make_member(team=team, role=Role.DEVELOPER, username="dev")
    viewer = make_member(team=team, role=Role.VIEWER, username="eve")
    actor = Actor(user=boss.user)
    model = registered_model_create(actor=actor, team=team, name="iris")
    versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2, 3)]
    endpoint = endpoint_create(actor=actor, model=model, name="iris-prod", version=versions[0], protected=True)
    return {"boss": boss, "ada": other, "dev": dev, "viewer": viewer, "endpoint": endpoint, "versions": versions}


@pytest.fixture
def deck(make_member, team_a, tmp_path) -> dict[str, Any]:
    return _deck(make_member, team_a, tmp_path)


@pytest.fixture
def guarded(deck) -> dict[str, Any]:
    answer = (
        deck["boss"].token_client().patch("/api/v1/endpoints/iris-prod", {"requires_approval": True}, format="json")
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["requires_approval"] is True
    return deck


def live(name: str = "iris-prod") -> Release:
    release = Release.objects.filter(endpoint__name=name).order_by("-number").first()
    assert release is not None
    return release


def request_promote(member: Any, version: int = 2, **extra: Any) -> Any:
    return member.token_client().post(
        "/api/v1/endpoints/iris-prod/promote", {"version": version, "reason": "better recall", **extra}, format="json"
    )


def approve(member: Any, request_id: int, reason: str = "checked the numbers") -> Any:
    return member.token_client().post(
        f"/api/v1/change-requests/{request_id}/approve", {"reason": reason}, format="json"
    )


@pytest.mark.django_db
def test_enabling_needs_a_second_admin(make_member, team_a, tmp_path) -> None:
    deck = _deck(make_member, team_a, tmp_path, second_admin=False)
    answer = (
        deck["boss"].token_client().patch("/api/v1/endpoints/iris-prod", {"requires_approval": True}, format="json")
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "second_admin_needed"
    assert answer.json()["error"]["message"] == (
        "Approvals need a second admin: alpha has one (boss); add one under Settings → Members first."
    )
    assert Endpoint.objects.get(name="iris-prod").requires_approval is False


@pytest.mark.django_db
def test_enabling_is_for_admins_and_audited_both_ways(deck) -> None:
    refused = (
        deck["dev"].token_client().patch("/api/v1/endpoints/iris-prod", {"requires_approval": True}, format="json")
    )
    assert refused.status_code == 403
    client = deck["boss"].token_client()
    assert client.patch("/api/v1/endpoints/iris-prod", {"requires_approval": True}, format="json").status_code == 200
    assert client.patch("/api/v1/endpoints/iris-prod", {"requires_approval": False}, format="json").status_code == 200
    changes = [e.data["after"] for e in AuditEvent.objects.filter(action="endpoint.update").order_by("id")]
    assert changes == [{"requires_approval": True}, {"requires_approval": False}]


@pytest.mark.django_db
def test_an_unprotected_endpoint_cannot_require_approval(deck) -> None:
    client = deck["boss"].token_client()
    client.patch("/api/v1/endpoints/iris-prod", {"protected": False}, format="json")
    answer = client.patch("/api/v1/endpoints/iris-prod", {"requires_approval": True}, format="json")
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "not_protected")


@pytest.mark.django_db
def test_promote_makes_a_pending_request_and_releases_nothing(guarded) -> None:
    before = live().number
    answer = request_promote(guarded["dev"])
    assert answer.status_code == 202, answer.json()
    body = answer.json()
    assert (body["state"], body["kind"], body["version"], body["requested_by"], body["endpoint"]) == (
        "pending",
        "promote",
        2,
        "dev",
        "iris-prod",
    )
    assert body["change"]["reason"] == "better recall"
    assert live().number == before and live().primary.number == 1
    assert AuditEvent.objects.filter(action="change_request.create", target_id=str(body["id"])).exists()
    # One pending request per endpoint at a time, named in the refusal.
    again = request_promote(guarded["boss"], version=3)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "change_request_pending"
    assert f"change request {body['id']}" in again.json()["error"]["message"]


@pytest.mark.django_db
def test_self_approval_is_refused(guarded) -> None:
    created = request_promote(guarded["boss"]).json()
    answer = approve(guarded["boss"], created["id"])
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "self_approval"
    assert "another admin must approve it" in answer.json()["error"]["message"]
    assert ChangeRequest.objects.get(pk=created["id"]).state == "pending"
    assert live().primary.number == 1


@pytest.mark.django_db
def test_a_second_admin_approves_and_the_release_is_made(guarded) -> None:
    created = request_promote(guarded["dev"]).json()
    answer = approve(guarded["ada"], created["id"], "parity and p95 fine")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    release = live()
    assert (body["state"], body["decided_by"], body["decision_reason"]) == ("approved", "ada", "parity and p95 fine")
    assert body["result"] == {"release": release.number}
    assert release.primary.number == 2
    assert release.reason.startswith("approved by ada: parity and p95 fine")
    assert "better recall" in release.reason
    assert AuditEvent.objects.filter(action="change_request.approve").count() == 1
    # Decided once: a second decision is refused.
    assert approve(guarded["boss"], created["id"]).status_code == 409


@pytest.mark.django_db
def test_viewers_and_developers_cannot_approve(guarded) -> None:
    created = request_promote(guarded["boss"]).json()
    for member in (guarded["viewer"], guarded["dev"]):
        assert approve(member, created["id"]).status_code == 403
    assert ChangeRequest.objects.get(pk=created["id"]).state == "pending"


@pytest.mark.django_db
def test_reject_and_withdraw(guarded) -> None:
    created = request_promote(guarded["dev"]).json()
    client = guarded["ada"].token_client()
    no_reason = client.post(f"/api/v1/change-requests/{created['id']}/reject", {}, format="json")
    assert no_reason.status_code == 400
    rejected = client.post(f"/api/v1/change-requests/{created['id']}/reject", {"reason": "not now"}, format="json")
    assert (rejected.status_code, rejected.json()["state"], rejected.json()["decision_reason"]) == (
        200,
        "rejected",
        "not now",
    )
    assert live().primary.number == 1
    mine = request_promote(guarded["dev"], version=3).json()
    withdrawn = guarded["dev"].token_client().post(f"/api/v1/change-requests/{mine['id']}/reject", {}, format="json")
    assert (withdrawn.json()["state"], withdrawn.json()["decision_reason"]) == ("rejected", "withdrawn")
    assert AuditEvent.objects.filter(action="change_request.reject").count() == 2


@pytest.mark.django_db
def test_requests_expire_lazily_and_by_beat(guarded, monkeypatch) -> None:
    created = request_promote(guarded["dev"]).json()
    later = timezone.now() + timedelta(hours=25)
    monkeypatch.setattr(timezone, "now", lambda: later)
    answer = approve(guarded["ada"], created["id"])
    assert (answer.status_code, answer.json()["error"]["code"]) == (409, "expired")
    assert ChangeRequest.objects.get(pk=created["id"]).state == "expired"
    assert live().primary.number == 1
    # A new request is then possible; the beat task expires it (and its waiting rollout) when its time is up.
    steps = [{"percent": 10, "bake_seconds": 0}]
    rolled = (
        guarded["dev"]
        .token_client()
        .post("/api/v1/endpoints/iris-prod/rollouts", {"version": 2, "steps": steps}, format="json")
    )
    assert rolled.status_code == 202, rolled.json()
    much_later = later + timedelta(hours=30)
    monkeypatch.setattr(timezone, "now", lambda: much_later)
    change_requests_expire_task()
    assert ChangeRequest.objects.get(pk=rolled.json()["id"]).state == "expired"
    assert Rollout.objects.get(pk=rolled.json()["rollout"]).state == "aborted"
    assert AuditEvent.objects.filter(action="change_request.expire").count() == 2
    assert change_requests_expire() == 0


@pytest.mark.django_db
def test_a_rollout_waits_for_approval_then_is_judged(guarded) -> None:
    steps = [{"percent": 10, "bake_seconds": 0}]
    answer = (
        guarded["dev"]
        .token_client()
        .post("/api/v1/endpoints/iris-prod/rollouts", {"version": 2, "steps": steps}, format="json")
    )
    assert answer.status_code == 202, answer.json()
    body = answer.json()
    rollout = Rollout.objects.get(pk=body["rollout"])
    assert (body["kind"], rollout.state, body["rollout_state"]) == ("rollout", "pending_approval", "pending_approval")
    assert live().canary is None and rollouts_running() == []
    approved = approve(guarded["boss"], body["id"], "go")
    assert approved.status_code == 200, approved.json()
    assert approved.json()["result"] == {"rollout": rollout.pk}
    rollout.refresh_from_db()
    assert rollout.state == "running" and rollout.step == 1
    release = live()
    assert release.canary is not None and release.canary.number == 2 and release.canary_percent == 10
    assert "approved by boss: go" in release.reason
    judged = rollout_judge(
        rollout_id=rollout.pk,
        step=1,
        canary=GOOD,
        primary=PRIMARY,
        shadow=None,
        drift_psi=None,
        now=rollout.step_started_at + timedelta(seconds=1),
    )
    assert judged is not None and judged.state == "succeeded"
    assert live().primary.number == 2


@pytest.mark.django_db
def test_applying_fails_cleanly_when_the_version_was_archived(guarded) -> None:
    from registry.services.archive import version_archive

    created = request_promote(guarded["dev"], version=3).json()
    version_archive(actor=Actor(user=guarded["boss"].user), version=guarded["versions"][2])
    before = live().number
    answer = approve(guarded["ada"], created["id"])
    assert answer.status_code == 200, answer.json()
    assert answer.json()["state"] == "failed"
    assert "archived" in answer.json()["result"]["error"]
    assert live().number == before
    assert AuditEvent.objects.filter(action="change_request.fail").count() == 1


@pytest.mark.django_db
def test_a_rollback_fails_the_waiting_rollout_request(guarded) -> None:
    first = request_promote(guarded["dev"]).json()
    approve(guarded["ada"], first["id"])
    steps = [{"percent": 10, "bake_seconds": 0}]
    body = (
        guarded["dev"]
        .token_client()
        .post("/api/v1/endpoints/iris-prod/rollouts", {"version": 3, "steps": steps}, format="json")
        .json()
    )
    rolled = guarded["boss"].token_client().post("/api/v1/endpoints/iris-prod/rollback", {}, format="json")
    assert rolled.status_code == 201
    assert Rollout.objects.get(pk=body["rollout"]).state == "aborted"
    assert ChangeRequest.objects.get(pk=body["id"]).state == "failed"
    assert approve(guarded["ada"], body["id"]).status_code == 409
    assert live().canary is None


@pytest.mark.django_db
def test_rollback_never_waits(guarded) -> None:
    created = request_promote(guarded["dev"], canary_percent=20).json()
    approve(guarded["ada"], created["id"])
    assert live().canary is not None
    answer = guarded["boss"].token_client().post("/api/v1/endpoints/iris-prod/rollback", {}, format="json")
    assert answer.status_code == 201, answer.json()
    assert live().canary is None and live().action == "rollback"


@pytest.mark.django_db
def test_list_and_detail_are_for_the_team(guarded, make_member, team_b) -> None:
    created = request_promote(guarded["dev"]).json()
    client = guarded["viewer"].token_client()
    listed = client.get("/api/v1/change-requests", {"team": "alpha", "state": "pending"})
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()] == [created["id"]]
    assert client.get(f"/api/v1/change-requests/{created['id']}").json()["state"] == "pending"
    stranger = make_member(team=team_b, role=Role.ADMIN).token_client()
    assert stranger.get(f"/api/v1/change-requests/{created['id']}").status_code == 404
    assert stranger.get("/api/v1/change-requests", {"team": "alpha"}).status_code == 404
    assert stranger.post(f"/api/v1/change-requests/{created['id']}/approve", {"reason": "x"}).status_code == 404


@pytest.mark.django_db
def test_the_team_stream_hears_of_each_request(guarded, monkeypatch, django_capture_on_commit_callbacks) -> None:
    published: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        "deployments.services.team_event_publish", lambda **kw: published.append((kw["team"], kw["kind"], kw["data"]))
    )
    with django_capture_on_commit_callbacks(execute=True):
        created = request_promote(guarded["dev"]).json()
    with django_capture_on_commit_callbacks(execute=True):
        approve(guarded["ada"], created["id"])
    approvals = [data for team, kind, data in published if kind == "approval"]
    assert [(d["id"], d["state"], d["version"], d["requested_by"], d["decided_by"]) for d in approvals] == [
        (created["id"], "pending", 2, "dev", None),
        (created["id"], "approved", 2, "dev", "ada"),
    ]


@pytest.mark.django_db(transaction=True)
def test_two_admins_approving_at_once_release_once(make_member, team_a, tmp_path) -> None:
    deck = _deck(make_member, team_a, tmp_path)
    carol = make_member(team=team_a, role=Role.ADMIN, username="carol")
    deck["boss"].token_client().patch("/api/v1/endpoints/iris-prod", {"requires_approval": True}, format="json")
    created = request_promote(deck["dev"]).json()
    before = Release.objects.count()
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def go(member: Any) -> None:
        try:
            barrier.wait()
            codes.append(approve(member, created["id"]).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(m,)) for m in (deck["ada"], carol)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200, 409]
    assert Release.objects.count() == before + 1
    assert ChangeRequest.objects.get(pk=created["id"]).state == "approved"


def _page_client(member: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(member.user)
    return client


@pytest.mark.django_db
def test_pages_ask_show_both_versions_and_decide(guarded) -> None:
    dev = _page_client(guarded["dev"])
    page = dev.get("/endpoints/iris-prod/")
    assert 'data-testid="needs-approval"' in page.content.decode()
    asked = dev.post("/endpoints/iris-prod/", {"operation": "promote", "version": "2", "reason": "recall"})
    assert asked.status_code == 302
    request = ChangeRequest.objects.get()
    assert f'href="/teams/alpha/approvals/{request.pk}/"' in dev.get("/endpoints/iris-prod/").content.decode()
    assert live().primary.number == 1
    overview = dev.get("/teams/alpha/").content.decode()
    assert 'data-testid="pending-approvals"' in overview and f"#{request.pk} promote v2 on iris-prod" in overview

    mine = dev.get(f"/teams/alpha/approvals/{request.pk}/").content.decode()
    assert 'data-action="approve"' not in mine and "another admin must approve it" in mine
    assert "Serving now: v1" in mine and "Requested: v2" in mine
    admin = _page_client(guarded["ada"])
    shown = admin.get(f"/teams/alpha/approvals/{request.pk}/").content.decode()
    assert 'data-action="approve"' in shown
    no_reason = admin.post(f"/teams/alpha/approvals/{request.pk}/", {"operation": "approve"}, HTTP_HX_REQUEST="true")
    assert no_reason.status_code == 400 and ChangeRequest.objects.get().state == "pending"
    done = admin.post(
        f"/teams/alpha/approvals/{request.pk}/", {"operation": "approve", "reason": "ok"}, HTTP_HX_REQUEST="true"
    )
    assert done.status_code == 200 and "approved" in done.content.decode()
    assert live().primary.number == 2
    listing = admin.get("/teams/alpha/approvals/").content.decode()
    assert "Nothing waits for approval." in listing and f'data-change-request="{request.pk}"' in listing


@pytest.mark.django_db
def test_another_teams_approval_page_is_not_found(guarded, make_member, team_b) -> None:
    request_promote(guarded["dev"])
    request = ChangeRequest.objects.get()
    stranger = _page_client(make_member(team=team_b, role=Role.ADMIN))
    assert stranger.get(f"/teams/alpha/approvals/{request.pk}/").status_code == 404
    assert stranger.get(f"/teams/bravo/approvals/{request.pk}/").status_code == 404


@pytest.mark.django_db
def test_settings_card_turns_approvals_on(deck) -> None:
    admin = _page_client(deck["boss"])
    card = admin.get("/endpoints/iris-prod/").content.decode()
    assert 'data-testid="requires-approval"' in card
    answer = admin.post(
        "/endpoints/iris-prod/settings/",
        {"protected": "on", "requires_approval": "on", "max_batch_size": "0", "max_queue_delay_ms": "2.0"},
        HTTP_HX_REQUEST="true",
    )
    assert answer.status_code == 200, answer.content.decode()
    assert Endpoint.objects.get(name="iris-prod").requires_approval is True

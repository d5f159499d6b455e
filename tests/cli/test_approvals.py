"""`modeldeck promote`/`rollout` on an endpoint that requires approval, `approvals`, `approve` and `reject`, against
a live server."""

from __future__ import annotations

import pytest

from deployments.models import ChangeRequest, Release, Rollout
from deployments.services import endpoint_create, endpoint_update
from modeldeck.errors import EXIT_OK, EXIT_PENDING_APPROVAL, EXIT_PERMISSION
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.cli.conftest import Cli
from tests.deployments.test_endpoint_apis import add_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admins(cli: Cli, dev, make_member, tmp_path):
    boss = make_member(team=dev.team, role=Role.ADMIN, username="boss")
    ada = make_member(team=dev.team, role=Role.ADMIN, username="ada")
    actor = Actor(user=boss.user)
    model = registered_model_create(actor=actor, team=dev.team, name="iris")
    versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2)]
    endpoint = endpoint_create(actor=actor, model=model, name="iris-prod", version=versions[0], protected=True)
    endpoint_update(actor=actor, endpoint=endpoint, requires_approval=True)
    return boss, ada


def test_promote_asks_and_a_second_admin_approves(cli: Cli, admins) -> None:
    _, ada = admins
    asked = cli("promote", "iris-prod", "2", "--reason", "better recall")
    assert asked.code == EXIT_OK, asked.stderr
    request = ChangeRequest.objects.get()
    assert f"change request {request.pk} created" in asked.stdout
    assert Release.objects.filter(endpoint__name="iris-prod").count() == 1

    listed = cli("--json", "approvals", "--team", "alpha", "--state", "pending")
    assert [row["id"] for row in listed.json["change_requests"]] == [request.pk]

    own = cli("--json", "approve", str(request.pk))
    assert own.code == EXIT_PERMISSION  # a developer (and the requester)

    approved = cli("--json", "approve", str(request.pk), "--reason", "numbers fine", MODELDECK_TOKEN=ada.token)
    assert approved.code == EXIT_OK, approved.stderr
    body = approved.json["change_request"]
    assert (body["state"], body["decided_by"]) == ("approved", "ada")
    release = Release.objects.filter(endpoint__name="iris-prod").order_by("-number").first()
    assert release is not None and release.primary.number == 2
    assert release.reason.startswith("approved by ada: numbers fine")


def test_self_approval_and_reject(cli: Cli, admins) -> None:
    boss, _ = admins
    asked = cli("--json", "promote", "iris-prod", "2", MODELDECK_TOKEN=boss.token)
    request_id = asked.json["change_request"]["id"]
    own = cli("--json", "approve", str(request_id), MODELDECK_TOKEN=boss.token)
    assert own.code == EXIT_PERMISSION
    assert own.json["error"]["code"] == "self_approval"
    withdrawn = cli("--json", "reject", str(request_id), MODELDECK_TOKEN=boss.token)
    assert withdrawn.json["change_request"]["state"] == "rejected"
    assert withdrawn.json["change_request"]["decision_reason"] == "withdrawn"


def test_rollout_wait_cannot_follow_a_request(cli: Cli, admins) -> None:
    waited = cli("--json", "rollout", "iris-prod", "2", "--steps", "10", "--wait")
    assert waited.code == EXIT_PENDING_APPROVAL, waited.stderr
    assert waited.json["error"]["code"] == "pending_approval"
    rollout = Rollout.objects.get()
    assert rollout.state == "pending_approval"
    assert waited.json["change_request"]["rollout"] == rollout.pk


def test_approve_without_a_reason(cli: Cli, admins) -> None:
    boss, ada = admins
    request_id = cli("--json", "promote", "iris-prod", "2", MODELDECK_TOKEN=boss.token).json["change_request"]["id"]
    approved = cli("approve", str(request_id), MODELDECK_TOKEN=ada.token)
    assert approved.code == EXIT_OK, approved.stderr
    assert f"Change request {request_id}" in approved.stdout and "release 2 made" in approved.stdout
    release = Release.objects.filter(endpoint__name="iris-prod").order_by("-number").first()
    assert release is not None and release.reason == "approved by ada"

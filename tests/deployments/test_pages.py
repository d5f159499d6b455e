"""Endpoint pages: deploy from a version page, one-click promote / canary / rollback, roles and isolation."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from deployments.models import Release
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


@pytest.fixture
def dev_client(make_member, team_a, tmp_path):
    dev = make_member(team=team_a, role=Role.DEVELOPER)
    model = registered_model_create(actor=Actor(user=dev.user), team=team_a, name="iris")
    for seed in (1, 2, 3):
        add_version(model, Actor(user=dev.user), tmp_path, seed)
    client = Client()
    client.force_login(dev.user)
    return client


def test_deploy_then_promote_canary_and_rollback_from_the_pages(dev_client) -> None:
    version_page = dev_client.get("/teams/alpha/models/iris/versions/1/").content.decode()
    assert 'data-testid="deploy"' in version_page
    response = dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris-staging"})
    assert response.status_code == 302 and response["Location"] == "/endpoints/iris-staging/"
    page = dev_client.get("/endpoints/iris-staging/").content.decode()
    assert "Live: release #1" in page and "Promote v2" in page and "Roll back" not in page
    # How to call it, over each protocol.
    assert "POST http://testserver/v2/models/iris-staging/infer" in page
    assert "POST http://testserver/v1/models/iris-staging:predict" in page
    assert "POST http://testserver/mlflow/iris-staging/invocations" in page
    assert "Dynamic batching: off." in page

    assert dev_client.post("/endpoints/iris-staging/", {"operation": "promote", "version": "2"}).status_code == 302
    assert (
        dev_client.post(
            "/endpoints/iris-staging/", {"operation": "canary", "version": "3", "canary_percent": "20", "reason": "try"}
        ).status_code
        == 302
    )
    page = dev_client.get("/endpoints/iris-staging/").content.decode()
    assert "canary" in page and "takes 20% of traffic" in page
    assert (
        "Roll back iris-staging from release #3: remove the canary v3 (20% of traffic)? v2 stays the primary." in page
    )
    assert "Roll back: remove canary v3" in page
    assert dev_client.post("/endpoints/iris-staging/", {"operation": "rollback"}).status_code == 302
    live = Release.objects.filter(endpoint__name="iris-staging").order_by("-number").first()
    assert live is not None
    assert (live.number, live.action, live.primary.number, live.canary) == (4, "rollback", 2, None)
    listing = dev_client.get("/teams/alpha/endpoints/").content.decode()
    assert "iris-staging" in listing and "#4" in listing
    # The history says what each release changed, newest first.
    history = dev_client.get("/endpoints/iris-staging/?fragment=history", HTTP_HX_REQUEST="true").content.decode()
    changes = re.findall(r'<td data-testid="release-change">([^<]*)</td>', history)
    assert changes == ["canary v3 removed", "canary v3 takes 20 %", "v2 replaces v1", "serves v1"]


def test_errors_are_shown_and_change_nothing(dev_client) -> None:
    dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris"})
    bad = dev_client.post("/endpoints/iris/", {"operation": "canary", "version": "2", "canary_percent": "100"})
    assert bad.status_code == 400
    assert "1 to 99 percent" in bad.content.decode()
    taken = dev_client.post("/teams/alpha/models/iris/versions/2/deploy/", {"name": "iris"})
    assert taken.status_code == 400 and "is taken" in taken.content.decode()
    assert Release.objects.count() == 1


def test_viewers_see_no_buttons_and_outsiders_nothing(dev_client, make_member, team_a, team_b) -> None:
    # A developer cannot create a protected endpoint: only admins change production.
    refused = dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris", "protected": "on"})
    assert refused.status_code == 403
    assert Release.objects.count() == 0
    dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris"})
    viewer = Client()
    viewer.force_login(make_member(team=team_a, role=Role.VIEWER).user)
    page = viewer.get("/endpoints/iris/").content.decode()
    assert "Live: release #1" in page and "Promote v2" not in page
    assert viewer.post("/endpoints/iris/", {"operation": "promote", "version": "2"}).status_code == 403
    outsider = Client()
    outsider.force_login(make_member(team=team_b, role=Role.ADMIN).user)
    assert outsider.get("/endpoints/iris/").status_code == 404
    assert outsider.post("/endpoints/iris/", {"operation": "rollback"}).status_code == 404
    assert outsider.get("/teams/alpha/endpoints/").status_code == 404
    assert Release.objects.count() == 1


def test_settings_from_the_page_are_checked_audited_and_limited_by_role(
    dev_client, make_member, team_a, team_b
) -> None:
    from deployments.models import Endpoint
    from teams.models import AuditEvent

    dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris"})
    settings = {"public": "on", "max_batch_size": "8", "max_queue_delay_ms": "3.5"}
    saved = dev_client.post("/endpoints/iris/settings/", settings, HTTP_HX_REQUEST="true")
    assert saved.status_code == 200
    assert "Saved: public on, batch rows 8, batch wait (ms) 3.5." in saved.content.decode()
    assert 'id="call-it" hx-swap-oob="true"' in saved.content.decode()
    endpoint = Endpoint.objects.get(name="iris")
    assert (endpoint.public, endpoint.max_batch_size, endpoint.max_queue_delay_ms) == (True, 8, 3.5)
    assert AuditEvent.objects.filter(action="endpoint.update").count() == 1

    for bad, problem in (
        ({"max_batch_size": "lots"}, "lots&#x27; is not a number"),
        ({"max_queue_delay_ms": "5000"}, ""),
    ):
        refused = dev_client.post("/endpoints/iris/settings/", {**settings, **bad}, HTTP_HX_REQUEST="true")
        assert refused.status_code == 400
        assert "Invalid endpoint settings." in refused.content.decode() and problem in refused.content.decode()
    # A developer's "protected" is ignored (the checkbox is disabled for them); nothing else changed either.
    dev_client.post("/endpoints/iris/settings/", {**settings, "protected": "on"}, HTTP_HX_REQUEST="true")
    endpoint.refresh_from_db()
    assert (endpoint.protected, endpoint.max_queue_delay_ms) == (False, 3.5)
    assert AuditEvent.objects.filter(action="endpoint.update").count() == 1

    viewer = Client()
    viewer.force_login(make_member(team=team_a, role=Role.VIEWER).user)
    assert 'data-testid="endpoint-settings"' not in viewer.get("/endpoints/iris/").content.decode()
    assert viewer.post("/endpoints/iris/settings/", settings).status_code == 403
    outsider = Client()
    outsider.force_login(make_member(team=team_b, role=Role.ADMIN).user)
    assert outsider.post("/endpoints/iris/settings/", settings).status_code == 404


def test_deleting_from_the_page_asks_for_the_name(dev_client) -> None:
    from deployments.models import Endpoint

    dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris"})
    assert 'data-testid="delete-endpoint"' in dev_client.get("/endpoints/iris/").content.decode()
    wrong = dev_client.post("/endpoints/iris/delete/", {"confirm": "iris-x"})
    assert wrong.status_code == 409 and "confirm with its name" in wrong.content.decode()
    assert Endpoint.objects.filter(name="iris").exists()
    gone = dev_client.post("/endpoints/iris/delete/", {"confirm": "iris"}, follow=True)
    assert gone.redirect_chain[-1][0] == "/teams/alpha/endpoints/"
    assert "Endpoint iris is deleted" in gone.content.decode()
    assert not Endpoint.objects.filter(name="iris").exists()


def test_a_release_from_the_page_in_place_answers_204_or_the_refusal(dev_client) -> None:
    dev_client.post("/teams/alpha/models/iris/versions/1/deploy/", {"name": "iris"})
    done = dev_client.post("/endpoints/iris/", {"operation": "promote", "version": "2"}, HTTP_HX_REQUEST="true")
    assert done.status_code == 204 and done["HX-Trigger"] == "release-changed"
    assert Release.objects.filter(endpoint__name="iris").count() == 2
    bad = dev_client.post(
        "/endpoints/iris/", {"operation": "canary", "version": "3", "canary_percent": "100"}, HTTP_HX_REQUEST="true"
    )
    assert bad.status_code == 400
    assert "1 to 99 percent" in bad.content.decode() and "<h1>" not in bad.content.decode()
    assert Release.objects.filter(endpoint__name="iris").count() == 2

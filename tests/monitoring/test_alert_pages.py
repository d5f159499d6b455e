"""The endpoint page's alerts card (monitoring.pages): who sees the controls, who may use them, and refusals."""

from __future__ import annotations

import pytest
from django.test import Client

from deployments.services import endpoint_create
from monitoring.models import AlertRule
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]

RULE = {"name": "errors", "metric": "error_rate", "threshold": "0.05", "action": "notify"}


def client_of(member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


@pytest.fixture
def iris(make_member, team_a, tmp_path, monkeypatch):
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    dev = make_member(team=team_a, role=Role.DEVELOPER)
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    endpoint_create(actor=actor, model=model, name="iris", version=add_version(model, actor, tmp_path, 1))
    return dev


def test_developers_manage_rules_viewers_only_read_outsiders_see_nothing(iris, make_member, team_a, team_b) -> None:
    dev = client_of(iris)
    added = dev.post("/endpoints/iris/alerts/rules/", RULE, HTTP_HX_REQUEST="true")
    assert added.status_code == 200 and "Rule “errors” added." in added.content.decode()
    rule = AlertRule.objects.get()
    assert dev.post(f"/endpoints/iris/alerts/rules/{rule.pk}/disable/").status_code == 200
    assert AlertRule.objects.get().enabled is False
    assert dev.post(f"/endpoints/iris/alerts/rules/{rule.pk}/explode/").status_code == 404
    missing = dev.post("/endpoints/iris/alerts/rules/", {**RULE, "name": ""}, HTTP_HX_REQUEST="true")
    assert missing.status_code == 400 and "Invalid alert rule." in missing.content.decode()
    assert AlertRule.objects.count() == 1

    viewer = client_of(make_member(team=team_a, role=Role.VIEWER))
    card = viewer.get("/endpoints/iris/alerts/").content.decode()
    assert 'data-testid="alert-rules"' in card and "Add rule" not in card and 'data-action="delete"' not in card
    assert viewer.post("/endpoints/iris/alerts/rules/", {**RULE, "name": "mine"}).status_code == 403
    assert viewer.post(f"/endpoints/iris/alerts/rules/{rule.pk}/delete/").status_code == 403
    outsider = client_of(make_member(team=team_b, role=Role.ADMIN))
    assert outsider.get("/endpoints/iris/alerts/").status_code == 404
    assert outsider.post(f"/endpoints/iris/alerts/rules/{rule.pk}/delete/").status_code == 404
    assert AlertRule.objects.count() == 1

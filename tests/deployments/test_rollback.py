"""Rollback as users expect: a live canary is removed; otherwise the previous primary comes back alone. Automatic
rollbacks follow the same rule and show as "automatic (rule NAME)" in history, pages and the audit trail."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.test import Client

from deployments.models import Endpoint, Release
from deployments.services import endpoint_create, release_promote, release_rollback, release_rollback_automatic
from registry.models import ModelVersion
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.models import AuditEvent
from teams.permissions import Actor
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


@dataclass
class Setup:
    dev: Member
    actor: Actor
    endpoint: Endpoint
    v: dict[int, ModelVersion]

    def promote(self, version: int, **options: Any) -> Release:
        if "shadow_version" in options:
            options["shadow_version"] = self.v[options["shadow_version"]]
        return release_promote(actor=self.actor, endpoint=self.endpoint, version=self.v[version], **options)

    def rollback(self) -> dict[str, Any]:
        response = self.dev.token_client().post("/api/v1/endpoints/iris/rollback", {"reason": "bad"}, format="json")
        assert response.status_code == 201, response.json()
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
def setup(make_member, team_a, tmp_path: Path) -> Setup:
    """Team alpha's endpoint "iris" serving v1 of four compatible versions."""
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = {seed: add_version(model, actor, tmp_path, seed) for seed in (1, 2, 3, 4)}
    endpoint = endpoint_create(actor=actor, model=model, name="iris", version=versions[1])
    return Setup(dev, actor, endpoint, versions)


def history(endpoint: Endpoint) -> list[tuple[int, str, int, int | None, int, int | None]]:
    return [
        (
            r.number,
            r.action,
            r.primary.number,
            r.canary.number if r.canary else None,
            r.canary_percent,
            r.shadow.number if r.shadow else None,
        )
        for r in endpoint.releases.select_related("primary", "canary", "shadow").order_by("number")
    ]


def rolled_back(number: int, primary: int, shadow: int | None, body: dict[str, Any]) -> dict[str, Any]:
    """The API's answer for a rollback by "dev" that serves `primary` (and `shadow`), with no canary."""
    return {
        "number": number,
        "action": "rollback",
        "primary": primary,
        "canary": None,
        "canary_percent": 0,
        "shadow": shadow,
        "actor": "dev",
        "by": "dev",
        "rule": None,
        "reason": "bad",
        "created_at": body["created_at"],
    }


def test_rolling_back_a_canary_removes_it_and_keeps_primary_and_shadow(setup: Setup) -> None:
    setup.promote(2)
    setup.promote(3, canary_percent=20, shadow_version=4)
    body = setup.rollback()
    assert body == rolled_back(4, 2, 4, body)
    assert history(setup.endpoint) == [
        (1, "create", 1, None, 0, None),
        (2, "promote", 2, None, 0, None),
        (3, "canary", 2, 3, 20, 4),
        (4, "rollback", 2, None, 0, 4),
    ]
    assert AuditEvent.objects.get(action="endpoint.rollback").data == {
        "endpoint": "iris",
        "release": 4,
        "primary": 2,
        "canary": None,
        "canary_percent": 0,
        "shadow": 4,
        "reason": "bad",
        "by": "dev",
        "previous_release": 3,
    }


def test_rolling_back_a_promote_brings_back_the_previous_primary_alone(setup: Setup) -> None:
    # The release before the promote had a 20 % canary of another version and a shadow: neither comes back.
    setup.promote(2, canary_percent=20, shadow_version=4)
    setup.promote(3)
    body = setup.rollback()
    assert body == rolled_back(4, 1, None, body)
    assert history(setup.endpoint)[-2:] == [(3, "promote", 3, None, 0, 4), (4, "rollback", 1, None, 0, None)]


def test_a_second_rollback_undoes_the_first(setup: Setup) -> None:
    setup.promote(2)
    assert setup.rollback()["primary"] == 1
    assert setup.rollback()["primary"] == 2
    assert setup.rollback()["primary"] == 1
    assert [row[2] for row in history(setup.endpoint)] == [1, 2, 1, 2, 1]


def test_rollback_looks_past_releases_of_the_same_primary(setup: Setup) -> None:
    setup.promote(2)
    setup.promote(3, canary_percent=10)
    assert setup.rollback()["primary"] == 2  # the canary goes, v2 stays
    assert setup.rollback()["primary"] == 1  # then v2 goes: releases 2 to 4 all served v2
    assert history(setup.endpoint)[-2:] == [(4, "rollback", 2, None, 0, None), (5, "rollback", 1, None, 0, None)]


def test_with_no_earlier_primary_a_shadow_is_removed_and_then_nothing_is_left(setup: Setup) -> None:
    setup.promote(1, shadow_version=2)
    body = setup.rollback()
    assert body == rolled_back(3, 1, None, body)
    refused = setup.dev.token_client().post("/api/v1/endpoints/iris/rollback", {}, format="json")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": {
            "code": "nothing_to_roll_back",
            "message": "'iris' has nothing to roll back: release 3 serves v1 alone, with no canary or shadow, and no "
            "earlier release served another primary.",
            "detail": {},
        }
    }
    assert len(history(setup.endpoint)) == 3


def test_a_first_release_has_nothing_to_roll_back(setup: Setup) -> None:
    refused = setup.dev.token_client().post("/api/v1/endpoints/iris/rollback", {}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "nothing_to_roll_back")
    assert history(setup.endpoint) == [(1, "create", 1, None, 0, None)]
    assert not AuditEvent.objects.filter(action="endpoint.rollback").exists()


# --- automatic rollbacks: the same rule, and who did it ----------------------------------------------------------

EVIDENCE = {"rule": {"id": 7, "name": "canary errors"}, "metric": "error_rate", "release": 2}


def test_an_automatic_rollback_of_a_canary_removes_it_and_names_its_rule(setup: Setup) -> None:
    setup.promote(2, canary_percent=20, shadow_version=3)
    release = release_rollback_automatic(
        endpoint=setup.endpoint, rule="canary errors", reason="Automatic rollback: errors.", evidence=EVIDENCE
    )
    assert release is not None
    assert (release.number, release.actor, release.rule_name, release.by) == (
        3,
        None,
        "canary errors",
        "automatic (rule canary errors)",
    )
    assert history(setup.endpoint)[-1] == (3, "rollback", 1, None, 0, 3)
    api = setup.dev.token_client()
    assert api.get("/api/v1/endpoints/iris/releases").json()[0] == {
        "number": 3,
        "action": "rollback",
        "primary": 1,
        "canary": None,
        "canary_percent": 0,
        "shadow": 3,
        "actor": None,
        "by": "automatic (rule canary errors)",
        "rule": "canary errors",
        "reason": "Automatic rollback: errors.",
        "created_at": api.get("/api/v1/endpoints/iris/releases").json()[0]["created_at"],
    }
    [audit] = api.get("/api/v1/audit?team=alpha").json()["results"][:1]
    assert (audit["action"], audit["actor"], audit["details"]["by"]) == (
        "endpoint.auto_rollback",
        None,
        "automatic (rule canary errors)",
    )
    # The second automatic rollback (a promote was judged) brings back the previous primary.
    setup.promote(4)
    again = release_rollback_automatic(
        endpoint=setup.endpoint, rule="latency", reason="slow", evidence={**EVIDENCE, "release": 4}
    )
    assert again is not None and history(setup.endpoint)[-1] == (5, "rollback", 1, None, 0, None)


def test_pages_show_an_automatic_rollback_by_its_rule(setup: Setup) -> None:
    setup.promote(2, canary_percent=20)
    release_rollback_automatic(endpoint=setup.endpoint, rule="canary <errors>", reason="errors", evidence=EVIDENCE)
    client = Client()
    client.force_login(setup.dev.user)
    page = client.get("/endpoints/iris/").content.decode()
    assert "Rolled back: automatic (rule canary &lt;errors&gt;)," in page  # the header, not "Rolled back by —"
    rows = page.split('data-testid="release-history"', 1)[1]
    assert rows.count("<td>automatic (rule canary &lt;errors&gt;)</td>") == 1
    assert rows.count("<td>dev</td>") == 2
    audit = client.get("/teams/alpha/audit/").content.decode()
    assert "<td>automatic (rule canary &lt;errors&gt;)</td>" in audit


def test_the_page_says_what_a_rollback_will_do(setup: Setup) -> None:
    client = Client()
    client.force_login(setup.dev.user)
    assert 'data-action="rollback"' not in client.get("/endpoints/iris/").content.decode()
    setup.promote(1, shadow_version=2)
    page = client.get("/endpoints/iris/").content.decode()
    assert "Roll back iris from release #2: remove the shadow v2? v1 stays the primary." in page
    assert ">Roll back: remove shadow v2</button>" in page
    setup.promote(3)
    page = client.get("/endpoints/iris/").content.decode()
    assert "Roll back iris from release #3 (v3) to v1? It takes all traffic, with no canary and no shadow." in page
    assert ">Roll back to v1</button>" in page
    assert client.post("/endpoints/iris/", {"operation": "rollback"}).status_code == 302
    assert history(setup.endpoint)[-1] == (4, "rollback", 1, None, 0, None)


def test_past_automatic_rollbacks_get_their_rule_name_from_the_audit_trail(setup: Setup) -> None:
    setup.promote(2)
    setup.promote(3, canary_percent=20)
    evidence = {**EVIDENCE, "release": 3}
    release = release_rollback_automatic(endpoint=setup.endpoint, rule="", reason="errors", evidence=evidence)
    assert release is not None and release.by is None  # as a release made before the field existed
    release_rollback(actor=setup.actor, endpoint=setup.endpoint)  # by a user: left alone
    migration = importlib.import_module("deployments.migrations.0003_release_rule_name")
    migration.name_past_automatic_rollbacks(apps, None)
    names = dict(setup.endpoint.releases.values_list("number", "rule_name"))
    assert names == {1: "", 2: "", 3: "", 4: "canary errors", 5: ""}

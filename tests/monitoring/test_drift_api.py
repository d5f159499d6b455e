"""The newest drift window per version over the API, and the page section that shows it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from deployments.models import Endpoint
from monitoring.models import DriftWindow
from teams.choices import Role
from tests.conftest import Member
from tests.monitoring.test_history_api import history  # noqa: F401  (fixture: "iris" of team alpha, v1 and v2)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]


def test_newest_window_of_each_version_from_any_process(history: Member) -> None:  # noqa: F811
    endpoint = Endpoint.objects.get(name="iris")
    now = timezone.now().replace(microsecond=0)

    def window(version: int, ago: int, process: str, psi: dict[str, float], rows: int = 100) -> None:
        ended = now - timedelta(minutes=ago)
        DriftWindow.objects.create(
            endpoint=endpoint, version=version, ended_at=ended, process=process, rows=rows, psi=psi
        )

    window(1, 3, "a:1", {"x[0]": 0.5})
    window(1, 1, "b:2", {"x[0]": 0.02, "x[1]": 0.3}, rows=250)
    window(2, 2, "a:1", {"x[0]": 0.01})
    window(2, 60 * 25, "a:1", {"x[0]": 9.0})  # older than a day: not shown
    response = history.token_client().get("/api/v1/endpoints/iris/drift")
    assert response.status_code == 200
    assert response.json() == {
        "endpoint": "iris",
        "versions": [
            {
                "version": 1,
                "rows": 250,
                "psi": {"x[0]": 0.02, "x[1]": 0.3},
                "ended_at": (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "process": "b:2",
            },
            {
                "version": 2,
                "rows": 100,
                "psi": {"x[0]": 0.01},
                "ended_at": (now - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "process": "a:1",
            },
        ],
    }


def test_outsiders_get_404_and_the_page_has_the_section(history: Member, make_member, team_b) -> None:  # noqa: F811
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider")
    assert outsider.token_client().get("/api/v1/endpoints/iris/drift").status_code == 404
    client = Client()
    client.force_login(history.user)
    page = client.get("/endpoints/iris/").content.decode()
    assert 'data-testid="drift"' in page and "data-drift-rows" in page

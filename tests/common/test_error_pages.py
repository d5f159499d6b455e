"""404, 403 and 500 pages in the site's layout, with the way back, and nothing of the server shown."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.views.defaults import permission_denied

from common.error_views import server_error
from teams.choices import Role

pytestmark = pytest.mark.django_db


def test_a_missing_page_has_the_navigation_and_escapes_the_path(make_member, team_a) -> None:
    member = make_member(team=team_a, role=Role.VIEWER)
    client = Client()
    client.force_login(member.user)
    answer = client.get("/teams/alpha/models/<script>x</script>/")
    assert answer.status_code == 404
    page = answer.content.decode()
    assert 'data-testid="error-page"' in page and "<h1>Not found</h1>" in page
    assert 'class="mainnav"' in page and 'href="/teams/alpha/"' in page  # the site's navigation, the team
    assert "/teams/alpha/models/%3Cscript%3Ex%3C/script%3E/" in page and "<script>x</script>" not in page
    # Another team's page looks exactly like a page that does not exist.
    other = client.get("/teams/bravo/").content.decode()
    assert "<h1>Not found</h1>" in other


def test_a_refused_action_says_why_in_the_layout(make_member, team_a, rf) -> None:
    viewer = make_member(team=team_a, role=Role.VIEWER)
    request = rf.post("/teams/alpha/models/iris/versions/1/deploy/")
    request.user = viewer.user
    request.session = {}
    answer = permission_denied(request, PermissionDenied("Deploying needs the developer role in alpha."))
    assert answer.status_code == 403
    page = answer.content.decode()
    assert "<h1>Not allowed</h1>" in page and 'class="mainnav"' in page
    assert "Deploying needs the developer role in alpha." in page and "A team admin can change your role." in page


def test_the_server_error_page_renders_without_a_request_context(rf) -> None:
    answer = server_error(rf.get("/teams/alpha/"))
    assert answer.status_code == 500
    page = answer.content.decode()
    assert "<h1>Something went wrong</h1>" in page and 'href="/"' in page
    assert "Traceback" not in page and "/static/" not in page  # renders even when the static files are what broke

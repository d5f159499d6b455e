"""Archiving from the model and version pages: a button for developers, a message after, refusals on the page."""

from __future__ import annotations

import pytest
from django.test import Client

from deployments.services import endpoint_create
from registry.models import ModelVersion, RegisteredModel
from registry.services.archive import model_archive
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version

pytestmark = pytest.mark.django_db

PAGE = "/teams/alpha/models/iris/"


@pytest.fixture
def dev(make_member, team_a):
    return make_member(team=team_a, role=Role.DEVELOPER, username="dev")


@pytest.fixture
def model(dev, tmp_path) -> RegisteredModel:
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=dev.team, name="iris")
    for seed in (1, 2):
        add_version(model, actor, tmp_path, seed)
    return model


def browser(member) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(member.user)
    return client


def test_a_version_is_archived_from_its_page_and_shown_greyed_in_the_models_list(dev, model) -> None:
    client = browser(dev)
    page = client.get(f"{PAGE}versions/2/").content.decode()
    assert 'data-action="archive"' in page and 'data-testid="deploy"' in page

    done = client.post(f"{PAGE}versions/2/archive/", {"action": "archive"}, follow=True)
    assert done.redirect_chain == [(f"{PAGE}versions/2/", 302)]
    html = done.content.decode()
    assert "v2 is archived: hidden from lists and never newly deployed." in html
    assert 'data-testid="version-archived"' in html and 'data-action="unarchive"' in html
    assert 'data-testid="deploy"' not in html  # an archived version offers no deploy card
    assert ModelVersion.objects.get(model=model, number=2).archived_at is not None

    listing = client.get(PAGE).content.decode()
    assert listing.count('data-archived="true"') == 1
    assert '<span class="badge archived">archived</span>' in listing

    back = client.post(f"{PAGE}versions/2/archive/", {"action": "unarchive"}, follow=True)
    assert "v2 is active again." in back.content.decode()
    assert ModelVersion.objects.get(model=model, number=2).archived_at is None


def test_a_refusal_is_shown_on_the_page(dev, model) -> None:
    endpoint_create(actor=Actor(user=dev.user), model=model, name="iris-prod", version=model.versions.get(number=1))
    client = browser(dev)
    refused = client.post(f"{PAGE}versions/1/archive/", {"action": "archive"})
    assert refused.status_code == 409
    html = refused.content.decode()
    assert 'data-testid="archive-error"' in html
    assert "v1 of &#x27;iris&#x27; is live on iris-prod (v1 primary)" in html
    assert 'data-testid="signature"' in html  # the whole version page, not a bare error

    refused = client.post(f"{PAGE}archive/", {"action": "archive"})
    assert refused.status_code == 409
    assert "is still served by iris-prod (v1 primary): delete that endpoint" in refused.content.decode()
    assert RegisteredModel.objects.get(pk=model.pk).archived_at is None


def test_the_model_list_hides_archived_models_behind_a_link(dev, model) -> None:
    registered_model_create(actor=Actor(user=dev.user), team=dev.team, name="kept")
    client = browser(dev)
    assert "Show archived" not in client.get("/teams/alpha/models/").content.decode()

    done = client.post(f"{PAGE}archive/", {"action": "archive"}, follow=True)
    assert "iris is archived, with its versions" in done.content.decode()
    assert 'data-testid="model-archived"' in done.content.decode()
    assert "Upload a version" not in done.content.decode()

    listing = client.get("/teams/alpha/models/").content.decode()
    assert ">kept<" in listing and ">iris<" not in listing
    assert "Show archived (1)" in listing
    archived = client.get("/teams/alpha/models/?archived=true").content.decode()
    assert ">iris<" in archived and ">kept<" not in archived and "Show active models" in archived

    back = client.post(f"{PAGE}archive/", {"action": "unarchive"}, follow=True)
    assert "iris is active again" in back.content.decode()
    assert "Show archived" not in client.get("/teams/alpha/models/").content.decode()


def test_viewers_see_no_button_and_are_refused(dev, model, make_member, team_b) -> None:
    viewer = browser(make_member(team=dev.team, role=Role.VIEWER))
    assert 'data-action="archive"' not in viewer.get(f"{PAGE}versions/1/").content.decode()
    assert 'data-action="archive"' not in viewer.get(PAGE).content.decode()
    assert viewer.post(f"{PAGE}versions/1/archive/", {"action": "archive"}).status_code == 403
    assert viewer.post(f"{PAGE}archive/", {"action": "archive"}).status_code == 403
    outsider = browser(make_member(team=team_b, role=Role.ADMIN))
    assert outsider.post(f"{PAGE}archive/", {"action": "archive"}).status_code == 404
    assert not ModelVersion.objects.filter(archived_at__isnull=False).exists()


def test_an_archived_models_versions_cannot_be_unarchived_alone(dev, model) -> None:
    model_archive(actor=Actor(user=dev.user), model=model)
    refused = browser(dev).post(f"{PAGE}versions/1/archive/", {"action": "unarchive"})
    assert refused.status_code == 409
    assert "unarchive the model first" in refused.content.decode()

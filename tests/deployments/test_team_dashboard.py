"""The team dashboard and its live fragments: endpoint tiles with their release, running jobs, recent uploads and
recent alerts (monitoring's fragment), each with what to do next when empty, and only ever the team's own."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deployments.models import Endpoint
from deployments.services import endpoint_create, endpoint_delete, release_promote
from monitoring.models import Alert
from registry.choices import JobKind, JobStatus
from registry.models import Job, ModelVersion
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.models import Team
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]

HX = {"HX-Request": "true"}


@dataclass
class Deployed:
    """One team's model "iris" with versions 1-3 and endpoint "<team>-iris": v1, canary v2 at 10 %, shadow v3."""

    actor: Actor
    endpoint: Endpoint
    versions: list[ModelVersion]


def deploy(make_member, team: Team, tmp_path, monkeypatch) -> Deployed:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    actor = Actor(user=make_member(team=team, role=Role.ADMIN).user)
    model = registered_model_create(actor=actor, team=team, name="iris")
    versions = [add_version(model, actor, tmp_path / team.slug, seed) for seed in (1, 2, 3)]
    endpoint = endpoint_create(actor=actor, model=model, name=f"{team.slug}-iris", version=versions[0])
    release_promote(actor=actor, endpoint=endpoint, version=versions[1], canary_percent=10, shadow_version=versions[2])
    return Deployed(actor, endpoint, versions)


def client_of(make_member, team: Team, role: str) -> Client:
    client = Client()
    client.force_login(make_member(team=team, role=role).user)
    return client


def fire(endpoint: Endpoint, value: float, **fields) -> Alert:
    defaults = {"release": 2, "version": 2, "role": "canary", "metric": "error_rate", "threshold": 0.05}
    return Alert.objects.create(
        rule_name="canary errors",
        endpoint=endpoint,
        value=value,
        window_seconds=60,
        requests=120,
        **{**defaults, **fields},
    )


@pytest.fixture
def two_teams(make_member, team_a, team_b, tmp_path, monkeypatch) -> tuple[Deployed, Deployed]:
    (tmp_path / "alpha").mkdir()
    (tmp_path / "bravo").mkdir()
    return deploy(make_member, team_a, tmp_path, monkeypatch), deploy(make_member, team_b, tmp_path, monkeypatch)


def test_a_viewer_sees_each_endpoint_with_its_release_and_nothing_of_another_team(
    two_teams, make_member, team_a
) -> None:
    viewer = client_of(make_member, team_a, Role.VIEWER)
    page = viewer.get("/teams/alpha/")
    assert page.status_code == 200
    html = page.content.decode()
    tile = re.search(r'<article class="card tile" data-endpoint-tile="alpha-iris".*?</article>', html, re.S)
    assert tile is not None
    state = re.search(r'data-testid="release-state">(.*?)</p>', tile[0], re.S)
    assert state is not None
    assert " ".join(re.sub(r"<[^>]+>", " ", state[1]).split()) == "v1 → v2 canary 10 % · shadow v3 · release #2"
    assert 'href="/endpoints/alpha-iris/"' in tile[0]
    for spark in ("requests", "p95", "errors"):
        assert f'data-spark="{spark}"' in tile[0]
    assert 'data-field="errors"' in tile[0] and 'data-field="client-errors"' in tile[0]
    assert "bravo-iris" not in html
    # Every live part names the event kinds it follows, and the alerts card is loaded from monitoring.
    assert 'id="team-tiles"' in html and 'data-live="release rollout"' in html
    assert 'hx-get="/teams/alpha/alerts/"' in html
    assert 'id="team-jobs"' in html and 'id="team-uploads"' in html and 'id="recent-activity"' in html


def test_the_tiles_fragment_follows_endpoints_created_and_deleted(two_teams, make_member, team_a) -> None:
    alpha, _ = two_teams
    viewer = client_of(make_member, team_a, Role.VIEWER)
    tiles = viewer.get("/teams/alpha/?fragment=tiles", headers=HX).content.decode()
    assert tiles.lstrip().startswith('<section class="card" id="team-tiles"')
    assert "<h1>" not in tiles  # the fragment alone
    assert re.findall(r'data-endpoint-tile="([^"]+)"', tiles) == ["alpha-iris"]

    endpoint_create(actor=alpha.actor, model=alpha.endpoint.model, name="alpha-iris-2", version=alpha.versions[2])
    tiles = viewer.get("/teams/alpha/?fragment=tiles", headers=HX).content.decode()
    assert re.findall(r'data-endpoint-tile="([^"]+)"', tiles) == ["alpha-iris", "alpha-iris-2"]

    endpoint_delete(actor=alpha.actor, endpoint=alpha.endpoint, confirm="alpha-iris")
    tiles = viewer.get("/teams/alpha/?fragment=tiles", headers=HX).content.decode()
    assert re.findall(r'data-endpoint-tile="([^"]+)"', tiles) == ["alpha-iris-2"]


def test_the_tiles_take_the_same_queries_however_many_endpoints(two_teams, make_member, team_a) -> None:
    alpha, _ = two_teams
    viewer = client_of(make_member, team_a, Role.VIEWER)
    viewer.get("/teams/alpha/?fragment=tiles", headers=HX)  # the session's first save
    with CaptureQueriesContext(connection) as one:
        viewer.get("/teams/alpha/?fragment=tiles", headers=HX)
    for n in range(3):
        endpoint_create(actor=alpha.actor, model=alpha.endpoint.model, name=f"more-{n}", version=alpha.versions[0])
    with CaptureQueriesContext(connection) as four:
        body = viewer.get("/teams/alpha/?fragment=tiles", headers=HX).content.decode()
    assert body.count("data-endpoint-tile=") == 4 and "<h1>" not in body
    assert len(four.captured_queries) == len(one.captured_queries), [q["sql"] for q in four.captured_queries]


def test_running_jobs_lists_the_teams_queued_and_running_jobs_only(two_teams, make_member, team_a) -> None:
    alpha, bravo = two_teams
    Job.objects.all().delete()  # the uploads' own benchmarks
    running = Job.objects.create(
        team=team_a,
        kind=JobKind.CONVERT,
        status=JobStatus.RUNNING,
        version=alpha.versions[0],
        params={"target": "tflite", "quantization": "int8"},
        progress=40,
    )
    queued = Job.objects.create(team=team_a, kind=JobKind.BENCHMARK, version=alpha.versions[1])
    done = Job.objects.create(
        team=team_a, kind=JobKind.BENCHMARK, version=alpha.versions[2], status=JobStatus.SUCCEEDED
    )
    theirs = Job.objects.create(team=bravo.endpoint.team, kind=JobKind.BENCHMARK, version=bravo.versions[0])

    viewer = client_of(make_member, team_a, Role.VIEWER)
    jobs = viewer.get("/teams/alpha/?fragment=jobs", headers=HX).content.decode()
    assert 'id="team-jobs"' in jobs and 'data-live="job"' in jobs
    shown = re.findall(r'data-job-id="(\d+)" data-job-status="(\w+)"', jobs)
    assert shown == [(str(queued.pk), "queued"), (str(running.pk), "running")]
    assert str(done.pk) not in dict(shown) and str(theirs.pk) not in dict(shown)
    assert "Conversion to tflite int8" in jobs and "40%" in jobs
    assert 'href="/teams/alpha/models/iris/versions/1/"' in jobs


def test_recent_uploads_lists_the_teams_newest_versions_with_their_status(two_teams, make_member, team_a) -> None:
    alpha, _ = two_teams
    ModelVersion.objects.filter(pk=alpha.versions[2].pk).update(status="failed")
    viewer = client_of(make_member, team_a, Role.VIEWER)
    uploads = viewer.get("/teams/alpha/?fragment=uploads", headers=HX).content.decode()
    assert 'id="team-uploads"' in uploads and 'data-live="version job"' in uploads
    assert re.findall(r'data-version="([^"]+)"', uploads) == ["iris/3", "iris/2", "iris/1"]
    # Archived versions are out of the registry's lists, and out of this one.
    ModelVersion.objects.filter(pk=alpha.versions[0].pk).update(archived_at=timezone.now())
    uploads = viewer.get("/teams/alpha/?fragment=uploads", headers=HX).content.decode()
    assert re.findall(r'data-version="([^"]+)"', uploads) == ["iris/3", "iris/2"]
    assert 'class="badge status-failed">failed' in uploads and 'class="badge status-ready">ready' in uploads
    assert "m3.onnx" in uploads
    assert ModelVersion.objects.filter(model__team__slug="bravo").count() == 3  # theirs, and not shown:
    assert uploads.count("<li data-version=") == 2


def test_recent_alerts_show_the_teams_alerts_with_their_numbers(two_teams, make_member, team_a, team_b) -> None:
    alpha, bravo = two_teams
    older = fire(alpha.endpoint, 0.08)
    newer = fire(
        alpha.endpoint, 0.42, release=3, action_taken="rolled_back", detail="Rolled back: the canary v2 is removed"
    )
    theirs = fire(bravo.endpoint, 0.9)

    viewer = client_of(make_member, team_a, Role.VIEWER)
    card = viewer.get("/teams/alpha/alerts/")
    assert card.status_code == 200
    html = card.content.decode()
    assert 'id="team-alerts"' in html and 'data-live="alert release"' in html
    assert re.findall(r'data-alert-id="(\d+)"', html) == [str(newer.pk), str(older.pk)]
    assert str(theirs.pk) not in re.findall(r'data-alert-id="(\d+)"', html)
    assert "canary errors: error_rate 0.42 &gt; 0.05 over 60 s (120 requests)" in html
    assert "v2 (canary, release #3)" in html and "Rolled back: the canary v2 is removed" in html
    assert 'href="/endpoints/alpha-iris/"' in html and "bravo-iris" not in html

    outsider = client_of(make_member, team_b, Role.ADMIN)
    assert outsider.get("/teams/alpha/alerts/").status_code == 404
    assert outsider.get("/teams/alpha/").status_code == 404
    assert outsider.get("/teams/alpha/?fragment=jobs", headers=HX).status_code == 404


def test_an_empty_team_says_what_to_do_next(make_member, team_a) -> None:
    developer = client_of(make_member, team_a, Role.DEVELOPER)
    html = developer.get("/teams/alpha/").content.decode()
    assert "No endpoints yet. Deploy a ready version from its page" in html
    assert "<code>modeldeck deploy NAME --model alpha/MODEL --version N</code>" in html
    assert "No job is running." in html and "modeldeck convert alpha/MODEL N --target onnx" in html
    assert "No model uploaded yet." in html and "<code>modeldeck push FILE --model alpha/MODEL</code>" in html
    alerts = developer.get("/teams/alpha/alerts/").content.decode()
    assert "No alert has fired. Set alert rules (error rate, p95 latency) on an endpoint's page" in alerts

    viewer = client_of(make_member, team_a, Role.VIEWER)
    html = viewer.get("/teams/alpha/").content.decode()
    assert "A developer of alpha deploys one" in html and "A developer of alpha uploads one" in html

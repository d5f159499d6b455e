"""Registry pages: team isolation, role-aware upload form, search, and versions that cannot be changed."""

from __future__ import annotations

import hashlib

import pytest
from django.test import Client

from registry.models import ModelVersion
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(make_member, team_a, tmp_path) -> ModelVersion:
    dev = make_member(team=team_a, role=Role.DEVELOPER)
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris", description="flowers <b>bold</b>")
    path = onnx_file(tmp_path / "iris.onnx")
    upload = Upload(path, "iris.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    return model_version_create(actor=actor, model=model, upload=upload)


def logged_in(member) -> Client:
    client = Client()
    client.force_login(member.user)
    return client


PAGES = ["/teams/alpha/models/", "/teams/alpha/models/iris/", "/teams/alpha/models/iris/versions/1/"]


def test_outsiders_get_404_on_every_registry_page(make_member, team_b, version) -> None:
    outsider = logged_in(make_member(team=team_b, role=Role.ADMIN))
    for page in PAGES:
        assert outsider.get(page).status_code == 404, page
    assert outsider.post("/teams/alpha/models/", {"name": "sneaky"}).status_code == 404
    assert not version.model.team.models.filter(name="sneaky").exists()


def test_viewer_sees_pages_without_upload_or_create(make_member, team_a, version) -> None:
    viewer = logged_in(make_member(team=team_a, role=Role.VIEWER))
    for page in PAGES:
        assert viewer.get(page).status_code == 200, page
    model_page = viewer.get("/teams/alpha/models/iris/").content.decode()
    assert 'id="dropzone"' not in model_page
    assert "Create model" not in viewer.get("/teams/alpha/models/").content.decode()
    denied = viewer.post("/teams/alpha/models/", {"name": "x"})
    assert denied.status_code == 403
    assert not version.model.team.models.filter(name="x").exists()


def test_pages_show_the_version_and_escape_user_text(make_member, team_a, version) -> None:
    member = logged_in(make_member(team=team_a, role=Role.DEVELOPER))
    listing = member.get("/teams/alpha/models/?q=iri").content.decode()
    assert "iris" in listing
    assert "flowers &lt;b&gt;bold&lt;/b&gt;" in listing
    assert "No model matches" in member.get("/teams/alpha/models/?q=zzz").content.decode()
    page = member.get("/teams/alpha/models/iris/versions/1/").content.decode()
    assert version.sha256 in page
    assert "probs" in page
    assert "every 2s" not in page  # ready: nothing to poll for (the live stream still refreshes it)


def test_processing_version_page_polls(make_member, team_a, version) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(status="processing")
    member = logged_in(make_member(team=team_a, role=Role.VIEWER))
    assert 'hx-trigger="every 2s, refresh"' in member.get("/teams/alpha/models/iris/versions/1/").content.decode()
    fragment = member.get("/teams/alpha/models/iris/versions/1/", HTTP_HX_REQUEST="true").content.decode()
    assert '<div id="version-main"' in fragment and "<h1>" not in fragment
    for name, element in (("main", "version-main"), ("jobs", "jobs"), ("files", "version-files")):
        part = member.get(f"/teams/alpha/models/iris/versions/1/?fragment={name}", HTTP_HX_REQUEST="true")
        assert f'id="{element}"' in part.content.decode() and "<h1>" not in part.content.decode(), name


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_versions_cannot_be_changed_over_the_api(make_member, team_a, version, method) -> None:
    admin = make_member(team=team_a, role=Role.ADMIN).token_client()
    response = getattr(admin, method)("/api/v1/models/alpha/iris/versions/1", {"description": "x"}, format="json")
    assert response.status_code == 405
    version.refresh_from_db()
    assert version.description == ""


def test_a_zipmap_upload_points_to_its_served_form_and_admins_see_a_failed_jobs_traceback(
    make_member, team_a, tmp_path, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from registry.choices import JobKind
    from registry.formats.base import ModelFileError
    from registry.services.jobs import job_run
    from registry.tasks import JOB_HANDLERS

    queued: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", queued.append)
    developer = make_member(team=team_a, role=Role.DEVELOPER)
    admin = make_member(team=team_a, role=Role.ADMIN)
    actor = Actor(user=developer.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    x, y = load_iris(return_X_y=True)
    path = tmp_path / "logreg.onnx"
    x32 = x.astype(np.float32)
    path.write_bytes(to_onnx(LogisticRegression(max_iter=500).fit(x32, y), x32[:1]).SerializeToString())
    upload = Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    with django_capture_on_commit_callbacks(execute=True):
        parent = model_version_create(actor=actor, model=model, upload=upload)
    assert parent.metadata["serving_rewrite"] == "zipmap_to_tensor"
    (job_id,) = queued  # its served form, queued at upload; no benchmark of a file that cannot be served
    job_run(job_id, "w", JOB_HANDLERS)
    child = ModelVersion.objects.get(parent=parent)
    page = logged_in(developer).get("/teams/alpha/models/iris/versions/1/").content.decode()
    assert "ZipMap sequences of maps" in page
    assert f'Served form: <a href="/teams/alpha/models/iris/versions/{child.number}/">v{child.number}</a>' in page
    assert "Deploy v1" not in page
    assert "Run benchmark" not in page
    served = logged_in(developer).get(f"/teams/alpha/models/iris/versions/{child.number}/").content.decode()
    assert (
        "The converted version keeps its parent&#x27;s input and output names, datatypes and shapes. Edits made to "
        "the converted file: ZipMap removed: &#x27;output_probability&#x27; served as an FP32 [N, classes] tensor"
    ) in served

    def failing(job):
        try:
            raise TypeError("Expected an int, got a boolean")
        except TypeError as exc:
            raise ModelFileError("conversion_failed", "The skl2onnx converter failed: bad attribute.") from exc

    with django_capture_on_commit_callbacks(execute=True):
        from registry.services.jobs import job_create

        job = job_create(actor=actor, version=child, kind=JobKind.CONVERT, params={"target": "onnx", "x": 1})
    job_run(job.pk, "w", {JobKind.CONVERT: failing})
    url = f"/teams/alpha/models/iris/versions/{child.number}/"
    as_developer = logged_in(developer).get(url).content.decode()
    as_admin = logged_in(admin).get(url).content.decode()
    for page in (as_developer, as_admin):
        assert "The skl2onnx converter failed: bad attribute." in page
    assert 'data-testid="job-trace"' not in as_developer
    assert 'data-testid="job-trace"' in as_admin
    assert "TypeError: Expected an int, got a boolean" in as_admin


def test_empty_pages_say_what_to_do_next(make_member, team_a) -> None:
    dev = make_member(team=team_a, role=Role.DEVELOPER)
    registered_model_create(actor=Actor(user=dev.user), team=team_a, name="empty")
    models = logged_in(dev).get("/teams/alpha/models/?q=nothing-like-this")
    assert "No model matches" in models.content.decode()
    versions = logged_in(dev).get("/teams/alpha/models/empty/").content.decode()
    assert "No versions yet. Upload the model file above" in versions
    assert "modeldeck push FILE --model alpha/empty" in versions
    # A viewer cannot upload: not told to.
    viewer = logged_in(make_member(team=team_a, role=Role.VIEWER))
    assert "modeldeck push" not in viewer.get("/teams/alpha/models/empty/").content.decode()


def test_a_team_without_models_is_shown_how_to_make_one(make_member, team_a) -> None:
    page = logged_in(make_member(team=team_a, role=Role.DEVELOPER)).get("/teams/alpha/models/").content.decode()
    assert "No models yet." in page
    assert "modeldeck push iris.onnx --model alpha/iris" in page
    viewer = logged_in(make_member(team=team_a, role=Role.VIEWER)).get("/teams/alpha/models/").content.decode()
    assert "A developer of alpha creates them" in viewer

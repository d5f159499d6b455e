"""Idempotency-Key on the POSTs that create a release, a job or a version: a retry never makes a second one."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from common.idempotency import KEY_TTL, idempotency_keys_prune
from common.models import IdempotencyKey
from deployments.models import Release
from deployments.services import endpoint_create
from registry.choices import JobStatus
from registry.models import Job, ModelVersion
from registry.services.versions import registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_file

pytestmark = pytest.mark.usefixtures("artifact_dir")


@pytest.fixture
def setup(make_member, team_a, tmp_path, monkeypatch):
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    actor = Actor(user=dev.user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = [add_version(model, actor, tmp_path, seed) for seed in (1, 2, 3)]
    endpoint_create(actor=actor, model=model, name="iris", version=versions[0])
    return dev


def keyed(key: str) -> dict[str, str]:
    return {"HTTP_IDEMPOTENCY_KEY": key}


@pytest.mark.django_db
def test_a_retried_promote_or_rollback_replays_the_first_answer_and_makes_one_release(setup) -> None:
    client = setup.token_client()
    first = client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json", **keyed("promote-1"))
    assert first.status_code == 201, first.json()
    again = client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json", **keyed("promote-1"))
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert list(Release.objects.order_by("number").values_list("number", "primary__number")) == [(1, 1), (2, 2)]

    back = client.post("/api/v1/endpoints/iris/rollback", {}, format="json", **keyed("rollback-1"))
    assert back.status_code == 201 and back.json()["number"] == 3
    assert (
        client.post("/api/v1/endpoints/iris/rollback", {}, format="json", **keyed("rollback-1")).json() == back.json()
    )
    assert Release.objects.count() == 3
    # Without a key, every POST is a new request (as before).
    assert client.post("/api/v1/endpoints/iris/rollback", {}, format="json").status_code == 201
    assert Release.objects.count() == 4


@pytest.mark.django_db
def test_the_same_key_with_another_body_or_route_is_a_422_and_changes_nothing(setup) -> None:
    client = setup.token_client()
    assert client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json", **keyed("k")).status_code == 201
    other_body = client.post("/api/v1/endpoints/iris/promote", {"version": 3}, format="json", **keyed("k"))
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert other_body.json()["error"]["detail"] == {"route": "POST /api/v1/endpoints/iris/promote"}
    other_route = client.post("/api/v1/endpoints/iris/rollback", {}, format="json", **keyed("k"))
    assert other_route.status_code == 422
    assert Release.objects.count() == 2


@pytest.mark.django_db
def test_a_refused_request_keeps_no_key_and_a_corrected_retry_runs(setup) -> None:
    client = setup.token_client()
    refused = client.post("/api/v1/endpoints/iris/promote", {"version": 9}, format="json", **keyed("k"))
    assert refused.status_code == 404
    assert not IdempotencyKey.objects.exists()
    corrected = client.post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json", **keyed("k"))
    assert corrected.status_code == 201
    assert IdempotencyKey.objects.get().status == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", " ", "x" * 256, "tab\there"])
def test_a_malformed_key_is_a_400_in_the_house_shape(setup, key) -> None:
    response = setup.token_client().post("/api/v1/endpoints/iris/promote", {"version": 2}, format="json", **keyed(key))
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": "An Idempotency-Key is 1 to 255 printable characters.",
            "detail": {"Idempotency-Key": ["1 to 255 printable characters."]},
        }
    }
    assert Release.objects.count() == 1


@pytest.mark.django_db
def test_keys_belong_to_their_user_and_expire(setup, make_member, team_a) -> None:
    other = make_member(team=team_a, role=Role.DEVELOPER, username="other")
    url = "/api/v1/endpoints/iris/promote"
    assert setup.token_client().post(url, {"version": 2}, format="json", **keyed("k")).status_code == 201
    # Another user's same key is another key.
    assert other.token_client().post(url, {"version": 3}, format="json", **keyed("k")).status_code == 201
    assert Release.objects.count() == 3
    # Past its lifetime a key is forgotten: the same request runs again (here: back to v2).
    IdempotencyKey.objects.update(created_at=timezone.now() - KEY_TTL - timedelta(seconds=1))
    again = setup.token_client().post(url, {"version": 2}, format="json", **keyed("k"))
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert Release.objects.count() == 4
    assert idempotency_keys_prune() == 1  # the other user's stale key; the renewed one stays
    assert IdempotencyKey.objects.get().user == setup.user


@pytest.mark.django_db
def test_a_retried_benchmark_or_conversion_makes_one_job(setup) -> None:
    client = setup.token_client()
    url = "/api/v1/models/alpha/iris/versions/1"
    Job.objects.update(status=JobStatus.SUCCEEDED)  # each upload queued its own benchmark: done
    before = Job.objects.count()
    bench = client.post(f"{url}/benchmarks", format="json", **keyed("bench-1"))
    assert bench.status_code == 202, bench.json()
    # Even once the first job ended (a new one would be made without the key), the retry is the same job.
    Job.objects.filter(pk=bench.json()["id"]).update(status=JobStatus.SUCCEEDED)
    retried = client.post(f"{url}/benchmarks", format="json", **keyed("bench-1"))
    assert retried.status_code == 202 and retried.json() == bench.json()
    body = {"target": "onnx", "quantization": "float16"}
    convert = client.post(f"{url}/conversions", body, format="json", **keyed("convert-1"))
    assert convert.status_code == 202, convert.json()
    Job.objects.filter(pk=convert.json()["id"]).update(status=JobStatus.FAILED)
    assert client.post(f"{url}/conversions", body, format="json", **keyed("convert-1")).json() == convert.json()
    assert Job.objects.count() == before + 2


@pytest.mark.django_db
def test_a_retried_upload_makes_one_version_and_another_file_under_the_key_is_refused(setup, tmp_path) -> None:
    client = setup.token_client()
    url = "/api/v1/models/alpha/iris/versions"

    def upload(path: Path):
        file = io.BytesIO(path.read_bytes())
        file.name = "model.onnx"
        return client.post(url, {"file": file, "description": "d"}, format="multipart", **keyed("upload-1"))

    first = upload(onnx_file(tmp_path / "a.onnx", seed=7))
    assert first.status_code == 201, first.json()
    again = upload(tmp_path / "a.onnx")
    assert again.status_code == 201 and again.json() == first.json()
    assert ModelVersion.objects.count() == 4
    other = upload(onnx_file(tmp_path / "b.onnx", seed=8))
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert ModelVersion.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_one_key_make_one_release(setup) -> None:
    barrier = threading.Barrier(2)
    answers = []

    def promote() -> None:
        try:
            barrier.wait()
            response = setup.token_client().post(
                "/api/v1/endpoints/iris/promote", {"version": 2}, format="json", **keyed("race")
            )
            answers.append((response.status_code, response.json()["number"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=promote) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [(201, 2), (201, 2)]
    assert Release.objects.count() == 2

"""Job progress reaches a team member's browser socket through the real Redis channel layer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from registry.choices import JobKind
from registry.services.jobs import job_create, job_progress, job_start
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.model_files import onnx_file
from tests.teams.factories import create_membership, create_team

pytestmark = pytest.mark.django_db(transaction=True)


def _setup(tmp_path: Path) -> tuple[int, bytes]:
    membership = create_membership(team=create_team(slug="alpha"), role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="iris")
    path = onnx_file(tmp_path / "iris.onnx")
    upload = Upload(path, "iris.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    version = model_version_create(actor=actor, model=model, upload=upload)
    job = job_create(
        actor=actor, version=version, kind=JobKind.CONVERT, params={"target": "onnx", "quantization": "int8"}
    )
    client = Client()
    client.force_login(membership.user)
    return job.pk, f"sessionid={client.cookies['sessionid'].value}".encode()


def _advance(job_id: int) -> None:
    job = job_start(job_id=job_id, worker="events-test")
    assert job is not None
    job_progress(job, 40, "converting")


async def test_job_progress_is_pushed_to_the_team_socket(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    job_id, cookie = await sync_to_async(_setup)(tmp_path)
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, "/ws/teams/alpha/events/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await sync_to_async(_advance)(job_id)
    started = await communicator.receive_json_from(timeout=2)
    progressed = await communicator.receive_json_from(timeout=2)
    assert started["kind"] == "job" and started["data"]["status"] == "running"
    assert progressed["data"] == started["data"] | {"progress": 40}
    assert progressed["data"]["id"] == job_id and progressed["data"]["model"] == "iris"
    await communicator.disconnect()

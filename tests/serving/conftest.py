"""Serving fixtures: committed endpoints (the router reads them from its own thread) and an in-process client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from deployments.models import Endpoint
from deployments.services import endpoint_create
from registry.models import ModelVersion, RegisteredModel
from registry.services.versions import registered_model_create
from serving.router import router_get
from teams.choices import Role
from teams.permissions import Actor
from tests.conftest import Member
from tests.deployments.test_endpoint_apis import add_version
from tests.serving.fastpath_transport import FastPathTransport


@dataclass
class Deployed:
    """Team alpha's model "iris" with versions 1 and 2 (seeded ONNX x[N,4] -> probs[N,3]) and two endpoints."""

    dev: Member
    outsider: Member
    model: RegisteredModel
    versions: dict[int, ModelVersion]
    private: Endpoint
    public: Endpoint
    files: dict[int, Path]

    def auth(self, member: Member | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {(member or self.dev).token}"}

    def expected(self, number: int, x: np.ndarray) -> np.ndarray:
        """What onnxruntime itself answers for version `number`: the reference every protocol must match."""
        session = ort.InferenceSession(str(self.files[number]), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"x": x})[0])


@pytest.fixture
def deployed(make_member, team_a, team_b, artifact_dir, tmp_path, monkeypatch) -> Deployed:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    dev = make_member(team=team_a, role=Role.VIEWER, username="dev")
    outsider = make_member(team=team_b, role=Role.ADMIN, username="outsider")
    actor = Actor(user=make_member(team=team_a, role=Role.DEVELOPER, username="builder").user)
    model = registered_model_create(actor=actor, team=team_a, name="iris")
    versions = {seed: add_version(model, actor, tmp_path, seed) for seed in (1, 2)}
    private = endpoint_create(actor=actor, model=model, name="iris", version=versions[1])
    public = endpoint_create(actor=actor, model=model, name="iris-public", version=versions[1], public=True)
    files = {seed: tmp_path / f"m{seed}.onnx" for seed in (1, 2)}
    return Deployed(dev, outsider, model, versions, private, public, files)


@pytest.fixture(params=["asgi", "fastpath"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """The application in process, reached as ASGI and through the HTTP protocol uvicorn runs (raw bytes)."""
    from config.asgi import application

    transport: httpx.AsyncBaseTransport = (
        httpx.ASGITransport(app=application) if request.param == "asgi" else FastPathTransport(application)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    router_get().stop()
    # The router read the database from asgiref's shared thread: close that connection before teardown.
    await sync_to_async(connections.close_all, thread_sensitive=True)()

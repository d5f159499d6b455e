"""One team's model that cannot load is that model's readiness, never the server's; only its team learns why."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from asgiref.sync import sync_to_async

from deployments.services import endpoint_create, release_promote
from registry.models import ModelVersion
from serving.router import router_get
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.registry import model_files
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

UNKNOWN_OP = "com.example.tenant:Frobnicate(-1) is not a registered function/op"
# Where a message would show a server path: a slash that starts a word.
ABSOLUTE_PATH = re.compile(r"(?:^|[\s'\"(])/\w")


async def refresh() -> None:
    await sync_to_async(router_get()._refresh_closing, thread_sensitive=True)()


@pytest.fixture
def unloadable(deployed: Deployed, make_member, tmp_path: Path, artifact_dir: Path) -> ModelVersion:
    """A version already ready in the database whose file its runtime cannot load (as after a runtime upgrade)."""
    actor = Actor(user=make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="tenant").user)
    version = add_version(deployed.model, actor, tmp_path, seed=3)
    model_files.onnx_with_unknown_op(artifact_dir / version.artifact_key)
    endpoint_create(actor=actor, model=deployed.model, name="tenant", version=version)
    endpoint_create(actor=actor, model=deployed.model, name="tenant-public", version=version, public=True)
    return version


def assert_not_ready_for_its_team(response: httpx.Response, name: str, artifact_dir: Path) -> None:
    assert response.status_code == 503, response.text
    message = response.json()["error"]
    assert message.startswith(f"endpoint '{name}' is not ready: release 1 cannot be loaded: ")
    assert UNKNOWN_OP in message
    assert str(artifact_dir) not in message and not ABSOLUTE_PATH.search(message)


@pytest.mark.parametrize("name", ["tenant", "tenant-public"])
async def test_a_model_that_cannot_load_is_not_ready_but_the_server_is(
    deployed: Deployed, unloadable, client: httpx.AsyncClient, artifact_dir: Path, name: str
) -> None:
    await refresh()
    assert set(router_get().state.broken) == {"tenant", "tenant-public"}

    # The container probes ask the server: still ready, and the other endpoints serve.
    ready = await client.get("/v2/health/ready")
    assert (ready.status_code, ready.json()) == (200, {"ready": True})
    iris = await client.get("/v2/models/iris/ready", headers=deployed.auth())
    assert (iris.status_code, iris.json()) == (200, {"name": "iris", "ready": True})

    # Its own team is told why, without this server's paths.
    for path in (f"/v2/models/{name}/ready", f"/v2/models/{name}/infer"):
        method = client.get if path.endswith("ready") else client.post
        response = await method(path, headers=deployed.auth())
        assert_not_ready_for_its_team(response, name, artifact_dir)

    # Anyone else gets exactly the answer of a name that does not exist: nothing about the model, public or not.
    for headers in ({}, deployed.auth(deployed.outsider), {"Authorization": "Bearer mdk_not-a-token"}):
        response = await client.get(f"/v2/models/{name}/ready", headers=headers)
        unknown = await client.get("/v2/models/no-such-model/ready", headers=headers)
        assert response.status_code == unknown.status_code in (401, 404)
        assert response.content == unknown.content.replace(b"no-such-model", name.encode())
        assert response.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")


async def test_a_release_that_cannot_load_is_not_ready_to_its_team_while_the_previous_one_serves(
    deployed: Deployed, make_member, client: httpx.AsyncClient, tmp_path: Path, artifact_dir: Path
) -> None:
    await refresh()
    member = await sync_to_async(make_member)(team=deployed.dev.team, role=Role.DEVELOPER, username="tenant")
    actor = Actor(user=member.user)
    version = await sync_to_async(add_version)(deployed.model, actor, tmp_path, 3)
    model_files.onnx_with_unknown_op(artifact_dir / version.artifact_key)
    await sync_to_async(release_promote)(actor=actor, endpoint=deployed.public, version=version)
    await refresh()

    # Release 1 keeps the traffic; the server stays ready.
    response = await client.post("/v2/models/iris-public/infer", json=_body())
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "1"
    assert (await client.get("/v2/health/ready")).status_code == 200
    # Its team sees the release that did not load; the public sees an endpoint that serves.
    mine = await client.get("/v2/models/iris-public/ready", headers=deployed.auth())
    assert mine.status_code == 503
    message = mine.json()["error"]
    assert message.startswith("endpoint 'iris-public' is not ready: release 2 cannot be loaded: ")
    assert message.endswith("; release 1 still serves") and UNKNOWN_OP in message
    assert str(artifact_dir) not in message and not ABSOLUTE_PATH.search(message)
    for headers in ({}, deployed.auth(deployed.outsider)):
        theirs = await client.get("/v2/models/iris-public/ready", headers=headers)
        assert (theirs.status_code, theirs.json()) == (200, {"name": "iris-public", "ready": True})
    # The version that still serves is ready by its number.
    v1 = await client.get("/v2/models/iris-public/versions/1/ready", headers=deployed.auth())
    assert (v1.status_code, v1.json()) == (200, {"name": "iris-public", "ready": True})


def _body() -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.5, 1.0, -1.0, 2.0]}]}

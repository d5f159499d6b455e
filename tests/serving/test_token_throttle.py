"""The data plane throttles failed tokens per client address: 429 with Retry-After past the limit, on ASGI and the fast
path, in each protocol's error shape; a valid token is answered as before, without a cache round trip."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from unittest import mock

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache

from serving.auth import client_address
from teams.auth_throttle import token_subjects
from teams.models import AuditEvent
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)

ROW = [5.1, 3.5, 1.4, 0.2]
UNKNOWN_TOKEN = "mdk_00000000" + "A" * 43


@pytest.fixture
def address(settings) -> Iterator[str]:
    """A client address of this test alone, reached through a proxy the settings trust (the peer, 127.0.0.1)."""
    settings.MODELDECK_TOKEN_FAILURES_PER_ADDRESS = 3
    settings.MODELDECK_AUTH_LOCKOUT_SECONDS = 45
    value = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    yield value
    for subject in token_subjects(address=value):
        cache.delete_many([f"{subject.key}:failures", f"{subject.key}:lock", f"{subject.key}:lock:refusal-audited"])


def _headers(address: str, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Forwarded-For": f"10.9.8.7, {address}"}


async def test_bad_tokens_from_one_address_get_429_in_each_protocols_shape(
    client: httpx.AsyncClient, deployed: Deployed, address: str
) -> None:
    infer = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
    statuses = [
        (await client.post("/v2/models/iris/infer", json=infer, headers=_headers(address, UNKNOWN_TOKEN))).status_code
        for _ in range(2)
    ]
    assert statuses == [401, 401]
    message = "too many invalid tokens from this address; try again in 45 seconds"
    third = await client.post("/v2/models/iris/infer", json=infer, headers=_headers(address, "garbage"))
    assert (third.status_code, third.headers["retry-after"]) == (429, "45")
    assert third.json() == {"error": message}
    # Once this process knows of the lock, it refuses the address without asking the cache again; and the valid token
    # from the same address is answered, and never asks the cache either.
    with mock.patch("teams.auth_throttle.cache", new=mock.NonCallableMock(spec=[])):
        bad = _headers(address, "x")
        tfserving = await client.post("/v1/models/iris:predict", json={"instances": [ROW]}, headers=bad)
        mlflow = await client.post("/mlflow/iris/invocations", json={"inputs": [ROW]}, headers=bad)
        ok = await client.post("/v2/models/iris/infer", json=infer, headers=_headers(address, deployed.dev.token))
    assert tfserving.status_code == 429
    assert tfserving.json()["error"].startswith("too many invalid tokens from this address; try again in ")
    assert 1 <= int(tfserving.headers["retry-after"]) <= 45
    assert mlflow.status_code == 429
    assert json.loads(mlflow.content)["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert ok.status_code == 200
    actions = await sync_to_async(
        lambda: list(AuditEvent.objects.filter(team=None).order_by("id").values_list("action", "data"))
    )()
    assert actions == [
        ("auth.lockout", {"scope": "token.address", "retry_after": 45, "failures": 3, "address": address}),
    ]


def test_the_client_address_is_the_peers_unless_a_trusted_proxy_forwards_it(settings) -> None:
    settings.FORWARDED_ALLOW_IPS = ["127.0.0.1", "10.0.0.0/8"]
    assert client_address("203.0.113.5", "198.51.100.1") == "203.0.113.5"  # an untrusted peer cannot name another
    assert client_address("127.0.0.1", None) == "127.0.0.1"
    assert client_address("127.0.0.1", "198.51.100.1") == "198.51.100.1"
    # The nearest hop no trusted proxy added: an address the client itself wrote further left is not believed.
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.1.2.3") == "198.51.100.1"
    settings.FORWARDED_ALLOW_IPS = ["*"]
    assert client_address("203.0.113.5", "198.51.100.1") == "198.51.100.1"

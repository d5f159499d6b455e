"""A real uvicorn server on a real socket: tritonclient against it, and versions swapped under concurrent load."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest

from deployments.services import release_promote, release_rollback
from teams.choices import Role
from teams.permissions import Actor
from tests.asgi_server import asgi_server
from tests.serving.conftest import Deployed

pytestmark = [pytest.mark.heavy, pytest.mark.django_db(transaction=True)]

X = (np.arange(12, dtype=np.float32).reshape(3, 4) - 5) / 4


@pytest.fixture
def live_url(deployed: Deployed) -> Iterator[str]:
    with asgi_server() as url:
        yield url


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_gets_what_onnxruntime_gets(deployed: Deployed, live_url: str, binary: bool) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=live_url.removeprefix("http://"))
    # A fresh dict per call: tritonclient writes Inference-Header-Content-Length into the headers it is given.
    token = {"Authorization": f"Bearer {deployed.dev.token}"}
    headers = dict(token)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris", headers=headers)
    metadata = client.get_model_metadata("iris", headers=headers)
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]

    infer_input = triton.InferInput("x", list(X.shape), "FP32")
    infer_input.set_data_from_numpy(X, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probs", binary_data=binary)]
    result = client.infer("iris", [infer_input], outputs=outputs, headers=dict(token), request_id="req-7")
    np.testing.assert_allclose(result.as_numpy("probs"), deployed.expected(1, X), rtol=1e-6)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("iris", "1", "req-7")

    # Defaults all the way: binary input, outputs not named (the server returns all, as binary).
    infer_input = triton.InferInput("x", list(X.shape), "FP32")
    infer_input.set_data_from_numpy(X)
    result = client.infer("iris", [infer_input], model_version="1", headers=dict(token))
    np.testing.assert_allclose(result.as_numpy("probs"), deployed.expected(1, X), rtol=1e-6)

    # An error comes back as tritonclient's exception with the server's message.
    from tritonclient.utils import InferenceServerException

    wrong = triton.InferInput("x", [3, 5], "FP32")
    wrong.set_data_from_numpy(np.zeros((3, 5), dtype=np.float32), binary_data=binary)
    with pytest.raises(InferenceServerException, match=r"input 'x' has shape \[3, 5\]"):
        client.infer("iris", [wrong], headers=dict(token))
    client.close()


def test_plain_tf_serving_json_client_gets_what_onnxruntime_gets(deployed: Deployed, live_url: str) -> None:
    response = httpx.post(
        f"{live_url}/v1/models/iris:predict",
        content=json.dumps({"instances": X.tolist()}),
        headers={"Authorization": f"Bearer {deployed.dev.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(np.array(response.json()["predictions"]), deployed.expected(1, X), rtol=1e-6)


@dataclass
class Answer:
    started: float
    finished: float
    status: int
    version: int | None


def test_twenty_promote_rollback_cycles_under_load_lose_no_request(
    deployed: Deployed, live_url: str, make_member
) -> None:
    """Clients hammer the endpoint while a release swaps v1 <-> v2 forty times: every answer is a 200 from a
    version that was live at that moment, and its numbers are that version's."""
    builder = make_member(team=deployed.dev.team, role=Role.DEVELOPER, username="releaser")
    actor = Actor(user=builder.user)
    expected = {n: deployed.expected(n, X) for n in (1, 2)}
    body = json.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})
    headers = {"Authorization": f"Bearer {deployed.dev.token}", "Content-Type": "application/json"}
    stop = threading.Event()
    # (time the release committed, primary version from then on)
    timeline: list[tuple[float, int]] = [(0.0, 1)]

    def client_loop() -> list[Answer]:
        answers = []
        with httpx.Client(base_url=live_url, headers=headers, timeout=30) as http:
            while not stop.is_set():
                started = time.monotonic()
                response = http.post("/v2/models/iris/infer", content=body)
                version = None
                if response.status_code == 200:
                    payload = response.json()
                    version = int(payload["model_version"])
                    values = np.array(payload["outputs"][0]["data"], dtype=np.float32).reshape(3, 3)
                    np.testing.assert_allclose(values, expected[version], rtol=1e-6)
                answers.append(Answer(started, time.monotonic(), response.status_code, version))
        return answers

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(client_loop) for _ in range(6)]
        time.sleep(0.3)
        for _ in range(20):
            release_promote(actor=actor, endpoint=deployed.private, version=deployed.versions[2], reason="swap")
            timeline.append((time.monotonic(), 2))
            time.sleep(0.15)
            release_rollback(actor=actor, endpoint=deployed.private, reason="swap back")
            timeline.append((time.monotonic(), 1))
            time.sleep(0.15)
        time.sleep(0.3)
        stop.set()
        answers = [answer for future in futures for answer in future.result()]

    assert len(answers) > 200
    assert [a for a in answers if a.status != 200] == []
    # A process learns of a release within its poll interval (0.2 s here), so a request may still be answered
    # by the release before the newest one for that long: allow one second, as promised.
    lag = 1.0

    def live_between(start: float, end: float) -> set[int]:
        live = {version for at, version in timeline if start - lag <= at <= end}
        live.add(next(version for at, version in reversed(timeline) if at <= start - lag))
        return live

    stray = [a for a in answers if a.version not in live_between(a.started, a.finished)]
    assert stray == []
    served = {a.version for a in answers}
    assert served == {1, 2}


def test_an_answered_request_reaches_a_watching_socket_within_two_seconds(deployed: Deployed, live_url: str) -> None:
    """Through the whole chain on a real server: data plane -> recorder -> flusher -> Redis layer -> websocket."""
    import asyncio

    from django.test import Client
    from websockets.asyncio.client import connect

    from monitoring.recorder import recorder

    recorder.swap()  # what earlier tests in this process recorded is not this test's traffic
    browser = Client()
    browser.force_login(deployed.dev.user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"
    body = json.dumps({"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})

    async def watch() -> dict[str, Any]:
        socket_url = live_url.replace("http://", "ws://") + "/ws/endpoints/iris/"
        async with connect(socket_url, additional_headers={"Cookie": cookie, "Origin": live_url}) as socket:
            async with httpx.AsyncClient(base_url=live_url, headers=deployed.auth()) as http:
                answered = await http.post("/v2/models/iris/infer", content=body)
                assert answered.status_code == 200
            return json.loads(await asyncio.wait_for(socket.recv(), timeout=2))

    message = asyncio.run(watch())
    assert message["endpoint"] == "iris"
    [version] = message["versions"]
    assert (version["version"], version["role"], version["count"], version["rows"]) == (1, "primary", 1, 3)
    assert version["codes"] == {"200": 1}

"""`manage.py servegrpc` as it runs in a container: gRPC inference, and its own calls counted on its /metrics port
(its Prometheus folder is its own there, so no web process's /metrics would show them)."""

from __future__ import annotations

import asyncio
import socket

import httpx
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from asgiref.sync import sync_to_async
from django.db import connections

from monitoring.drift import drift_monitor
from monitoring.recorder import recorder
from serving.management.commands import servegrpc
from tests.serving.conftest import Deployed

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _grpc_200s(client: httpx.AsyncClient, url: str) -> float:
    """iris's answered gRPC calls as the port's scrape counts them (0 before the first)."""
    answer = await client.get(url, headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200, answer.text
    for line in answer.text.splitlines():
        wanted = ('endpoint="iris"', 'protocol="grpc"', 'code="200"', 'version="1"')
        if line.startswith("modeldeck_inference_requests_total{") and all(label in line for label in wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_servegrpc_counts_its_calls_on_its_metrics_port(deployed: Deployed, settings, monkeypatch) -> None:
    settings.MODELDECK_METRICS_TOKEN = "s3cret"
    # serve() sets these process-wide, as a gRPC process does at start: put them back for the tests after this one.
    monkeypatch.setattr(recorder, "enabled", recorder.enabled)
    monkeypatch.setattr(drift_monitor, "sample_rate", drift_monitor.sample_rate)
    recorder.swap_by_protocol()  # what earlier tests recorded is not this test's to flush
    target, metrics_port = f"127.0.0.1:{_free_port()}", _free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    said: list[str] = []
    stop = asyncio.Event()
    serving = asyncio.create_task(servegrpc.serve(target, said.append, ("127.0.0.1", metrics_port), stop=stop))
    client = grpcclient.InferenceServerClient(target)
    try:
        for _ in range(300):
            if said and await client.is_server_ready():
                break
            await asyncio.sleep(0.05)
        assert said[-1] == f"Prometheus metrics on {url}"
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 401  # the web's token rule
            before = await _grpc_200s(http, url)
            token = {"authorization": f"Bearer {deployed.dev.token}"}
            x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
            for _ in range(3):
                tensor = grpcclient.InferInput("x", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x)
                result = await client.infer("iris", [tensor], headers=token, model_version="1")
                np.testing.assert_allclose(result.as_numpy("probs"), deployed.expected(1, x), rtol=1e-6)
            # The flusher hands the recorder's window to Prometheus once a second.
            for _ in range(100):
                if await _grpc_200s(http, url) == before + 3:
                    break
                await asyncio.sleep(0.1)
            assert await _grpc_200s(http, url) == before + 3
    finally:
        await client.close()
        stop.set()
        await asyncio.wait_for(serving, 30)
        await sync_to_async(connections.close_all, thread_sensitive=True)()
    assert said[-1] == "gRPC server stopped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


def test_no_metrics_port_unless_asked(settings) -> None:
    assert settings.MODELDECK_GRPC_METRICS_PORT == 0  # make run's web /metrics covers its gRPC process already
    parser = servegrpc.Command().create_parser("manage.py", "servegrpc")
    assert parser.parse_args([]).metrics_port == 0
    assert parser.parse_args(["--metrics-port", "8002"]).metrics_port == 8002

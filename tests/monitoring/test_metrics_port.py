"""The /metrics port of a process with no HTTP of its own (monitoring.metrics_port): the folder's metrics under the
web's token rule, and a clear 4xx for anything that is not a scrape. Spoken to over a real socket."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.metrics_port import HEADER_LIMIT, metrics_port_start
from monitoring.prometheus import jobs_count


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await metrics_port_start("127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def raw(port: int, data: bytes) -> bytes:
    """Send bytes as they are and read the answer to the end (the port closes every connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


async def test_a_scrape_gets_this_folders_metrics(port: int, settings) -> None:
    settings.MODELDECK_METRICS_TOKEN = ""
    kind = f"port-{uuid.uuid4().hex[:8]}"
    jobs_count(kind=kind, status="succeeded")
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_LATEST  # what the web's /metrics sends
    assert answer.headers["connection"] == "close"
    assert f'modeldeck_jobs_total{{kind="{kind}",status="succeeded"}} 1.0' in answer.text


async def test_the_scrape_token_rule_is_the_webs(port: int, settings) -> None:
    settings.MODELDECK_METRICS_TOKEN = "s3cret"
    kind = f"port-{uuid.uuid4().hex[:8]}"
    jobs_count(kind=kind, status="failed")
    url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as client:
        missing = await client.get(url)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert "scrape token" in missing.text
        assert (await client.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get(url, headers={"Authorization": "s3cret"})).status_code == 401
        right = await client.get(url, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        assert f'modeldeck_jobs_total{{kind="{kind}",status="failed"}} 1.0' in right.text
        head = await client.head(url, headers={"Authorization": "Bearer s3cret"})
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) >= len(right.content) > 0

    settings.MODELDECK_METRICS_TOKEN = ""
    settings.MODELDECK_METRICS_REQUIRE_TOKEN = True  # the production settings
    async with httpx.AsyncClient() as client:
        closed = await client.get(url)
    assert closed.status_code == 403
    assert "MODELDECK_METRICS_TOKEN" in closed.text


async def test_anything_but_a_scrape_is_refused(port: int, settings) -> None:
    settings.MODELDECK_METRICS_TOKEN = ""
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 404
        assert (await client.get(f"http://127.0.0.1:{port}/metrics/../admin")).status_code == 404
        posted = await client.post(f"http://127.0.0.1:{port}/metrics", content=b"x")
        assert posted.status_code == 405
        assert posted.headers["allow"] == "GET, HEAD"
    assert (await raw(port, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    assert (await raw(port, b"GET /metrics SPDY/3\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    huge = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"a" * HEADER_LIMIT + b"\r\n\r\n"
    assert (await raw(port, huge)).startswith(b"HTTP/1.1 431 ")
    # A client that connects and goes away costs nothing, and the port goes on answering.
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200


async def test_a_silent_client_is_answered_408(port: int, monkeypatch) -> None:
    monkeypatch.setattr("monitoring.metrics_port.HEADER_TIMEOUT_SECONDS", 0.2)
    assert (await raw(port, b"GET /metrics HTTP/1.1\r\n")).startswith(b"HTTP/1.1 408 ")

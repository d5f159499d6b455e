"""The ASGI front door answers 413 from Content-Length alone, before reading the body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from registry.uploads import UploadLimitMiddleware


class RecordingApp:
    """Stands in for Django: records whether it was called and how much body it read."""

    def __init__(self) -> None:
        self.called = False
        self.body = b""
        self.disconnected = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                return
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def small_limit(settings: Any) -> int:
    settings.MODELDECK_MAX_UPLOAD_BYTES = 1000
    return 1000 + UploadLimitMiddleware.ENVELOPE_BYTES


async def test_declared_length_over_the_limit_is_refused_unread(small_limit: int) -> None:
    inner = RecordingApp()
    transport = httpx.ASGITransport(app=UploadLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/api/v1/models/a/b/versions", content=b"x" * (small_limit + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["detail"]["content_length"] == small_limit + 1
    assert inner.called is False


async def test_streamed_body_without_length_is_cut_at_the_limit(small_limit: int) -> None:
    inner = RecordingApp()

    async def chunks():
        for _ in range(small_limit // 4096 + 5):
            yield b"y" * 4096

    transport = httpx.ASGITransport(app=UploadLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/upload", content=chunks())
    assert response.status_code == 413
    assert inner.disconnected is True
    assert len(inner.body) <= small_limit


async def test_small_bodies_and_gets_pass_through(small_limit: int) -> None:
    inner = RecordingApp()
    transport = httpx.ASGITransport(app=UploadLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.post("/x", content=b"z" * 10)).status_code == 200
        assert (await client.get("/x")).status_code == 200
    assert inner.body == b"z" * 10

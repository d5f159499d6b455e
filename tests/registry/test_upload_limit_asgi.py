"""The ASGI gate in front of Django decides on the headers: a small body anywhere, a large one only as an upload
from a developer, each refused before it is read (the data plane's own tests cover the anonymous cases)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from registry.uploads import BodyLimitMiddleware
from teams.choices import Role
from tests.teams.factories import create_team


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


UPLOAD = "/api/v1/models/alpha/iris/versions"


@pytest.fixture
def small_limit(settings: Any) -> int:
    settings.MODELDECK_MAX_UPLOAD_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 500  # what every other route may send
    return 1000 + BodyLimitMiddleware.ENVELOPE_BYTES


@pytest.mark.django_db(transaction=True)
async def test_a_developers_declared_upload_over_the_limit_is_refused_unread(
    small_limit: int, make_member: Any
) -> None:
    developer = await sync_to_async(make_member)(team=await sync_to_async(create_team)(slug="alpha"))
    inner = RecordingApp()
    transport = httpx.ASGITransport(app=BodyLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post(
            UPLOAD, content=b"x" * (small_limit + 1), headers={"authorization": f"Bearer {developer.token}"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["detail"]["content_length"] == small_limit + 1
    assert inner.called is False


async def test_any_other_route_takes_only_a_small_body(small_limit: int) -> None:
    inner = RecordingApp()
    transport = httpx.ASGITransport(app=BodyLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/accounts/login/", content=b"x" * 501)
    assert response.status_code == 413
    assert response.json()["error"] == {
        "code": "too_large",
        "message": "The request body is 501 bytes; the limit for a request body on this route is 500 bytes.",
        "detail": {"limit": 500, "content_length": 501},
    }
    assert response.headers["connection"] == "close"
    assert inner.called is False


async def test_streamed_body_without_length_is_cut_at_the_limit(small_limit: int) -> None:
    inner = RecordingApp()

    async def chunks():
        for _ in range(small_limit // 4096 + 5):
            yield b"y" * 4096

    transport = httpx.ASGITransport(app=BodyLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/upload", content=chunks())
    assert response.status_code == 413
    assert inner.disconnected is True
    assert len(inner.body) <= 4096  # cut at the first chunk past the small limit


async def test_small_bodies_and_gets_pass_through(small_limit: int) -> None:
    inner = RecordingApp()
    transport = httpx.ASGITransport(app=BodyLimitMiddleware(inner))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.post("/x", content=b"z" * 10)).status_code == 200
        assert (await client.get("/x")).status_code == 200
    assert inner.body == b"z" * 10


@pytest.mark.django_db(transaction=True)
async def test_a_large_upload_needs_a_developers_session_or_token_of_that_team(
    small_limit: int, make_member: Any
) -> None:
    team = await sync_to_async(create_team)(slug="alpha")
    developer = await sync_to_async(make_member)(team=team, role=Role.DEVELOPER)
    viewer = await sync_to_async(make_member)(team=team, role=Role.VIEWER)

    def session_cookie(member: Any) -> str:
        client = Client()
        client.force_login(member.user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    inner = RecordingApp()
    transport = httpx.ASGITransport(app=BodyLimitMiddleware(inner))  # type: ignore[arg-type]
    body = b"x" * 600  # over the small limit, under the upload limit
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        cases = [
            ({}, 401),
            ({"authorization": "Bearer mdk_not-a-token"}, 401),
            ({"cookie": f"{settings.SESSION_COOKIE_NAME}=not-a-session"}, 401),
            ({"cookie": await sync_to_async(session_cookie)(viewer)}, 403),
            ({"authorization": f"Bearer {viewer.token}"}, 403),
        ]
        for headers, status in cases:
            response = await client.post(UPLOAD, content=body, headers=headers)
            assert (headers, response.status_code) == (headers, status)
        assert inner.called is False
        passed = await client.post(
            UPLOAD, content=body, headers={"cookie": await sync_to_async(session_cookie)(developer)}
        )
    assert passed.status_code == 200
    assert inner.body == body

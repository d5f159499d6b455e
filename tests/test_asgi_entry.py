"""config/asgi.py: uvicorn runs with --no-proxy-headers, so the entry point applies X-Forwarded-* itself, but only to
what Django and Channels serve (the inference paths never read the client address or scheme)."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest

from config.asgi import application

FORWARDED = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https"), (b"host", b"testserver")]


async def _call(scope: dict[str, Any]) -> None:
    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    await application(scope, receive, send)


def _scope(path: str, client: str) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": list(FORWARDED),
        "client": (client, 50000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
    }


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand in for Django/Channels behind the proxy-headers layer; record the scopes that reach them."""
    scopes: list[dict[str, Any]] = []

    async def django(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(dict(scope))

    monkeypatch.setattr(application.app, "app", django)
    return scopes


async def test_a_trusted_proxy_sets_client_and_scheme_for_django(seen: list[dict[str, Any]]) -> None:
    await _call(_scope("/api/v1/models", "127.0.0.1"))
    assert [(s["client"][0], s["scheme"]) for s in seen] == [("203.0.113.7", "https")]


async def test_an_untrusted_client_cannot_claim_another_address(seen: list[dict[str, Any]]) -> None:
    await _call(_scope("/api/v1/models", "198.51.100.9"))
    assert [(s["client"][0], s["scheme"]) for s in seen] == [("198.51.100.9", "http")]


async def test_inference_paths_do_not_go_through_it(seen: list[dict[str, Any]]) -> None:
    await _call(_scope("/v2/health/live", "127.0.0.1"))
    assert seen == []

"""One version source: the package metadata (pyproject's `version`) is what the CLI, the SDK and the server say."""

from __future__ import annotations

import importlib.metadata
import subprocess

import httpx

import modeldeck
from modeldeck import Client
from tests.cli.conftest import MODELDECK

VERSION = importlib.metadata.version("modeldeck")


def test_the_cli_says_the_package_version() -> None:
    done = subprocess.run([str(MODELDECK), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"modeldeck {VERSION}\n")
    assert modeldeck.__version__ == VERSION


def test_the_sdk_sends_the_package_version() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["user-agent"])
        return httpx.Response(200, json={"username": "dev", "teams": []})

    with Client("http://modeldeck.test", "mdk_token", transport=httpx.MockTransport(answer)) as client:
        client.me()
    assert seen == [f"modeldeck-cli/{VERSION}"]


async def test_the_server_metadata_says_the_package_version() -> None:
    from config.asgi import application

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://testserver") as http:
        response = await http.get("/v2")
    assert response.status_code == 200
    assert response.json() == {"name": "modeldeck", "version": VERSION, "extensions": ["binary_tensor_data"]}

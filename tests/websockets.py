"""Connecting to the site's websockets in tests, as a browser with a session would."""

from __future__ import annotations

from typing import Any

from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application


def session_cookie(user: Any) -> bytes:
    """The Cookie header of a logged-in browser session of `user`."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def ws_connect(path: str, cookie: bytes | None) -> tuple[WebsocketCommunicator, bool, int | None]:
    """Open `path` from the site's own origin; return the communicator, whether it was accepted, and the close code."""
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    if not connected:
        # A refused consumer still runs (and waits on the channel layer) until the socket is gone: end it inside this
        # test's event loop rather than leave it to the loop's teardown.
        await communicator.disconnect()
    return communicator, connected, code

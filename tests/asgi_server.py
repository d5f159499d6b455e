"""The whole ASGI application (data plane, pages, API, websockets) under a real uvicorn, in a thread of the test.

Django's live_server speaks no websockets and skips the data plane's front door; this serves `config.asgi` as
`make run` does (uvloop, the data plane's HTTP protocol, lifespan on: the router and the monitoring flusher run as
in production).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from serving.fastpath import DataPlaneProtocol
from serving.router import router_get


@contextmanager
def asgi_server(ready_path: str = "/v2/health/ready") -> Iterator[str]:
    """Serve the application on a free port until the block ends; yields its base URL once `ready_path` is 200."""
    from config.asgi import application

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host="127.0.0.1",
            port=port,
            lifespan="on",
            log_level="warning",
            loop="uvloop",
            http=DataPlaneProtocol,
            proxy_headers=False,
            # A page left open keeps its websocket, and uvicorn would wait for it forever: the server thread (with
            # its flusher and the cluster evaluator) then outlived the test and queried the database in later ones.
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}{ready_path}", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the server never became ready")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        router_get().stop()
        assert not thread.is_alive(), "the test server did not stop within 10 s"

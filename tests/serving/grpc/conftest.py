"""A real gRPC server (serving.grpc.server) on a free port, on its own thread and event loop, over the `deployed`
endpoints: tritonclient's sync client blocks the calling thread, so the server cannot share the test's loop."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

import grpc
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from serving.grpc.server import grpc_server_build, grpc_server_stop
from serving.router import router_get
from tests.serving.conftest import Deployed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def grpc_target(deployed: Deployed) -> Iterator[str]:
    """Serve gRPC until the test ends; yields "127.0.0.1:port" once the router has read the releases."""
    with grpc_serving() as target:
        yield target


@contextmanager
def grpc_serving(ready: bool = True) -> Iterator[str]:
    """Serve gRPC (built with the settings as they are now) until the block ends; yields its target once the router
    has read the releases (`ready`), or at once with no router started."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-test-server", daemon=True)
    thread.start()
    target = f"127.0.0.1:{_free_port()}"

    async def start() -> grpc.aio.Server:
        server = await grpc_server_build(target)
        await server.start()
        if ready:
            router_get().start()
        while ready and not router_get().ready:
            await asyncio.sleep(0.02)
        return server

    started: Future[grpc.aio.Server] = asyncio.run_coroutine_threadsafe(start(), loop)
    server = started.result(timeout=30)
    try:
        yield target
    finally:

        async def stop() -> None:
            await grpc_server_stop(server, None)
            router_get().stop()
            # The server's calls reached the database from asgiref's thread: close that connection before teardown.
            await sync_to_async(connections.close_all, thread_sensitive=True)()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

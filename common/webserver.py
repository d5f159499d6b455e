"""The web process's command line, in one place: `make run` (manage.py runstack) starts it and bench/serving.py
measures it, so the configuration users get is the one that is benchmarked (docker/web.sh mirrors it, and
tests/docker/test_start_scripts.py holds the two to the same flags)."""

from __future__ import annotations

import sys


def web_command(*, host: str, port: int, workers: int, access_log: bool, python: str = sys.executable) -> list[str]:
    """The uvicorn command line of the web process (browser, REST API, websockets and inference)."""
    return [
        python,
        "-m",
        "uvicorn",
        "config.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        # Lifespan: the data plane loads every live endpoint before the first request.
        "--lifespan",
        "on",
        # uvloop sets TCP_NODELAY on every accepted socket; asyncio's loop does not when uvicorn binds the socket
        # itself (--workers N), and each response then waits ~40 ms on the client's delayed ACK.
        "--loop",
        "uvloop",
        "--http",
        "serving.fastpath:DataPlaneProtocol",
        # Applied in config/asgi.py to everything but the inference paths, which do not need it.
        "--no-proxy-headers",
        "--workers",
        str(workers),
        "--log-level",
        "info",
        # One line per request, written by the one Python thread that also serves: at inference rates it costs a
        # large share of the server's time (bench/serving.py measures it), and monitoring counts every inference
        # anyway. MODELDECK_ACCESS_LOG turns it on.
        "--access-log" if access_log else "--no-access-log",
    ]

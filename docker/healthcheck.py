"""The image's HEALTHCHECK: a web container is healthy when /v2/health/ready says so, a gRPC one when its
grpc.health.v1 service says SERVING, a Celery one while it runs.

One image runs web, grpc, worker and beat, and only the web server answers HTTP, so the check looks at what the
container runs (its processes' command lines, whichever process is PID 1: the start script, `docker run --init`'s or
tini). No Django: it runs every interval and must stay cheap (the gRPC check imports grpcio, and only in a gRPC
container).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

READY_PATH = "/v2/health/ready"


def command_lines(proc: Path = Path("/proc")) -> list[list[str]]:
    """Return the argv of every process this container can see."""
    commands = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        if raw:
            commands.append(raw.rstrip(b"\0").decode(errors="replace").split("\0"))
    return commands


def process_kind(commands: list[list[str]]) -> str | None:
    """Say what this container runs: "web" (uvicorn), "grpc" (servegrpc), "celery" (worker or beat), or None (still
    starting)."""
    programs = {Path(word).name for argv in commands for word in argv[:4]}
    if "uvicorn" in programs:
        return "web"
    if "servegrpc" in programs:
        return "grpc"
    if "celery" in programs:
        return "celery"
    return None


def web_ready(port: str, timeout: float = 4.0) -> bool:
    url = f"http://127.0.0.1:{port}{READY_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def grpc_ready(port: str, timeout: float = 4.0) -> bool:
    """Whether the gRPC server's standard health service says SERVING (it does once the releases were read)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.RpcError:
        return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def main() -> int:
    kind = process_kind(command_lines())
    if kind == "web":
        return 0 if web_ready(os.environ.get("PORT", "8000")) else 1
    if kind == "grpc":
        return 0 if grpc_ready(os.environ.get("MODELDECK_GRPC_PORT", "8001")) else 1
    # A Celery process that dies ends the container, so one that is there is alive; anything else (the web
    # container still migrating) is not healthy yet.
    return 0 if kind == "celery" else 1


if __name__ == "__main__":
    sys.exit(main())

"""docker/healthcheck.py: the image's HEALTHCHECK, for the web server, the gRPC server and Celery containers alike."""

from __future__ import annotations

import http.server
import importlib.util
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from serving.views import ROUTES

ROOT = Path(__file__).resolve().parents[2]


def load_healthcheck() -> ModuleType:
    # docker/ is not a package (it would shadow the Docker SDK), so the script is loaded from its path.
    spec = importlib.util.spec_from_file_location("modeldeck_docker_healthcheck", ROOT / "docker" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_healthcheck()


def test_it_asks_the_data_planes_readiness_path() -> None:
    assert healthcheck.READY_PATH == "/v2/health/ready"
    assert any(pattern.match(healthcheck.READY_PATH) and "GET" in methods for pattern, methods in ROUTES)


@pytest.mark.parametrize(
    ("commands", "kind"),
    [
        ([["python", "-m", "uvicorn", "config.asgi:application", "--port", "8000"]], "web"),
        ([["/app/.venv/bin/uvicorn", "config.asgi:application"]], "web"),
        # Under docker run --init / tini, the server is not PID 1.
        ([["/sbin/docker-init", "--", "/bin/sh", "/app/docker/entrypoint.sh"], ["python", "-m", "uvicorn"]], "web"),
        ([["python", "manage.py", "servegrpc", "--port", "8001"]], "grpc"),
        ([["/bin/sh", "/app/docker/entrypoint.sh", "grpc"], ["python", "manage.py", "servegrpc"]], "grpc"),
        ([["python", "-m", "celery", "-A", "config", "worker", "-l", "INFO"]], "celery"),
        ([["python", "-m", "celery", "-A", "config", "beat"]], "celery"),
        # The web container while web.sh migrates: not serving yet.
        ([["/bin/sh", "/app/docker/web.sh"], ["python", "manage.py", "migrate", "--noinput"]], None),
        ([["python", "/app/docker/healthcheck.py"]], None),
    ],
)
def test_process_kind(commands: list[list[str]], kind: str | None) -> None:
    assert healthcheck.process_kind(commands) == kind


def test_command_lines_reads_proc(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(b"python\0-m\0uvicorn\0config.asgi:application\0")
    (tmp_path / "27").mkdir()
    (tmp_path / "27" / "cmdline").write_bytes(b"")  # a kernel thread or a zombie
    (tmp_path / "30").mkdir()  # ended while listed: no cmdline any more
    (tmp_path / "self").mkdir()
    (tmp_path / "meminfo").write_text("")
    assert healthcheck.command_lines(tmp_path) == [["python", "-m", "uvicorn", "config.asgi:application"]]


def test_command_lines_on_this_machine_sees_this_process() -> None:
    assert any("pytest" in " ".join(argv) for argv in healthcheck.command_lines())


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict[str, int]]]:
    state = {"status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], state
    server.shutdown()
    server.server_close()


def test_web_ready(health_server: tuple[int, dict[str, int]]) -> None:
    port, state = health_server
    assert healthcheck.web_ready(str(port)) is True
    state["status"] = 503
    assert healthcheck.web_ready(str(port)) is False


def test_web_not_listening_is_not_ready() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck.web_ready(str(port), timeout=1) is False


def test_main(monkeypatch: pytest.MonkeyPatch, health_server: tuple[int, dict[str, int]]) -> None:
    port, state = health_server
    monkeypatch.setenv("PORT", str(port))
    monkeypatch.setattr(healthcheck, "command_lines", lambda: [["python", "-m", "uvicorn"]])
    assert healthcheck.main() == 0
    state["status"] = 503
    assert healthcheck.main() == 1
    monkeypatch.setattr(healthcheck, "command_lines", lambda: [["python", "-m", "celery", "-A", "config", "worker"]])
    assert healthcheck.main() == 0
    monkeypatch.setattr(healthcheck, "command_lines", lambda: [["/bin/sh", "/app/docker/web.sh"]])
    assert healthcheck.main() == 1


@pytest.fixture
def grpc_health_server() -> Iterator[tuple[int, Any]]:
    """A real gRPC server with only the standard health service; yields its port and the servicer."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer
    server.stop(None)


def test_grpc_ready(grpc_health_server: tuple[int, Any]) -> None:
    from grpc_health.v1 import health_pb2

    port, servicer = grpc_health_server
    assert healthcheck.grpc_ready(str(port)) is False
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.grpc_ready(str(port)) is True


def test_grpc_not_listening_is_not_ready() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert healthcheck.grpc_ready(str(port), timeout=1) is False


def test_main_asks_the_grpc_health_service(
    monkeypatch: pytest.MonkeyPatch, grpc_health_server: tuple[int, Any]
) -> None:
    from grpc_health.v1 import health_pb2

    port, servicer = grpc_health_server
    monkeypatch.setenv("MODELDECK_GRPC_PORT", str(port))
    monkeypatch.setattr(healthcheck, "command_lines", lambda: [["python", "manage.py", "servegrpc"]])
    assert healthcheck.main() == 1
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main() == 0

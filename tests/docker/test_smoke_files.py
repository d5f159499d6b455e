"""`make docker-test` (docker/smoke/): its pieces are held to the Dockerfile, compose.yml and each other here.

The end-to-end run itself needs a Docker daemon and minutes, so it is `make docker-test`, not part of pytest; what
runs here is its shape and its skip path.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SMOKE = DOCKER / "smoke"
# The host's own PostgreSQL, Redis, `make run` (HTTP, gRPC) and a gRPC metrics port at its default.
HOST_PORTS = {"5432", "6379", "8000", "8001", "8002"}


def smoke_override() -> dict[str, Any]:
    document = yaml.safe_load((SMOKE / "compose.smoke.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_every_service_of_the_stack_runs_on_host_networking() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    services = smoke_override()["services"]
    assert set(services) == set(compose["services"]), "a service left on a bridge network would get a 172.x address"
    for name, service in services.items():
        assert service["network_mode"] == "host", name


def test_the_stack_uses_ports_of_its_own() -> None:
    script = (SMOKE / "smoke-test.sh").read_text()
    defaults = dict(re.findall(r"^export (SMOKE_\w+_PORT)=\$\{\1:-(\d+)\}$", script, re.MULTILINE))
    assert set(defaults) == {
        "SMOKE_POSTGRES_PORT",
        "SMOKE_REDIS_PORT",
        "SMOKE_WEB_PORT",
        "SMOKE_GRPC_PORT",
        "SMOKE_GRPC_METRICS_PORT",
    }
    assert not set(defaults.values()) & HOST_PORTS
    text = (SMOKE / "compose.smoke.yml").read_text()
    for variable in defaults:
        assert f"${{{variable}}}" in text, variable
    services = smoke_override()["services"]
    for name in ("migrate", "web", "grpc", "worker", "beat"):
        env = services[name]["environment"]
        assert "${SMOKE_POSTGRES_PORT}" in env["DATABASE_URL"] and "${SMOKE_REDIS_PORT}" in env["REDIS_URL"], name
        assert env["PORT"] == "${SMOKE_WEB_PORT}", "web.sh listens on it and healthcheck.py asks it"
        assert env["MODELDECK_GRPC_PORT"] == "${SMOKE_GRPC_PORT}", "grpc.sh listens on it and healthcheck.py asks it"
        assert env["MODELDECK_GRPC_METRICS_PORT"] == "${SMOKE_GRPC_METRICS_PORT}", "grpc.sh serves /metrics on it"


def test_the_dockerfile_builds_unchanged_without_the_local_workarounds() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    # A `# syntax=` line makes BuildKit pull a frontend image before anything else.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    mounts = re.findall(r"--mount=(\S+)", text)
    assert mounts, "the uv install steps take the optional CA bundle"
    for mount in mounts:
        assert "type=secret" in mount and "required=false" in mount, "a build without the secret must still work"
    assert "127.0.0.1" not in text and "network" not in text.lower()
    # The smoke test's scripts stay out of the image.
    assert "docker/smoke" in (ROOT / ".dockerignore").read_text().splitlines()


def test_local_bases_builds_the_images_the_dockerfile_names() -> None:
    script = (SMOKE / "local-bases.sh").read_text()
    # Read from the Dockerfile and the Makefile, never written down a second time.
    assert not re.search(r"python:3\.11\.\d|uv:\d", script)
    assert "docker/Dockerfile" in script and "UV_VERSION" in script


def test_make_docker_test_runs_the_smoke_test_after_make_test_in_ci() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^docker-test:.*\n\tdocker/smoke/smoke-test\.sh$", makefile, re.MULTILINE)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci.index("make docker-test") > ci.index("make test")


def test_without_docker_the_smoke_test_says_skipped_and_passes(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER": str(tmp_path / "no-docker")}
    done = subprocess.run(
        [str(SMOKE / "smoke-test.sh")], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("docker-test: skipped: no Docker client at "), done.stdout

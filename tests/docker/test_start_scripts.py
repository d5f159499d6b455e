"""The container start scripts run the processes exactly as `make run` (manage.py runstack) runs them.

The scripts are executed for real with a stub `python` first on the PATH that records its argv, and `runstack` is
run with its process supervisor replaced by one that records the commands it was given; the two are then compared
flag by flag. So a flag added to runstack (or to a script) fails here until the other side has it too.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from common.management.commands import runstack

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SCRIPTS = sorted(DOCKER.glob("*.sh"))
# Run as programs (entry point and start scripts); common.sh is only sourced by them.
PROGRAMS = ["entrypoint.sh", "web.sh", "grpc.sh", "worker.sh", "beat.sh", "migrate.sh"]
# Inside a container the server listens on every interface; the container's port mapping decides who reaches it.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104

STUB_PYTHON = """#!/bin/sh
{ for arg in "$@"; do printf '%s\\n' "$arg"; done; printf '%s\\n' '--end--'; } >> "$STUB_LOG"
"""


def test_every_script_is_posix_sh_and_parses() -> None:
    assert {p.name for p in SCRIPTS} == {*PROGRAMS, "common.sh"}
    for script in SCRIPTS:
        result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"
        assert "bash" not in script.read_text().splitlines()[0]
    for name in PROGRAMS:
        text = (DOCKER / name).read_text()
        assert text.startswith("#!/bin/sh\n"), name
        assert "\nset -eu\n" in text, name
        assert os.access(DOCKER / name, os.X_OK), f"{name} should be executable"


@pytest.fixture
def run_script(tmp_path: Path) -> Callable[..., list[list[str]]]:
    """Run a docker/ script with a stub `python`; return the argv of every python it started."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python"
    stub.write_text(STUB_PYTHON)
    stub.chmod(0o755)
    log = tmp_path / "python-calls.log"

    def run(name: str, *args: str, env: dict[str, str] | None = None) -> list[list[str]]:
        log.write_text("")
        environment = {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_LOG": str(log), **(env or {})}
        # From another folder: the scripts must find the project root themselves.
        result = subprocess.run(
            ["sh", str(DOCKER / name), *args], env=environment, cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        calls: list[list[str]] = [["python"]]
        for line in log.read_text().splitlines():
            if line == "--end--":
                calls.append(["python"])
            else:
                calls[-1].append(line)
        return calls[:-1]

    return run


@dataclass
class Runstack:
    commands: dict[str, list[str]]
    steps: list[str]


@pytest.fixture
def run_runstack(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Runstack]:
    """Run `manage.py runstack` with the given Redis and broker settings; record what it would start."""

    def run(*, redis_url: str, broker_url: str, web_workers: int, concurrency: int, port: int) -> Runstack:
        settings.MODELDECK_VAR_DIR = tmp_path / "var"
        settings.MODELDECK_PROMETHEUS_DIR = tmp_path / "runstack-prometheus"
        settings.MODELDECK_PROMETHEUS_DIR.mkdir(exist_ok=True)
        settings.CELERY_BEAT_SCHEDULE_FILENAME = str(tmp_path / "var" / "celerybeat-schedule")
        settings.REDIS_URL = redis_url
        settings.CELERY_BROKER_URL = broker_url
        settings.MODELDECK_WEB_WORKERS = web_workers
        steps: list[str] = []
        started: dict[str, list[str]] = {}

        class RecordingStack:
            """Stands in for runstack's ProcessStack: records the commands instead of starting them."""

            def __init__(self, write: Any) -> None:
                pass

            def start(self, commands: dict[str, list[str]], logs: dict[str, Path] | None = None) -> None:
                started.update(commands)

            def wait_until_healthy(self, url: str, timeout: float) -> bool:
                return True

            def supervise(self) -> int:
                return 0

        monkeypatch.setattr(runstack, "call_command", lambda name, *a, **k: steps.append(name))
        monkeypatch.setattr(runstack, "ProcessStack", RecordingStack)
        monkeypatch.setattr(runstack, "port_free", lambda host, port: True)  # a developer's make run may hold 8000
        call_command(
            "runstack",
            "--host",
            EVERY_INTERFACE,
            "--port",
            str(port),
            "--concurrency",
            str(concurrency),
            stdout=io.StringIO(),
        )
        return Runstack(commands=started, steps=steps)

    return run


def command_shape(argv: list[str]) -> tuple[list[str], list[str], list[tuple[str, str | None]]]:
    """Split an argv into (program prefix, positional words, sorted (flag, value) pairs): flag order is free."""
    program = Path(argv[0]).name
    assert program.startswith("python"), argv
    argv = ["python", *argv[1:]]
    prefix, rest = argv[:3], argv[3:]
    positional: list[str] = []
    options: list[tuple[str, str | None]] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("-"):
            value = rest[i + 1] if i + 1 < len(rest) and not rest[i + 1].startswith("-") else None
            # The node name only has to be unique per host: runstack adds its port, a container has its own host.
            if word == "-n" and value is not None and re.fullmatch(r"worker(-\d+)?@%h", value):
                value = "worker@%h"
            options.append((word, value))
            i += 1 if value is None else 2
        else:
            positional.append(word)
            i += 1
    return prefix, positional, sorted(options, key=lambda pair: (pair[0], pair[1] or ""))


CASES: dict[str, dict[str, dict[str, Any]]] = {
    # Redis for everything, several web processes: the usual container setup.
    "redis": {
        "settings": {"redis_url": "redis://redis:6379/0", "broker_url": "redis://redis:6379/0", "web_workers": 3},
        "env": {"REDIS_URL": "redis://redis:6379/0", "MODELDECK_WEB_WORKERS": "3"},
    },
    # The embedded defaults: one web process whatever is asked, the filesystem broker's worker flags.
    "embedded": {
        "settings": {"redis_url": "", "broker_url": "filesystem://", "web_workers": 3},
        "env": {"MODELDECK_WEB_WORKERS": "3"},
    },
    # Another broker than Redis.
    "other-broker": {
        "settings": {"redis_url": "redis://redis:6379/0", "broker_url": "amqp://rabbit//", "web_workers": 2},
        "env": {
            "REDIS_URL": "redis://redis:6379/0",
            "CELERY_BROKER_URL": "amqp://rabbit//",
            "MODELDECK_WEB_WORKERS": "2",
        },
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_start_scripts_run_what_runstack_runs(case: str, run_runstack, run_script, tmp_path: Path) -> None:
    spec = CASES[case]
    stack = run_runstack(**spec["settings"], concurrency=3, port=8000)
    assert set(stack.commands) == {"web", "grpc", "worker", "beat"}
    env = {
        **spec["env"],
        "PORT": "8000",
        "CELERY_WORKER_CONCURRENCY": "3",
        "MODELDECK_VAR_DIR": str(tmp_path / "var"),
        "MODELDECK_MIGRATE_ON_START": "false",
    }
    for process, argv in stack.commands.items():
        calls = run_script(f"{process}.sh", env=env)
        assert len(calls) == 1, calls
        if process == "grpc":
            # The one difference: a container's Prometheus folder is its own, so its gRPC process answers scrapes
            # itself; make run's processes share one folder, which the web's /metrics covers.
            argv = [*argv, "--metrics-port", "8002"]
        assert command_shape(calls[0]) == command_shape(argv), process


def test_runstack_steps_are_each_done_somewhere_in_the_image(run_runstack) -> None:
    """runstack migrates, collects static files and creates the demo login before it starts the processes."""
    stack = run_runstack(redis_url="", broker_url="filesystem://", web_workers=1, concurrency=2, port=8000)
    # migrate: web.sh and migrate.sh (test below). collectstatic: at build time (test_docker_files).
    # bootstrapdemo: deliberately not in containers: a production site gets no demo team and no generated admin
    # password; `manage.py createteam` / `createsuperuser` make the first users (docs/operations.md).
    mirrored = {"migrate", "collectstatic", "bootstrapdemo"}
    assert set(stack.steps) <= mirrored, f"runstack does something new before starting: {set(stack.steps) - mirrored}"


def test_web_migrates_first_unless_told_not_to(run_script, tmp_path: Path) -> None:
    env = {"MODELDECK_VAR_DIR": str(tmp_path / "var")}
    calls = run_script("web.sh", env=env)
    assert calls[0] == ["python", "manage.py", "migrate", "--noinput"]
    assert calls[1][:3] == ["python", "-m", "uvicorn"]
    for off in ("false", "0", "no", "FALSE"):
        calls = run_script("web.sh", env={**env, "MODELDECK_MIGRATE_ON_START": off})
        assert [call[:3] for call in calls] == [["python", "-m", "uvicorn"]]


def test_web_listens_on_every_interface_and_port(run_script, tmp_path: Path) -> None:
    calls = run_script("web.sh", env={"MODELDECK_MIGRATE_ON_START": "false", "PORT": "9123"})
    argv = calls[0]
    assert argv[argv.index("--host") + 1] == EVERY_INTERFACE
    assert argv[argv.index("--port") + 1] == "9123"
    calls = run_script("web.sh", env={"MODELDECK_MIGRATE_ON_START": "false"})
    assert calls[0][calls[0].index("--port") + 1] == "8000"


def test_beat_schedule_file_follows_the_settings(run_script, tmp_path: Path) -> None:
    """settings.CELERY_BEAT_SCHEDULE_FILENAME is VAR_DIR/celerybeat-schedule; VAR_DIR defaults to var/ at the root."""
    argv = run_script("beat.sh", env={"MODELDECK_VAR_DIR": "/var/lib/modeldeck"})[0]
    assert argv[argv.index("-s") + 1] == "/var/lib/modeldeck/celerybeat-schedule"
    argv = run_script("beat.sh")[0]
    assert argv[argv.index("-s") + 1] == str(ROOT.resolve() / "var" / "celerybeat-schedule")


def test_runstack_empties_the_prometheus_folder(run_runstack, settings: Any, tmp_path: Path) -> None:
    """The premise of the scripts' reset: runstack removes the *.db files an earlier run left."""
    stale = tmp_path / "runstack-prometheus" / "counter_123.db"
    stale.parent.mkdir()
    stale.write_bytes(b"x")
    run_runstack(redis_url="", broker_url="filesystem://", web_workers=1, concurrency=2, port=8000)
    assert not stale.exists()


@pytest.mark.parametrize("process", ["web", "grpc", "worker", "beat"])
def test_start_scripts_empty_their_prometheus_folder(process: str, run_script, tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    folders = {
        "MODELDECK_PROMETHEUS_DIR": tmp_path / "explicit",
        "PROMETHEUS_MULTIPROC_DIR": tmp_path / "client-name",
        "": var_dir / "prometheus",
    }
    for variable, folder in folders.items():
        folder.mkdir(parents=True)
        for name in ("counter_7.db", "histogram_8.db", "keep.txt"):
            (folder / name).write_bytes(b"x")
        env = {"MODELDECK_VAR_DIR": str(var_dir), "MODELDECK_MIGRATE_ON_START": "false"}
        if variable:
            env[variable] = str(folder)
        run_script(f"{process}.sh", env=env)
        assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"], (process, variable)
    # Nothing to remove (or no folder yet) is fine too.
    run_script(f"{process}.sh", env={"MODELDECK_PROMETHEUS_DIR": str(tmp_path / "missing")})


def test_entrypoint_dispatches(run_script, tmp_path: Path) -> None:
    env = {"MODELDECK_VAR_DIR": str(tmp_path / "var"), "MODELDECK_MIGRATE_ON_START": "false"}
    assert run_script("entrypoint.sh", env=env)[0][:4] == ["python", "-m", "uvicorn", "config.asgi:application"]
    assert run_script("entrypoint.sh", "web", env=env)[0][:3] == ["python", "-m", "uvicorn"]
    worker = run_script("entrypoint.sh", "worker", "-Q", "conversions", env=env)[0]
    assert worker[:6] == ["python", "-m", "celery", "-A", "config", "worker"]
    assert worker[-2:] == ["-Q", "conversions"]
    assert run_script("entrypoint.sh", "grpc", env=env)[0][:3] == ["python", "manage.py", "servegrpc"]
    assert run_script("entrypoint.sh", "beat", env=env)[0][:6] == ["python", "-m", "celery", "-A", "config", "beat"]
    assert run_script("entrypoint.sh", "migrate", env=env) == [["python", "manage.py", "migrate", "--noinput"]]
    assert run_script("entrypoint.sh", "python", "manage.py", "check", env=env) == [["python", "manage.py", "check"]]


def test_the_access_log_is_off_unless_the_setting_says_so(
    run_runstack, run_script, settings: Any, tmp_path: Path
) -> None:
    """One line per inference request costs the one serving thread a large share of its time (bench/serving.py):
    `make run` and the container leave uvicorn's access log off by default, and MODELDECK_ACCESS_LOG turns it on."""
    env = {"MODELDECK_VAR_DIR": str(tmp_path / "var"), "MODELDECK_MIGRATE_ON_START": "false"}
    embedded = {"redis_url": "", "broker_url": "filesystem://", "web_workers": 1, "concurrency": 2, "port": 8000}
    web = run_runstack(**embedded).commands["web"]
    assert "--no-access-log" in web
    assert "--access-log" not in web
    [script] = run_script("web.sh", env=env)
    assert "--no-access-log" in script
    assert "--access-log" not in script
    settings.MODELDECK_ACCESS_LOG = True
    web = run_runstack(**embedded).commands["web"]
    assert "--access-log" in web
    assert "--no-access-log" not in web
    for on in ("true", "1", "yes", "ON"):
        [script] = run_script("web.sh", env={**env, "MODELDECK_ACCESS_LOG": on})
        assert command_shape(script) == command_shape(web), on
    [script] = run_script("web.sh", env={**env, "MODELDECK_ACCESS_LOG": "false"})
    assert "--no-access-log" in script


def test_runstack_refuses_ports_in_use(settings, tmp_path: Path) -> None:
    """A second make run would find the first one's web server healthy and say "up": it stops at once instead."""
    settings.MODELDECK_VAR_DIR = tmp_path / "var"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not runstack.port_free("127.0.0.1", port)
        with pytest.raises(CommandError, match=rf"Port {port} on 127.0.0.1 is in use: is ModelDeck already running"):
            call_command("runstack", "--host", "127.0.0.1", "--port", str(port), stdout=io.StringIO())
    assert runstack.port_free("127.0.0.1", port)

"""Start the whole platform: migrate, bootstrap the demo login, then web + grpc + worker + beat until Ctrl-C.

The terminal stays readable: each long step says what it is doing, the worker's and the scheduler's logs go to
files under var/log/ (their paths are printed), and everything ends with one box holding the URL and the login.
Static files are collected again only when their sources changed, so a restart takes seconds, not a minute.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.webserver import web_command

STOP_GRACE_SECONDS = 15


class Command(BaseCommand):
    help = (
        "Run ModelDeck: the ASGI web server, the gRPC inference server, a Celery worker and the beat scheduler, "
        "stopped together by Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("MODELDECK_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("MODELDECK_PORT", "8000")))
        parser.add_argument(
            "--grpc-port",
            type=int,
            default=settings.MODELDECK_GRPC_PORT,
            help="The gRPC inference port (KServe V2, TF Serving); 0 starts no gRPC server.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=int(os.environ.get("CELERY_WORKER_CONCURRENCY", "2")),
            help="Worker processes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        settings.MODELDECK_VAR_DIR.mkdir(parents=True, exist_ok=True)
        # Another stack on the same ports would answer the health check for this one, which would then say "up".
        for port in (options["port"], options["grpc_port"]):
            if port and not port_free(options["host"], port):
                raise CommandError(
                    f"Port {port} on {options['host']} is in use: is ModelDeck already running? Stop it first, or "
                    "choose other ports (MODELDECK_PORT, MODELDECK_GRPC_PORT)."
                )
        started = time.monotonic()
        self._step("Preparing the database", lambda: call_command("migrate", interactive=False, verbosity=0))
        static = static_sources_fingerprint()
        if static_collected_for(static):
            self.stdout.write("Static files: unchanged since the last start")
        else:
            self._step(
                "Collecting static files (compressing them takes a minute the first time)",
                lambda: call_command("collectstatic", interactive=False, verbosity=0),
            )
            static_collected_mark(static)
        login = io.StringIO()
        call_command("bootstrapdemo", stdout=login)
        host, port = options["host"], options["port"]
        # The embedded defaults (in-memory channel layer, per-process cache) hold state in one process; several web
        # processes need Redis to share it.
        web_workers = settings.MODELDECK_WEB_WORKERS if settings.REDIS_URL else 1
        python = sys.executable
        worker = [python, "-m", "celery", "-A", "config", "worker", "-l", "INFO", "-n", f"worker-{port}@%h"]
        worker += ["--concurrency", str(options["concurrency"])]
        if settings.CELERY_BROKER_URL.startswith("filesystem://"):
            # The filesystem transport has no broadcast exchange for mingle/gossip between workers.
            worker += ["--without-mingle", "--without-gossip"]
        commands = {
            "web": web_command(
                host=host, port=port, workers=web_workers, access_log=settings.MODELDECK_ACCESS_LOG, python=python
            ),
            # One process: the router and its warm models are per process, like a web worker's.
            "grpc": [python, "manage.py", "servegrpc", "--host", host, "--port", str(options["grpc_port"])],
            "worker": worker,
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "INFO",
                "-s",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        if not options["grpc_port"]:
            del commands["grpc"]
        # prometheus_client's multiprocess mode sums every file in the folder: an earlier run's would count twice.
        for stale in settings.MODELDECK_PROMETHEUS_DIR.glob("*.db"):
            stale.unlink(missing_ok=True)
        # The worker and the scheduler are chatty (banners, heartbeats): their logs go to files, the web's and the
        # gRPC server's (a few lines, and their errors) stay on the terminal.
        log_dir = settings.MODELDECK_VAR_DIR / "log"
        log_dir.mkdir(exist_ok=True)
        logs = {name: log_dir / f"{name}.log" for name in ("worker", "beat")}
        stack = ProcessStack(self.stdout.write)
        stack.start(commands, logs)
        url = f"http://{host}:{port}/"
        if not stack.wait_until_healthy(f"{url}healthz", timeout=60):
            stack.stop()
            raise CommandError("The web server did not become healthy within 60 s; see its log above.")
        lines = [f"ModelDeck is up at {url}"]
        lines += [line for line in login.getvalue().splitlines() if line.strip()]
        if options["grpc_port"]:
            lines.append(f"gRPC inference on {host}:{options['grpc_port']}")
        lines.append("Logs: " + ", ".join(_shown(path) for path in logs.values()))
        lines.append(f"Ready in {time.monotonic() - started:.0f} s. Ctrl-C stops everything.")
        self.stdout.write(self.style.SUCCESS(boxed(lines)))
        code = stack.supervise()
        if code:
            raise CommandError(f"A process exited unexpectedly (status {code}); everything was stopped.")

    def _step(self, what: str, run: Any) -> None:
        self.stdout.write(f"{what}...", ending="")
        self.stdout.flush()
        began = time.monotonic()
        run()
        self.stdout.write(f" done ({time.monotonic() - began:.1f} s)")


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as uvicorn and gRPC would: SO_REUSEADDR, no SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def boxed(lines: list[str]) -> str:
    """Lines in a frame, so the URL and the login stand out from the processes' own output."""
    width = max(len(line) for line in lines)
    rule = "─" * (width + 2)
    return "\n".join([f"┌{rule}┐", *(f"│ {line.ljust(width)} │" for line in lines), f"└{rule}┘"])


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def static_sources_fingerprint() -> str:
    """A digest of every static source file (name, size, modification time) and of how they are stored."""
    from django.contrib.staticfiles.finders import get_finders

    entries = []
    for finder in get_finders():
        for name, storage in finder.list(["CVS", ".*", "*~"]):
            stat = os.stat(storage.path(name))
            entries.append(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}")
    digest = hashlib.sha256(f"{settings.STATIC_URL}\0{settings.STORAGES['staticfiles']['BACKEND']}\n".encode())
    for entry in sorted(entries):
        digest.update(entry.encode() + b"\n")
    return digest.hexdigest()


def _static_marker() -> Path:
    return settings.MODELDECK_VAR_DIR / "static-sources.sha256"


def static_collected_for(fingerprint: str) -> bool:
    """Whether STATIC_ROOT holds what collectstatic made from exactly these sources."""
    root = settings.STATIC_ROOT
    if root is None or not Path(root).is_dir():
        return False
    if "Manifest" in settings.STORAGES["staticfiles"]["BACKEND"] and not (Path(root) / "staticfiles.json").exists():
        return False
    marker = _static_marker()
    return marker.exists() and marker.read_text().strip() == fingerprint


def static_collected_mark(fingerprint: str) -> None:
    _static_marker().write_text(fingerprint + "\n")


class ProcessStack:
    """Child processes that live and die together."""

    def __init__(self, write: Any) -> None:
        self.write = write
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._files: list[IO[bytes]] = []
        self.stopping = False

    def start(self, commands: dict[str, list[str]], logs: dict[str, Path] | None = None) -> None:
        """Start every command; those named in `logs` write their output to that file (appended), not here."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.logs = {name: path for name, path in (logs or {}).items() if name in commands}
        for name, argv in commands.items():
            output: IO[bytes] | None = None
            if name in self.logs:
                output = self.logs[name].open("ab")
                self._files.append(output)
            self.processes[name] = subprocess.Popen(argv, env=os.environ.copy(), stdout=output, stderr=output)
            where = f", log: {_shown(self.logs[name])}" if name in self.logs else ""
            self.write(f"started {name} (pid {self.processes[name].pid}{where})")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def wait_until_healthy(self, url: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping:
            if any(p.poll() is not None for p in self.processes.values()):
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (our own localhost URL)
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.3)
        return False

    def supervise(self) -> int:
        """Wait for Ctrl-C / SIGTERM or for a child to die; then stop all and return the failure status (0 if asked)."""
        failed = 0
        while not self.stopping:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    log = f" (its log: {_shown(self.logs[name])})" if name in self.logs else ""
                    self.write(f"{name} exited with status {process.returncode}{log}; stopping the others")
                    failed = process.returncode or 1
                    self.stopping = True
                    break
            time.sleep(0.3)
        self.stop()
        return failed

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in self.processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.write(f"{name} did not stop within {STOP_GRACE_SECONDS} s; killing it")
                process.kill()
                process.wait()
        for output in self._files:
            output.close()
        self.write("stopped")

"""Start the whole platform: migrate, bootstrap the demo login, then web + grpc + worker + beat until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from types import FrameType
from typing import Any

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
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("bootstrapdemo", stdout=self.stdout)
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
        stack = ProcessStack(self.stdout.write)
        stack.start(commands)
        url = f"http://{host}:{port}/"
        if not stack.wait_until_healthy(f"{url}healthz", timeout=60):
            stack.stop()
            raise CommandError("The web server did not become healthy within 60 s; see its log above.")
        grpc = f", gRPC inference on {host}:{options['grpc_port']}" if options["grpc_port"] else ""
        self.stdout.write(self.style.SUCCESS(f"ModelDeck is up at {url}{grpc} (Ctrl-C stops everything)."))
        code = stack.supervise()
        if code:
            raise CommandError(f"A process exited unexpectedly (status {code}); everything was stopped.")


class ProcessStack:
    """Child processes that live and die together."""

    def __init__(self, write: Any) -> None:
        self.write = write
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self, commands: dict[str, list[str]]) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for name, argv in commands.items():
            self.processes[name] = subprocess.Popen(argv, env=os.environ.copy())
            self.write(f"started {name} (pid {self.processes[name].pid})")

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
                    self.write(f"{name} exited with status {process.returncode}; stopping the others")
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
        self.write("stopped")

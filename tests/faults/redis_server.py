"""A Redis server of the test's own, in a temporary folder, that the test stops and starts at will.

Fault tests take Redis away with it; the shared server the suite runs on is never touched. Nothing is persisted, so
a restart comes back empty, as a Redis without persistence does in production.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis


class PortInUse(Exception):
    """Another socket holds the port (the given ports lie in the kernel's ephemeral range, so one may, briefly)."""


class PrivateRedis:
    """One server on a fixed port: `start()`, `stop()`, `url()` of a database in it."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.log = folder / f"server-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, port_wait: float = 10) -> None:
        """Start the server and wait until it answers; a port briefly held by another socket is waited for."""
        deadline = time.monotonic() + port_wait
        while True:
            try:
                return self._start_once()
            except PortInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _start_once(self) -> None:
        assert self.process is None, "already running"
        deadline = time.monotonic() + 10
        self.log.unlink(missing_ok=True)
        process = self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
                *("--save", "", "--appendonly", "no", "--logfile", str(self.log)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        while True:
            if process.poll() is not None:
                self.process = None
                log = self.log.read_text() if self.log.exists() else ""
                if "Address already in use" in log:
                    raise PortInUse(self.port)
                raise AssertionError(f"redis-server on port {self.port} did not start:\n{log}")
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def private_redis(ports: Sequence[int]) -> Iterator[PrivateRedis]:
    """A server started on the first free one of `ports` for the block; stopped and its folder removed after."""
    with tempfile.TemporaryDirectory(prefix="modeldeck-redis-") as folder:
        for port in ports:
            server = PrivateRedis(Path(folder), port)
            try:
                server.start(port_wait=1)
                break
            except PortInUse:
                continue
        else:
            raise AssertionError(f"none of the ports {list(ports)} is free for a private redis-server")
        try:
            yield server
        finally:
            server.stop()

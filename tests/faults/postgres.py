"""A PostgreSQL cluster of the test's own, in a temporary folder, that the test stops and starts at will.

Fault tests take the database away with it; the shared cluster the suite runs on is never touched. The server runs
as the `postgres` user when the test runs as root (initdb refuses root), with trust authentication on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
import pytest

# The ports private clusters take, the first free one: test runs side by side each get their own.
PORTS = range(55432, 55440)


class PrivatePostgres:
    """One cluster: `start()`, `stop()` (fast: sessions are cut as in a real outage), `url()` of a database in it."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.log = folder / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        # As root, the server's own user runs it: setpriv keeps the environment (PATH) and needs no login shell.
        if os.geteuid() == 0:
            command = ("setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *command)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}\n{log}")

    def init(self) -> None:
        self._run(
            *("initdb", "--pgdata", str(self.data), "--username=postgres", "--auth=trust"),
            *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "--pgdata", str(self.data), "--log", str(self.log), "--options", options, "--wait", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "--pgdata", str(self.data), "--mode", mode, "--wait", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str, schema_from: str | None = None) -> None:
        """Create a database; with `schema_from` (a database URL), with that database's tables, as migrated.

        Copying the schema of the suite's migrated test database takes a second; running the migrations, many.
        """
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        if schema_from is None:
            return
        dump = _run(["pg_dump", "--schema-only", "--no-owner", "--no-privileges", f"--dbname={schema_from}"])
        _run(["psql", "--quiet", "--set=ON_ERROR_STOP=1", f"--dbname={self.url(name)}"], input=dump)


def _run(command: list[str], input: str | None = None) -> str:
    done = subprocess.run(command, input=input, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{command[0]} failed: {done.stderr}")
    return done.stdout


@contextmanager
def private_postgres(ports: range = PORTS) -> Iterator[PrivatePostgres]:
    """A started cluster on the first free port of `ports`, stopped and deleted when the block ends, however it ends."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not on PATH")
    # Not pytest's tmp_path: the server's user must reach the folder, and pytest's base folder is the runner's alone.
    folder = Path(tempfile.mkdtemp(prefix="modeldeck-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PrivatePostgres(folder, ports[0])
    try:
        cluster.init()
        for port in ports:
            cluster.port = port
            cluster.log.unlink(missing_ok=True)
            try:
                cluster.start()
                break
            except AssertionError as exc:
                if "could not create any TCP/IP sockets" not in str(exc) or port == ports[-1]:
                    raise
        yield cluster
    finally:
        if cluster.running():
            with suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.stop("immediate")
        deadline = time.monotonic() + 10
        while cluster.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)

"""The CLI against a live server: uvicorn in a thread of this process, jobs run by a stand-in worker thread,
and `modeldeck` itself run as a subprocess (not a terminal) with its environment pointed at the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from registry.choices import JobKind, JobStatus
from registry.models import Job
from registry.services.jobs import job_run
from registry.tasks import JOB_HANDLERS
from teams.choices import Role
from tests.asgi_server import asgi_server
from tests.conftest import Member

MODELDECK = Path(sys.executable).with_name("modeldeck")
CLI_TIMEOUT = 120


@dataclass
class Worker:
    """Runs each queued job in a thread, as a Celery worker would in its own process."""

    threads: list[threading.Thread]

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in self.threads), "a job thread did not finish"


@pytest.fixture
def worker(db: None, monkeypatch) -> Iterator[Worker]:
    """Stand in for the Celery worker: jobs (conversions, asked-for benchmarks, inspections) really run, in threads.

    Asks for the database first, so the database is flushed only after the server and these threads are gone.
    """
    from registry.tasks import model_version_inspect_task

    threads: list[threading.Thread] = []

    def in_thread(target: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                target()
            finally:
                connections.close_all()  # this thread's own connection, before the test's database is flushed

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()

    def run_job(job_id: int) -> None:
        # The benchmark ModelDeck queues by itself for every servable version is a child process per version:
        # on two cores it would slow every test down, and only test_benchmark_* wants one (and asks for it).
        automatic = Job.objects.filter(pk=job_id, kind=JobKind.BENCHMARK, created_by__isnull=True)
        if automatic.filter(status=JobStatus.QUEUED).update(status=JobStatus.CANCELLED, finished_at=timezone.now()):
            return
        job_run(job_id, "cli-test-worker", JOB_HANDLERS)

    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: in_thread(lambda: run_job(job_id)))
    monkeypatch.setattr(
        "registry.tasks.model_version_inspect_task.delay",
        lambda version_id: in_thread(lambda: model_version_inspect_task(version_id)),
    )
    worker = Worker(threads)
    yield worker
    worker.join()


@pytest.fixture
def live_url(worker: Worker, artifact_dir: Path) -> Iterator[str]:
    """The whole ASGI application served by uvicorn in a thread of this process."""
    with asgi_server("/v2/health/live") as url:
        yield url
        # Jobs still running (an automatic benchmark) finish before the server and the database go away.
        worker.join()


@pytest.fixture
def dev(make_member, team_a) -> Member:
    return make_member(team=team_a, role=Role.DEVELOPER, username="dev")


@dataclass
class Run:
    """One finished `modeldeck` run."""

    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs `modeldeck` as a pipeline would: a subprocess, no terminal, configured by the environment."""

    url: str
    token: str
    home: Path

    @property
    def config(self) -> Path:
        return self.home / "modeldeck" / "config.json"

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("MODELDECK_") and key not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
        }
        env.update(
            HOME=str(self.home),
            MODELDECK_URL=self.url,
            MODELDECK_TOKEN=self.token,
            MODELDECK_CONFIG=str(self.config),
        )
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def __call__(self, *args: str | Path, stdin: str | None = None, **env: str | None) -> Run:
        done = subprocess.run(
            [str(MODELDECK), *map(str, args)],
            env=self.env(**env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(live_url: str, dev: Member, tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(url=live_url, token=dev.token, home=home)

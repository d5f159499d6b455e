"""Scale-out on one machine: two web processes and two Celery workers sharing PostgreSQL and Redis.

A promote through one web process is served by the other within a second; jobs spread over both workers; a web
process killed under load loses no request a retrying client sent; a worker killed mid-job loses no job (the
other one finishes it; tests/registry/test_worker_kill.py goes through that recovery step by step).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from django.utils import timezone

from deployments.models import Release
from deployments.services import endpoint_create
from monitoring.models import Alert, EvaluatorLease
from registry.choices import JobStatus
from registry.models import Job, ModelVersion
from registry.services.jobs import JOB_LOST_AFTER, jobs_reap
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.deployments.test_endpoint_apis import add_version
from tests.registry.model_files import onnx_failing_past_one_row
from tests.registry.test_worker_kill import Worker, celery_broker, redeliver_unacked, wait_until, worker_setup
from tests.test_stack_smoke import Output

# A multi-process or fault-injection suite: `make test-heavy`, not `make test` (CI runs both).
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parent.parent
BROKER_DB = 12  # this test's own Redis database (broker, cache, channel layer): flushed before and after
X = (np.arange(8, dtype=np.float32).reshape(2, 4) - 3) / 2
BODY = json.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]})


class Web:
    """A web process started as `make run` starts one (uvicorn, uvloop, lifespan on), on a port of its own."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(self.port)),
                *(
                    "--lifespan",
                    "on",
                    "--loop",
                    "uvloop",
                    "--http",
                    "serving.fastpath:DataPlaneProtocol",
                    "--log-level",
                    "warning",
                ),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = Output(self.process)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout, f"{self.name} to be ready", poll=0.1)

    def kill(self) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def dump(self) -> str:
        return f"----- {self.name} -----\n" + "\n".join(self.output.lines[-80:])


def served_version(web: Web, token: str) -> int:
    response = httpx.post(
        f"{web.url}/v2/models/iris/infer", content=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return int(response.json()["model_version"])


def version_now(web: Web, token: str) -> int | None:
    """The version that answered a request, or None when it failed."""
    response = httpx.post(
        f"{web.url}/v2/models/iris/infer", content=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return int(response.json()["model_version"]) if response.status_code == 200 else None


def bad_version(model: Any, actor: Actor, tmp_path: Path) -> ModelVersion:
    """A version that loads and answers one row, and answers 500 to any request of two (BODY has two)."""
    path = onnx_failing_past_one_row(tmp_path / "fails.onnx")
    upload = Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    return model_version_create(actor=actor, model=model, upload=upload)


@contextmanager
def load(webs: list[Web], token: str, answers: list[tuple[int, str]]) -> Iterator[None]:
    """Four clients sending BODY round robin to the web processes until the block ends, each request retried on the
    next process when one is gone: (status, version or message) kept."""
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            turn = 0
            while not stop.is_set():
                try:
                    response = http.post(f"{webs[turn % len(webs)].url}/v2/models/iris/infer", content=BODY)
                except httpx.TransportError:
                    turn += 1  # that process is gone: the same request, to the next one
                    continue
                # An answer names its version in a header; a refusal, in its message.
                answers.append((response.status_code, response.headers.get("x-modeldeck-version") or response.text))
                turn += 1

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


def rollout(web: Web, auth: dict[str, str], version: int, gates: dict[str, Any]) -> int:
    steps = [{"percent": 20, "bake_seconds": 3}, {"percent": 50, "bake_seconds": 3}]
    body = {"version": version, "steps": steps, "gates": gates, "reason": "scale-out test"}
    started = httpx.post(f"{web.url}/api/v1/endpoints/iris/rollouts", json=body, headers=auth, timeout=10)
    assert started.status_code == 201, started.text
    return int(started.json()["id"])


def rollout_state(webs: list[Web], auth: dict[str, str], rollout_id: int) -> tuple[str, int]:
    """The rollout's state and step, asked of whichever web process answers."""
    for web in list(webs):
        try:
            body = httpx.get(f"{web.url}/api/v1/endpoints/iris/rollouts/{rollout_id}", headers=auth).json()
        except httpx.TransportError:
            continue
        return str(body["state"]), int(body["step"])
    raise AssertionError("no web process answers")


def rollout_outcome(webs: list[Web], auth: dict[str, str], rollout_id: int) -> str:
    def finished() -> str | None:
        state = rollout_state(webs, auth, rollout_id)[0]
        return None if state in ("running", "paused") else state

    return str(wait_until(finished, 60, f"rollout {rollout_id} to finish", poll=0.25))


@pytest.mark.django_db(transaction=True)  # committed rows: every process here is another process
def test_two_web_processes_and_two_workers_share_the_load_and_the_state(
    artifact_dir: Path, tmp_path: Path, make_member, team_a
) -> None:
    broker_url, broker, env = worker_setup(tmp_path, BROKER_DB)
    env["MODELDECK_PROMETHEUS_DIR"] = str(tmp_path / "prometheus")
    processes: list[Web | Worker] = []
    try:
        webs = [Web("web-1", env), Web("web-2", env)]
        workers = [Worker("scale-1", env, concurrency=1), Worker("scale-2", env, concurrency=1)]
        processes += [*webs, *workers]
        dev = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
        actor = Actor(user=dev.user)
        with celery_broker(broker_url):
            # Six versions: each new servable version queues its benchmark job on the shared broker.
            model = registered_model_create(actor=actor, team=team_a, name="iris")
            versions = {seed: add_version(model, actor, tmp_path, seed) for seed in range(1, 7)}
            endpoint_create(actor=actor, model=model, name="iris", version=versions[1])
            for process in processes:
                process.wait_ready()

            # 1. A promote through web-1 is served by web-2 within a second (and a rollback, back again).
            assert served_version(webs[1], dev.token) == 1
            for action, body, expected in (("promote", {"version": 2}, 2), ("rollback", {}, 1)):
                answered = httpx.post(
                    f"{webs[0].url}/api/v1/endpoints/iris/{action}",
                    json=body,
                    headers={"Authorization": f"Bearer {dev.token}"},
                    timeout=10,
                )
                assert answered.status_code == 201, answered.text
                committed = time.monotonic()

                def web_2_serves(wanted: int = expected) -> bool:
                    return served_version(webs[1], dev.token) == wanted

                wait_until(web_2_serves, 5, f"web-2 to serve v{expected}")
                took = time.monotonic() - committed
                print(f"\n{action} through web-1 served by web-2 after {took * 1000:.0f} ms")
                assert took < 1.0

            # 1b. One evaluator for the cluster: a rule needing 40 canary requests fires on 30 served by each web
            #     process (neither alone has 40), once, and rolls the canary back once; the decision comes within
            #     seconds. (Its threshold, p95 over 0 ms, is met by any traffic: the point is whose traffic counts.)
            auth = {"Authorization": f"Bearer {dev.token}"}
            canary = httpx.post(
                f"{webs[0].url}/api/v1/endpoints/iris/promote",
                json={"version": 3, "canary_percent": 10},
                headers=auth,
                timeout=10,
            )
            assert canary.status_code == 201, canary.text
            rule = {"name": "any canary latency", "metric": "p95_ms", "threshold": 0, "window_seconds": 120}
            rule |= {"min_requests": 40, "action": "rollback", "bake_seconds": 600}
            created = httpx.post(
                f"{webs[1].url}/api/v1/endpoints/iris/alert-rules", json=rule, headers=auth, timeout=10
            )
            assert created.status_code == 201, created.text
            for web in webs:
                for _ in range(30):
                    pinned = httpx.post(f"{web.url}/v2/models/iris/versions/3/infer", content=BODY, headers=auth)
                    assert pinned.status_code == 200, pinned.text
            served_at = time.monotonic()
            alert = wait_until(lambda: Alert.objects.first(), 15, "the rule to fire", poll=0.1)
            print(f"\none evaluator fired {time.monotonic() - served_at:.1f} s after the last request")
            assert 40 <= alert.requests <= 60 and alert.action_taken == "rolled_back", (alert.requests, alert.detail)
            time.sleep(2)  # a second evaluator, had there been one, would have fired by now
            assert Alert.objects.count() == 1
            assert list(Release.objects.order_by("number").values_list("action", flat=True))[-2:] == [
                "canary",
                "rollback",
            ]

            # 2. The six benchmark jobs spread over both workers.
            jobs = wait_until(
                lambda: (
                    list(Job.objects.filter(kind="benchmark"))
                    if Job.objects.filter(kind="benchmark", status=JobStatus.SUCCEEDED).count() == 6
                    else None
                ),
                120,
                "the six benchmark jobs to succeed",
                poll=0.2,
            )
            assert {job.worker.split("@")[0] for job in jobs} == {"scale-1", "scale-2"}

            # 2b. Rollouts judged once for both processes, under load from both: v2 goes to 100 % step by step, then
            #     v7, a version that fails on any request of two rows, is rolled back by its error-rate gate. No
            #     request fails but those v7 answered (no connection error, no 5xx from a switch of releases).
            gone = httpx.delete(f"{webs[0].url}/api/v1/endpoints/iris/alert-rules/{created.json()['id']}", headers=auth)
            assert gone.status_code == 204, gone.text
            bad = bad_version(model, actor, tmp_path)
            answers_by_version: list[tuple[int, str]] = []
            with load(webs, dev.token, answers_by_version):
                healthy = rollout(webs[0], auth, 2, gates={"min_requests": 20, "p95_ratio": None})
                # Half way, the web process that judges it dies: the other takes the lease over and finishes it,
                # and a new web process takes the dead one's place (clients retry on the other meanwhile).
                wait_until(lambda: rollout_state(webs, auth, healthy)[1] == 2, 30, "the rollout's second step")
                holder = EvaluatorLease.objects.get().holder
                dead = next(i for i, web in enumerate(webs) if holder.endswith(f":{web.process.pid}"))
                webs[dead].kill()
                webs[dead] = Web(f"web-{dead + 1}-again", env)
                processes.append(webs[dead])
                webs[dead].wait_ready()
                assert rollout_outcome(webs, auth, healthy) == "succeeded"
                assert EvaluatorLease.objects.get().holder != holder
                failing = rollout(webs[1], auth, bad.number, gates={"min_requests": 20, "p95_ratio": None})
                assert rollout_outcome(webs, auth, failing) == "rolled_back"
            outcome = httpx.get(f"{webs[0].url}/api/v1/endpoints/iris/rollouts/{failing}", headers=auth).json()
            print(f"\nrolled back: {outcome['outcome']}")
            assert "canary error rate" in outcome["outcome"]
            # v2 promoted, v7 gone: every web process serves v2 once it has read the rollback (within a second; until
            # then the bad canary may still get its share there and fail as it did before).
            wait_until(lambda: version_now(webs[1], dev.token) == 2, 5, "web-2 to serve v2 after the rollback")
            failed = [(status, said) for status, said in answers_by_version if status != 200]
            assert failed and all(status == 500 and f"v{bad.number} failed to run" in said for status, said in failed)

            # 3. A web process killed under load: a client that retries on the other loses no request.
            answers: list[int] = []
            stop = threading.Event()

            def client() -> None:
                urls = [web.url for web in webs]
                with httpx.Client(headers={"Authorization": f"Bearer {dev.token}"}, timeout=5) as http:
                    turn = 0
                    while not stop.is_set():
                        for attempt in range(len(urls)):
                            url = urls[(turn + attempt) % len(urls)]
                            try:
                                response = http.post(f"{url}/v2/models/iris/infer", content=BODY)
                            except httpx.TransportError:
                                continue  # that process is gone: the same request, to the other one
                            answers.append(response.status_code)
                            break
                        else:
                            answers.append(0)
                        turn += 1

            threads = [threading.Thread(target=client) for _ in range(4)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            webs[0].kill()
            time.sleep(1.5)
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            assert len(answers) > 50
            assert set(answers) == {200}

            # 4. A worker killed in the middle of a job: the job is not lost. Its unacknowledged message is
            #    redelivered and the reaper requeues it (both at once here, as production would after the
            #    visibility timeout and a minute without heartbeats), and the other worker runs it once.
            job = None
            for version in (versions[4], versions[5], versions[6]):
                requested = httpx.post(
                    f"{webs[1].url}/api/v1/models/alpha/iris/versions/{version.number}/conversions",
                    json={"target": "onnx", "quantization": "float16"},
                    headers={"Authorization": f"Bearer {dev.token}"},
                    timeout=10,
                )
                assert requested.status_code == 202, requested.text
                job_id = requested.json()["id"]

                def started(job_id: int = job_id) -> Job | None:
                    return Job.objects.filter(pk=job_id).exclude(status=JobStatus.QUEUED).first()

                running = wait_until(started, 60, "the conversion to start", poll=0.02)
                if running.status == JobStatus.RUNNING:
                    victim = next(w for w in workers if running.worker.startswith(w.name + "@"))
                    victim.kill()
                    job = Job.objects.get(pk=job_id)
                    if job.status == JobStatus.RUNNING:
                        break  # killed mid-job
                job = None  # it ended before the kill landed: try the next one
            assert job is not None, "no conversion ran long enough to be killed mid-job"
            survivor = next(w for w in workers if w is not victim)
            redeliver_unacked(broker_url)
            assert jobs_reap(now=timezone.now() + JOB_LOST_AFTER + timedelta(seconds=5)) == [job.pk]
            final = wait_until(
                lambda: Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
                120,
                "the conversion to finish on the other worker",
                poll=0.2,
            )
            assert final.status == JobStatus.SUCCEEDED, final.error
            assert final.worker.startswith(survivor.name + "@") and final.attempts == 2

    except BaseException:
        for process in processes:
            print(process.dump())
        raise
    finally:
        for process in processes:
            process.kill()
        broker.flushdb()
        broker.close()

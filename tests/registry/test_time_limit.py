"""A job that runs past the soft time limit, with a real Redis broker, a real Celery worker and PostgreSQL.

The job must end `failed` with the time-limit error, its benchmark child process must not outlive it, and the
worker must stay up and take the next task at once: the same main process and the same pool process, with no hard
time limit kill and no restart. Nothing is mocked between the broker, the worker processes and the database.

Only the worker runs with CELERY_TASK_SOFT_TIME_LIMIT=2 and CELERY_TASK_TIME_LIMIT=30; this process, which sends
the job, keeps the defaults. Celery copies the sender's limits into each message and a worker obeys those over
its own settings, so this also proves config/celery_app.py strips the copied defaults and the worker decides.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import numpy as np
import pytest

from monitoring.models import WorkerHeartbeat
from monitoring.tasks import worker_heartbeat
from registry.choices import JobKind, JobStatus
from registry.models import Job
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.test_worker_kill import (
    QUEUE,
    TASK,
    Worker,
    celery_broker,
    group_members,
    job_log,
    wait_until,
    worker_setup,
)
from tests.teams.factories import create_membership
from tests.test_stack_smoke import alive

BROKER_DB = 13  # a Redis database for this test alone (test_worker_kill uses 14): flushed before and after
SOFT_LIMIT = 2  # seconds; CELERY_TASK_SOFT_TIME_LIMIT of the worker
HARD_LIMIT = 30  # CELERY_TASK_TIME_LIMIT: far off, so only the soft limit can act
TIME_LIMIT_ERROR = "The job ran past its time limit and was stopped."


def slow_onnx_file(path: Path, layers: int = 100, width: int = 1024) -> Path:
    """An ONNX classifier (x FP32 [N, 4] -> probs FP32 [N, 3]) that is small on disk but slow to run.

    tests.registry.model_files.onnx_file is too quick for this test: its whole benchmark (interpreter start, three
    batch sizes capped at 300 runs each) ends in under a second, inside any soft limit Celery accepts (whole
    seconds). Here one width x width weight (4 MiB), shared by `layers` MatMul+Tanh steps, makes every run take
    milliseconds, so each batch size runs into the benchmark's 2 s cap: several seconds in all, well past the limit
    even on a much faster machine.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(shape[0])).astype(np.float32), name=name)
        for name, shape in (("W_in", (4, width)), ("H", (width, width)), ("W_out", (width, 3)))
    ]
    nodes = [helper.make_node("MatMul", ["x", "W_in"], ["h0"])]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "H"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("MatMul", [f"h{layers}", "W_out"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "slow_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=weights,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modeldeck-tests", producer_version="1.0"
    )
    model.ir_version = 8  # as model_files.onnx_file: the IR the installed onnxruntime runs
    path.write_bytes(model.SerializeToString())
    return path


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""  # it ended while we looked


def benchmark_processes(pgid: int, marker: str) -> list[int]:
    """Live `python -m registry.benchmark` processes of this test: in the worker's group, or on its files."""
    group = set(group_members(pgid))
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        command = cmdline(pid)
        if "-m registry.benchmark" in command and (marker in command or pid in group) and alive(pid):
            found.append(pid)
    return found


@pytest.mark.django_db(transaction=True)  # committed rows: the worker is another process
def test_a_job_past_its_soft_time_limit_fails_cleanly_and_frees_the_worker(artifact_dir: Path, tmp_path: Path) -> None:
    broker_url, broker, env = worker_setup(
        tmp_path, BROKER_DB, CELERY_TASK_SOFT_TIME_LIMIT=str(SOFT_LIMIT), CELERY_TASK_TIME_LIMIT=str(HARD_LIMIT)
    )
    assert artifact_dir == tmp_path / "artifacts"
    started = time.monotonic()
    worker = Worker("timelimit-test", env, concurrency=1)
    try:
        membership = create_membership(role=Role.DEVELOPER)
        actor = Actor(user=membership.user)
        model = registered_model_create(actor=actor, team=membership.team, name="slow")
        path = slow_onnx_file(tmp_path / "slow.onnx")
        upload = Upload(path, "slow.onnx", hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
        worker.wait_ready()
        # The worker's main process and its one pool process, before any task: the same two must remain at the end.
        processes = set(group_members(worker.pid))
        assert worker.pid in processes and len(processes) == 2, f"expected a main and one pool process: {processes}"

        # The sender keeps its default limits (900 s / 960 s): the worker's own 2 s / 30 s must decide.
        with celery_broker(broker_url):
            # 1. An ONNX upload is inspected inline and ready at once; committing it sends its automatic benchmark
            #    job (transaction.on_commit -> job_run_task.delay) to this test's broker.
            version = model_version_create(actor=actor, model=model, upload=upload)
            assert version.status == "ready", version.status_message
            job = Job.objects.get(version=version, kind=JobKind.BENCHMARK)

            # 2. The worker starts it, and its benchmark child process runs...
            running = wait_until(
                lambda: Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, progress__gte=5).first(),
                timeout=30,
                what="the worker to start the benchmark",
                poll=0.02,
            )
            assert running.worker.startswith("timelimit-test@") and running.attempts == 1
            [child] = wait_until(
                lambda: benchmark_processes(worker.pid, str(artifact_dir)),
                timeout=SOFT_LIMIT + 5,
                what="the benchmark child process",
                poll=0.02,
            )
            assert child not in processes and child in group_members(worker.pid)

            # 3. ...until the soft limit stops it: the job fails with the time-limit error, promptly.
            final = wait_until(
                lambda: Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).first(),
                timeout=HARD_LIMIT,
                what="the benchmark job to end",
            )
            ended_at = time.monotonic()
            assert final.status == JobStatus.FAILED, f"{final.status}: {final.result}\n{job_log(final)}"
            assert final.error == TIME_LIMIT_ERROR
            assert final.started_at is not None and final.finished_at is not None
            ran_for = (final.finished_at - final.started_at).total_seconds()
            assert SOFT_LIMIT - 1 < ran_for < SOFT_LIMIT + 10, ran_for
            log = job_log(final)
            assert log[-1] == f"failed: {TIME_LIMIT_ERROR}", log
            assert [m for m in log if m.startswith("started on ")] == [f"started on {final.worker} (attempt 1)"]
            assert any(m.startswith("benchmarking v1 (onnx)") for m in log), log
            assert final.attempts == 1 and final.progress < 100 and not final.result
            version.refresh_from_db()
            assert version.benchmark == {}, "the benchmark finished: the soft limit did not interrupt it"

            # The soft limit (not the hard one) acted, the task returned, and its message was acknowledged.
            [task_id] = worker.output.wait_for(rf"Task {re.escape(TASK)}\[([0-9a-f-]+)\] succeeded in", 10).groups()
            soft = rf"Soft time limit \({SOFT_LIMIT}s\) exceeded for {re.escape(TASK)}\[{task_id}\]"
            worker.output.wait_for(soft, 5)
            wait_until(
                lambda: broker.hlen("unacked") == 0 and broker.llen(QUEUE) == 0,
                timeout=10,
                what="the job's message to be acknowledged",
            )

            # 4. No benchmark process is left anywhere, and the worker's group is what it was: same main process,
            #    same pool process.
            wait_until(
                lambda: not alive(child) and benchmark_processes(worker.pid, str(artifact_dir)) == [],
                timeout=5,
                what="the benchmark child to be gone",
            )
            assert set(group_members(worker.pid)) == processes
            assert worker.process.poll() is None

            # 5. The worker is free: the next task runs at once, on the same worker, in the same pool process.
            #    (The worker wrote its heartbeat row once when it became ready; the task must write it again.)
            ready_at = WorkerHeartbeat.objects.get(worker=final.worker).last_seen
            sent = worker_heartbeat.delay()
            wait_until(
                lambda: WorkerHeartbeat.objects.filter(worker=final.worker, last_seen__gt=ready_at).exists(),
                timeout=15,
                what="the worker to run the next task",
            )
            freed_in = time.monotonic() - ended_at
            worker.output.wait_for(rf"Task {re.escape(worker_heartbeat.name)}\[{sent.id}\] succeeded in", 5)

        assert set(group_members(worker.pid)) == processes, "the worker restarted or replaced its pool process"
        assert worker.process.poll() is None and alive(worker.pid)
        problems = [
            line
            for line in worker.output.lines
            if re.search(r"Hard time limit|WorkerLostError|exited with|Restarting|Traceback", line)
        ]
        assert problems == [], problems
        print(
            f"\ntime limit: the benchmark job failed {ran_for:.1f} s after it started (soft limit {SOFT_LIMIT} s); "
            f"the next task ran {freed_in:.2f} s later on the same pool process; {time.monotonic() - started:.1f} s "
            "in all"
        )
    except BaseException:
        print(worker.dump())
        raise
    finally:
        worker.kill()
        broker.flushdb()
        broker.close()

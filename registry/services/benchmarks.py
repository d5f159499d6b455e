"""Benchmarks as jobs: measure a ready ONNX or TFLite version in a child process and keep the numbers on it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.errors import ApplicationError
from registry.choices import JobKind, VersionStatus
from registry.models import Job, ModelVersion
from registry.selectors import version_archived_reason, version_not_servable_reason
from registry.services.jobs import JobOutcome, job_create, job_progress
from registry.storage import artifact_local_path
from teams.permissions import Actor

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # registry/services/ -> the repository root
BENCHMARK_TIMEOUT_SECONDS = 600


def version_benchmark_request(*, actor: Actor, version: ModelVersion) -> Job:
    """Queue a benchmark of a ready, servable, unarchived version."""
    archived = version_archived_reason(version)
    if archived:
        raise ApplicationError("archived", archived, status=409)
    if version.status != VersionStatus.READY:
        raise ApplicationError(
            "version_not_ready", f"Version {version.number} is {version.status}; only ready versions run.", status=409
        )
    reason = version_not_servable_reason(version)
    if reason:
        raise ApplicationError("not_servable", f"Only what ModelDeck serves is benchmarked: {reason}", status=422)
    return job_create(actor=actor, version=version, kind=JobKind.BENCHMARK, params={})


def benchmark_job_run(job: Job) -> JobOutcome:
    """Benchmark the job's version in a child process (its peak memory is the model's) and store the result."""
    version = job.version
    job_progress(job, 5, f"benchmarking v{version.number} ({version.format}) at batch sizes 1, 8 and 32")
    with artifact_local_path(version.artifact_key) as path:
        # Fixed argv: our interpreter and module; the format is a choice value and the path one we made.
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "registry.benchmark", version.format, str(path)],
            cwd=str(PROJECT_ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stdout, stderr = process.communicate(
                json.dumps(version.signature).encode(), timeout=BENCHMARK_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ApplicationError("benchmark_timeout", "The benchmark ran past its time limit.") from None
        except BaseException:
            # The job's soft time limit or a cancel interrupts the wait: never leave the child running.
            process.kill()
            process.communicate()
            raise
    if process.returncode != 0:
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ApplicationError("benchmark_failed", f"The benchmark process failed: {last[0][:300]}")
    result: dict[str, Any] = json.loads(stdout)
    result["host"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
    ModelVersion.objects.filter(pk=version.pk).update(benchmark=result)
    job_progress(job, 95, f"batch 1 p50 {result['batches'][0]['p50_ms']} ms")
    return result, None


def auto_benchmark(version: ModelVersion) -> Job | None:
    """Benchmark every new servable version, so versions can be compared side by side without a click."""
    if version.status != VersionStatus.READY or version_not_servable_reason(version):
        return None
    # Once per version: a redelivered inspection or conversion must not queue it again.
    if Job.objects.filter(version=version, kind=JobKind.BENCHMARK).exists():
        return None
    return job_create(actor=None, version=version, kind=JobKind.BENCHMARK, params={})

"""Prometheus at /metrics: bulk-added windows equal single observations, several processes sum, the scrape token.

Where the numbers live: the settings set PROMETHEUS_MULTIPROC_DIR before prometheus_client is first imported (at
pytest start-up, when pytest-django loads them), and every process of the suite writes its own files there. Tests
can neither move that folder afterwards nor empty it: prometheus_client keeps each file open (mmap) and each
value in memory for the life of the process, so deleted files would go on being written unseen, and another
test run may share the folder. So no test depends on what others left there: scrapes of /metrics are read under
label values of the test's own (a fresh endpoint name or job kind), and counts under shared label values (a real
job kind, the "onnx" format) are the difference of two readings of this process's own files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client import CollectorRegistry, Histogram, generate_latest, multiprocess, values
from prometheus_client.parser import text_string_to_metric_families

from monitoring.prometheus import inference_add, jobs_count
from monitoring.recorder import BATCH_BOUNDS, LATENCY_BOUNDS, Recorder
from registry.choices import JobKind, JobStatus
from registry.formats.onnx import OnnxFormat
from registry.models import ModelVersion
from registry.services.jobs import JobCancelled, job_create, job_run
from registry.services.versions import Upload, model_version_create, registered_model_create
from registry.storage import artifact_put, file_sha256
from serving.runtime_cache import RuntimeCache, VersionKey
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.model_files import onnx_file
from tests.teams.factories import create_membership

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
REPO = Path(__file__).resolve().parents[2]

# (status, seconds, rows) per request; on the bounds, between them and past the last one (+Inf).
PRIMARY = [(200, 0.0003, 1), (200, 0.004, 8), (200, 0.004, 3), (500, 0.2, 1), (200, 12.0, 2000), (200, 0.0001, 1)]
CANARY = [(200, 0.0001, 1), (404, 0.03, 4), (200, 1.0, 1024)]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def own_samples() -> Samples:
    """What this process alone has written: the same merge /metrics does, over this process's files only.

    For label values another test run sharing the folder may be adding to at the same time (a real job kind, the
    "onnx" format), so the difference of two readings counts this test's work and nothing else.
    """
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics = multiprocess.MultiProcessCollector.merge([str(p) for p in folder.glob(f"*_{os.getpid()}.db")])
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value for metric in metrics for sample in metric.samples
    }


@pytest.fixture
def scrape(client: Client) -> Callable[[], Samples]:
    def get() -> Samples:
        response = client.get("/metrics")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        return parse(response.content.decode())

    return get


def window_of(endpoint: str, requests: dict[tuple[int, str], list[tuple[int, float, int]]]) -> Recorder:
    recorder = Recorder()
    for (version, role), rows in requests.items():
        for status, seconds, n in rows:
            recorder.record(endpoint, version, role, status, seconds, n)
    return recorder


@contextmanager
def single_process_values() -> Iterator[None]:
    """Build metrics whose values stay in this process: a reference that must not reach the multiprocess folder."""
    saved = values.ValueClass
    values.ValueClass = values.MutexValue
    try:
        yield
    finally:
        values.ValueClass = saved


def observed_one_by_one(name: str, bounds: tuple[float, ...], observations: list[float]) -> Samples:
    with single_process_values():
        registry = CollectorRegistry()
        histogram = Histogram(name, "reference", ["endpoint", "version"], buckets=bounds, registry=registry)
        child = histogram.labels("ref", "1")
        for value in observations:
            child.observe(value)
    return parse(generate_latest(registry).decode())


def histogram_of(samples: Samples, name: str, **pairs: str) -> dict[tuple[str, str], float]:
    """The _bucket (by le), _count and _sum samples of one histogram child, without its own labels."""
    wanted = set(pairs.items())
    found = {}
    for (sample, sample_labels), value in samples.items():
        if sample in {f"{name}_bucket", f"{name}_count", f"{name}_sum"} and wanted <= sample_labels:
            found[(sample.removeprefix(name), dict(sample_labels).get("le", ""))] = value
    return found


def test_a_window_is_exposed_exactly_as_single_observations_would_be(scrape) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    # Version 1 reaches the window under two roles (e.g. primary, then a shadow copy): one series in Prometheus.
    recorder = window_of(endpoint, {(1, "primary"): PRIMARY[:4], (1, "shadow"): PRIMARY[4:], (2, "canary"): CANARY})
    inference_add(recorder.swap_by_protocol())
    samples = scrape()

    requests = "modeldeck_inference_requests_total"
    assert samples[(requests, labels(endpoint=endpoint, version="1", code="200", protocol="http"))] == 5
    assert samples[(requests, labels(endpoint=endpoint, version="1", code="500", protocol="http"))] == 1
    assert samples[(requests, labels(endpoint=endpoint, version="2", code="200", protocol="http"))] == 2
    assert samples[(requests, labels(endpoint=endpoint, version="2", code="404", protocol="http"))] == 1
    assert {key for key in samples if key[0] == requests and ("endpoint", endpoint) in key[1]} == {
        (requests, labels(endpoint=endpoint, version=v, code=c, protocol="http"))
        for v, c in [("1", "200"), ("1", "500"), ("2", "200"), ("2", "404")]
    }

    duration = histogram_of(samples, "modeldeck_inference_duration_seconds", endpoint=endpoint, version="1")
    # Cumulative in the exposition: 0.0001 (1), 0.0003 (2), 0.004 x2 (4), 0.2 (5), 12.0 only in +Inf (6).
    assert duration[("_bucket", "0.0001")] == 1
    assert duration[("_bucket", "0.0005")] == 2
    assert duration[("_bucket", "0.005")] == 4
    assert duration[("_bucket", "0.25")] == 5
    assert duration[("_bucket", "10.0")] == 5
    assert duration[("_bucket", "+Inf")] == duration[("_count", "")] == 6
    assert duration[("_sum", "")] == pytest.approx(0.0003 + 0.004 + 0.004 + 0.2 + 12.0 + 0.0001)
    batch = histogram_of(samples, "modeldeck_batch_size", endpoint=endpoint, version="2")
    assert batch[("_bucket", "1.0")] == 1
    assert batch[("_bucket", "4.0")] == 2
    assert batch[("_bucket", "1024.0")] == batch[("_bucket", "+Inf")] == batch[("_count", "")] == 3
    assert batch[("_sum", "")] == 1 + 4 + 1024

    for version, requests_of in (("1", PRIMARY), ("2", CANARY)):
        for name, bounds, column in (
            ("modeldeck_inference_duration_seconds", LATENCY_BOUNDS, 1),
            ("modeldeck_batch_size", BATCH_BOUNDS, 2),
        ):
            reference = observed_one_by_one(f"reference_{name}", bounds, [r[column] for r in requests_of])
            exposed = histogram_of(samples, name, endpoint=endpoint, version=version)
            expected = histogram_of(reference, f"reference_{name}")
            # The sum is compared approximately: merging two roles' series adds the same floats in another order.
            assert exposed.pop(("_sum", "")) == pytest.approx(expected.pop(("_sum", "")))
            assert exposed == expected
            assert len(exposed) == len(bounds) + 2  # every bucket, +Inf and the count


def test_protocols_are_separate_series(scrape) -> None:
    endpoint = f"ep-{uuid.uuid4().hex[:8]}"
    recorder = Recorder()
    recorder.record(endpoint, 1, "primary", 200, 0.002, 4)
    recorder.record(endpoint, 1, "primary", 200, 0.002, 4, protocol="grpc")
    recorder.record(endpoint, 1, "primary", 400, 0.001, 0, protocol="grpc")
    inference_add(recorder.swap_by_protocol())
    samples = scrape()

    requests = "modeldeck_inference_requests_total"
    assert {
        key: value for key, value in samples.items() if key[0] == requests and ("endpoint", endpoint) in key[1]
    } == {
        (requests, labels(endpoint=endpoint, version="1", code="200", protocol="http")): 1,
        (requests, labels(endpoint=endpoint, version="1", code="200", protocol="grpc")): 1,
        (requests, labels(endpoint=endpoint, version="1", code="400", protocol="grpc")): 1,
    }
    grpc = histogram_of(samples, "modeldeck_inference_duration_seconds", endpoint=endpoint, protocol="grpc")
    assert grpc[("_count", "")] == 2
    http = histogram_of(samples, "modeldeck_batch_size", endpoint=endpoint, protocol="http")
    assert (http[("_count", "")], http[("_sum", "")]) == (1, 4)


CHILD = textwrap.dedent(
    """
    import sys
    from monitoring.prometheus import inference_add, jobs_count
    from monitoring.recorder import Recorder

    endpoint, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    recorder = Recorder()
    for _ in range(n):
        recorder.record(endpoint, 1, "primary", 200, 0.002, 4)
    recorder.record(endpoint, 1, "primary", 503, 0.5, 1)
    inference_add(recorder.swap_by_protocol())
    for _ in range(n):
        jobs_count(kind=kind, status="succeeded")
    """
)


def test_several_processes_are_summed_exactly(scrape) -> None:
    endpoint, kind = f"ep-{uuid.uuid4().hex[:8]}", f"kind-{uuid.uuid4().hex[:8]}"
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"]  # the children write there too (inherited)
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, endpoint, kind, str(n)], cwd=REPO, env=os.environ.copy())
        for n in (3, 7)
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0]
    # And this process adds its own share alongside theirs.
    inference_add(window_of(endpoint, {(1, "primary"): [(200, 0.002, 4)]}).swap_by_protocol())
    samples = scrape()

    assert (
        samples[
            ("modeldeck_inference_requests_total", labels(endpoint=endpoint, version="1", code="200", protocol="http"))
        ]
        == 11
    )
    assert (
        samples[
            ("modeldeck_inference_requests_total", labels(endpoint=endpoint, version="1", code="503", protocol="http"))
        ]
        == 2
    )
    duration = histogram_of(samples, "modeldeck_inference_duration_seconds", endpoint=endpoint, version="1")
    assert duration[("_bucket", "0.0025")] == 11
    assert duration[("_bucket", "0.5")] == duration[("_count", "")] == 13
    assert duration[("_sum", "")] == pytest.approx(11 * 0.002 + 2 * 0.5)
    batch = histogram_of(samples, "modeldeck_batch_size", endpoint=endpoint, version="1")
    assert (batch[("_bucket", "1.0")], batch[("_bucket", "4.0")], batch[("_sum", "")]) == (2, 13, 11 * 4 + 2)
    assert samples[("modeldeck_jobs_total", labels(kind=kind, status="succeeded"))] == 10


def test_the_scrape_token_guards_metrics(client: Client, settings) -> None:
    settings.MODELDECK_METRICS_TOKEN = "s3cret"
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing["Content-Type"].startswith("text/plain")
    assert b"scrape token" in missing.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="s3cret").status_code == 401
    jobs_count(kind="token-check", status="succeeded")
    right = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert right.status_code == 200
    assert b'modeldeck_jobs_total{kind="token-check",status="succeeded"}' in right.content
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 405


def test_metrics_are_open_without_a_token(client: Client, settings) -> None:
    settings.MODELDECK_METRICS_TOKEN = ""
    jobs_count(kind="open-check", status="failed")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert b'modeldeck_jobs_total{kind="open-check",status="failed"}' in response.content


@pytest.fixture
def version(db, artifact_dir, tmp_path, monkeypatch) -> ModelVersion:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    membership = create_membership(role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="m")
    path = onnx_file(tmp_path / "m.onnx")
    upload = Upload(path, "m.onnx", file_sha256(path), path.stat().st_size)
    return model_version_create(actor=actor, model=model, upload=upload)


def _succeed(job):
    return {}, None


def _cancel(job):
    raise JobCancelled


def _fail(job):
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("handler", "status"),
    [(_succeed, JobStatus.SUCCEEDED), (_cancel, JobStatus.CANCELLED), (_fail, JobStatus.FAILED)],
)
def test_a_finished_job_is_counted_once(version, django_capture_on_commit_callbacks, handler, status) -> None:
    key = ("modeldeck_jobs_total", labels(kind=JobKind.BENCHMARK.value, status=status.value))
    before = own_samples().get(key, 0.0)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(actor=Actor(user=version.created_by), version=version, kind=JobKind.BENCHMARK, params={})
    job_run(job.pk, "w1", {JobKind.BENCHMARK: handler})
    job_run(job.pk, "w2", {JobKind.BENCHMARK: handler})  # a redelivered message finishes nothing twice
    job.refresh_from_db()
    assert job.status == status
    assert own_samples()[key] == before + 1


def test_a_metrics_failure_never_fails_the_job(version, django_capture_on_commit_callbacks, monkeypatch) -> None:
    def broken(*labelvalues: str) -> None:
        raise OSError("no space left for the metrics file")

    monkeypatch.setattr("monitoring.prometheus.JOBS.labels", broken)
    with django_capture_on_commit_callbacks(execute=True):
        job = job_create(actor=Actor(user=version.created_by), version=version, kind=JobKind.BENCHMARK, params={})
    job_run(job.pk, "w1", {JobKind.BENCHMARK: _succeed})
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_a_model_load_is_observed_by_format(artifact_dir, tmp_path) -> None:
    path = onnx_file(tmp_path / "m.onnx")
    artifact, _ = artifact_put(path=path, sha256=file_sha256(path))
    key = VersionKey(
        id=10**9,
        number=1,
        format="onnx",
        artifact_key=artifact,
        size=path.stat().st_size,
        signature=OnnxFormat().inspect(path).signature,
    )
    count = ("modeldeck_model_load_seconds_count", labels(format="onnx"))
    total = ("modeldeck_model_load_seconds_sum", labels(format="onnx"))
    before = own_samples()
    loaded = RuntimeCache(budget_bytes=2**30).load(key)
    after = own_samples()
    assert after[count] - before.get(count, 0.0) == 1
    assert after[total] - before.get(total, 0.0) == pytest.approx(loaded.load_seconds)

"""Input drift: PSI per feature against the sample input, sampled on the data plane."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from deployments.services import endpoint_create
from monitoring.drift import BINS, MAX_FEATURES, DriftMonitor, DriftReference, _bin_counts, drift_monitor, psi
from registry.services.versions import Upload, model_version_create, registered_model_create
from serving.router import router_get, router_reset
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.model_files import onnx_file


def sample(rows: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(rows, 4)).astype(np.float32)
    x[:, 2] += shift
    return {"x": x}


def test_same_distribution_is_stable_and_a_shifted_feature_is_flagged_alone() -> None:
    reference = DriftReference.from_sample(sample(2000, seed=1))
    assert reference is not None
    assert [f.name for f in reference.features] == ["x[0]", "x[1]", "x[2]", "x[3]"]
    assert reference.edges.shape == (4, BINS - 1) and reference.expected.shape == (4, BINS)
    np.testing.assert_allclose(reference.expected.sum(axis=1), 1.0, atol=1e-3)

    monitor = DriftMonitor(sample_rate=1.0)
    for batch in np.split(sample(2000, seed=2)["x"], 20):
        monitor.observe("iris", 1, reference, {"x": batch})
    rows, stable = monitor.take()[("iris", 1)]
    assert rows == 2000
    assert max(stable.values()) < 0.05

    for batch in np.split(sample(2000, seed=3, shift=1.5)["x"], 20):
        monitor.observe("iris", 1, reference, {"x": batch})
    _, shifted = monitor.take()[("iris", 1)]
    assert shifted["x[2]"] > 0.25
    assert max(v for k, v in shifted.items() if k != "x[2]") < 0.05
    assert monitor.take() == {}  # a window without traffic reports nothing


def test_psi_matches_its_formula() -> None:
    expected = np.full((1, BINS), 1 / BINS)
    counts = np.array([[20, 10, 10, 10, 10, 10, 10, 10, 5, 5]])
    actual = counts / counts.sum()
    assert psi(expected, counts)[0] == pytest.approx(float(((actual - expected) * np.log(actual / expected)).sum()))


def test_sampling_rate_none_and_references_without_numbers() -> None:
    reference = DriftReference.from_sample(sample(100, seed=1))
    silent = DriftMonitor(sample_rate=0.0)
    silent.observe("iris", 1, reference, sample(10, seed=2))
    assert silent.take() == {}
    assert DriftReference.from_sample({"text": np.array([b"a", b"b"], dtype=object)}) is None
    constant = DriftReference.from_sample({"x": np.ones((50, 2), dtype=np.float32)})
    assert constant is not None
    monitor = DriftMonitor(sample_rate=1.0)
    monitor.observe("iris", 1, constant, {"x": np.ones((5, 2), dtype=np.float32)})
    assert monitor.take()[("iris", 1)] == (5, {"x[0]": 0.0, "x[1]": 0.0})


@pytest.mark.django_db(transaction=True)
async def test_the_data_plane_follows_drift_against_the_uploaded_sample(
    make_member, team_a, artifact_dir, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr("registry.tasks.job_run_task.delay", lambda job_id: None)
    member = await sync_to_async(make_member)(team=team_a, role=Role.DEVELOPER, username="dev")
    model_path = onnx_file(tmp_path / "m.onnx", seed=1)
    sample_path = tmp_path / "sample.json"
    sample_path.write_text(json.dumps({"x": sample(500, seed=1)["x"].tolist()}))

    def deploy() -> None:
        actor = Actor(user=member.user)
        model = registered_model_create(actor=actor, team=team_a, name="iris")

        def upload(path: Path) -> Upload:
            return Upload(path, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)

        version = model_version_create(actor=actor, model=model, upload=upload(model_path), sample=upload(sample_path))
        endpoint_create(actor=actor, model=model, name="iris", version=version)

    await sync_to_async(deploy)()
    router_reset()
    from config.asgi import application  # (its front door sets the sampling rate from settings when built)

    monkeypatch.setattr(drift_monitor, "sample_rate", 1.0)
    drift_monitor.take()

    headers = {"Authorization": f"Bearer {member.token}"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://t") as client:
            shifted = sample(400, seed=7, shift=2.0)["x"]
            for batch in np.split(shifted, 20):
                body = {"inputs": [{"name": "x", "shape": [20, 4], "datatype": "FP32", "data": batch.ravel().tolist()}]}
                assert (await client.post("/v2/models/iris/infer", json=body, headers=headers)).status_code == 200
        assert router_get().state.routes["iris"].primary.drift is not None
        rows, values = drift_monitor.take()[("iris", 1)]
        assert rows == 400
        assert values["x[2]"] > 0.25 and values["x[0]"] < 0.1
    finally:
        router_reset()
        await sync_to_async(connections.close_all, thread_sensitive=True)()


def test_bin_counts_are_each_features_values_per_bin() -> None:
    rng = np.random.default_rng(5)
    columns = rng.normal(size=(3, 50))
    columns[1, :5] = np.nan  # NaN compares false against every edge: the lowest bin
    edges = np.sort(rng.normal(size=(3, BINS - 1)), axis=1)
    columns[2, :3] = edges[2, 4]  # a value on an edge goes to the bin above it
    expected = np.zeros((3, BINS), dtype=np.int64)
    for feature in range(3):
        for value in columns[feature]:
            expected[feature, int(np.sum(value >= edges[feature]))] += 1
    counts = _bin_counts(columns, edges)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, expected)


def test_a_requests_features_are_its_followed_columns_in_feature_order() -> None:
    rng = np.random.default_rng(6)
    sample_inputs = {
        "a": rng.normal(size=(20, 3)).astype(np.float32),
        "label": np.array(["x"] * 20, dtype=object),  # not numeric: not followed
        "b": rng.normal(size=(20, 2, 2)),
        "c": rng.integers(0, 5, size=20),
    }
    reference = DriftReference.from_sample(sample_inputs)
    assert reference is not None
    assert [f.name for f in reference.features] == ["a[0]", "a[1]", "a[2]", "b[0]", "b[1]", "b[2]", "b[3]", "c"]
    request = {name: array[:4] for name, array in sample_inputs.items()}
    by_feature = [request[f.input].reshape(4, -1)[:, f.column].astype(np.float64) for f in reference.features]
    columns = reference.columns(request)
    assert columns is not None and columns.dtype == np.float64
    np.testing.assert_array_equal(columns, np.stack(by_feature))
    assert reference.columns({"a": request["a"], "b": request["b"]}) is None  # an input missing


def test_features_stop_at_the_limit_within_an_input() -> None:
    wide = {"x": np.random.default_rng(7).normal(size=(10, MAX_FEATURES + 6))}
    reference = DriftReference.from_sample(wide)
    assert reference is not None and len(reference.features) == MAX_FEATURES
    columns = reference.columns({"x": wide["x"][:3]})
    assert columns is not None
    np.testing.assert_array_equal(columns, wide["x"][:3, :MAX_FEATURES].T)

"""Every accepted format through the API: upload, inspection (inline or in the worker), signature, download."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from registry.models import ModelVersion
from registry.services.versions import model_version_inspect
from teams.choices import Role
from tests.registry import model_files

pytestmark = pytest.mark.django_db

X = {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
KERAS_OUT = [{"name": "output_0", "datatype": "FP32", "shape": [-1, 3]}]

CASES: list[tuple[str, Callable[[Path], Path], str, dict]] = [
    (
        "iris.onnx",
        model_files.onnx_file,
        "onnx",
        {"inputs": [X], "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}]},
    ),
    (
        "iris.tflite",
        model_files.tflite_file,
        "tflite",
        {"inputs": [X], "outputs": KERAS_OUT},
    ),
    ("iris.keras", model_files.keras_file, "keras", {"inputs": [X], "outputs": KERAS_OUT}),
    ("iris.h5", model_files.keras_h5_file, "keras", {"inputs": [X], "outputs": KERAS_OUT}),
    ("iris.zip", model_files.savedmodel_zip, "savedmodel", {"inputs": [X], "outputs": KERAS_OUT}),
    (
        "iris.skops",
        model_files.skops_file,
        "sklearn",
        {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
            ],
        },
    ),
]


@pytest.mark.parametrize(("filename", "build", "fmt", "signature"), CASES, ids=[c[0] for c in CASES])
def test_format_round_trip(filename, build, fmt, signature, make_member, team_a, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    client = make_member(team=team_a, role=Role.DEVELOPER).token_client()
    assert client.post("/api/v1/models", {"team": "alpha", "name": "iris"}, format="json").status_code == 201
    path = build(tmp_path / filename)
    file = io.BytesIO(path.read_bytes())
    file.name = filename
    created = client.post("/api/v1/models/alpha/iris/versions", {"file": file}, format="multipart")
    assert created.status_code == 201, created.json()
    assert created.json()["format"] == fmt
    if created.json()["status"] == "processing":
        model_version_inspect(version_id=ModelVersion.objects.get().pk)  # what the worker does
    detail = client.get("/api/v1/models/alpha/iris/versions/1").json()
    assert detail["status"] == "ready", detail["status_message"]
    assert detail["signature"] == signature
    download = client.get("/api/v1/models/alpha/iris/versions/1/artifact")
    assert b"".join(download.streaming_content) == path.read_bytes()

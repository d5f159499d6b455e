"""Every zoo model through the whole path: upload, automatic conversion, parity, deploy, predict over every protocol.

The answers must be the framework's own (recorded when the model was built), over the Open Inference Protocol with
JSON tensors and with tritonclient's binary tensors, TF Serving REST and MLflow scoring, served by a real uvicorn
running ModelDeck's data plane. A model ModelDeck cannot serve must be refused with the message the zoo expects.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import httpx
import numpy as np
import pytest

from registry.choices import JobKind, JobStatus, VersionStatus
from registry.models import Job, ModelVersion
from registry.services.jobs import job_run
from registry.tasks import JOB_HANDLERS, model_version_inspect_task
from runtimes.tensors import NUMPY_TO_DATATYPE
from teams.choices import Role
from tests.asgi_server import asgi_server
from tests.conftest import Member
from tests.zoo import keras_models, onnx_models, sklearn_models, tensorflow_models, tf2onnx_models, torch_models
from tests.zoo.catalog import Built, ZooModel, built

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("artifact_dir")]

ZOO: list[ZooModel] = [
    *keras_models.MODELS,
    *tensorflow_models.MODELS,
    *sklearn_models.MODELS,
    *onnx_models.MODELS,
    *tf2onnx_models.MODELS,
    *torch_models.MODELS,
]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Jobs the platform queues (run here, in order, instead of by a worker)."""
    sent: list[int] = []
    monkeypatch.setattr("registry.tasks.job_run_task.delay", sent.append)
    monkeypatch.setattr("registry.tasks.model_version_inspect_task.delay", lambda version_id: None)
    return sent


@pytest.fixture
def developer(make_member: Any, team_a: Any) -> Member:
    member: Member = make_member(team=team_a, role=Role.DEVELOPER, username="dev")
    return member


def _upload(member: Member, model: ZooModel, data: Built, sample: dict[str, Any] | None = None) -> dict[str, Any]:
    client = member.token_client()
    assert client.post("/api/v1/models", {"team": "alpha", "name": "zoo"}, format="json").status_code == 201
    file = io.BytesIO(data.path.read_bytes())
    file.name = model.filename
    fields: dict[str, Any] = {"file": file}
    if sample is not None:
        fields["sample"] = io.BytesIO(json.dumps(sample).encode())
        fields["sample"].name = "sample.json"
    response = client.post("/api/v1/models/alpha/zoo/versions", fields, format="multipart")
    return {**response.json(), "http_status": response.status_code}


def _run_jobs(queued: list[int]) -> None:
    """Run conversion jobs (and those they queue); benchmarks are left queued: they time, they do not convert."""
    while queued:
        job_id = queued.pop(0)
        if Job.objects.get(pk=job_id).kind == JobKind.CONVERT:
            job_run(job_id, "zoo-worker", JOB_HANDLERS)


@pytest.mark.parametrize("model", ZOO, ids=[m.name for m in ZOO])
def test_the_zoo_model_is_served_with_the_frameworks_own_answers(
    model: ZooModel, developer: Member, queued: list[int]
) -> None:
    data = built(model)
    created = _upload(developer, model, data)
    upload = None
    if created["http_status"] == 201:
        upload = ModelVersion.objects.get(number=1)
        if upload.status == VersionStatus.PROCESSING:
            model_version_inspect_task(upload.pk)  # what the worker does with a Keras, SavedModel or skops file
            upload.refresh_from_db()
    if model.refused:
        message = upload.status_message if upload is not None else created["error"]["message"]
        assert upload is None or upload.status == VersionStatus.FAILED, "expected a refusal"
        assert model.refused in message, message
        return
    assert upload is not None, created
    assert upload.status == VersionStatus.READY, upload.status_message
    _run_jobs(queued)

    failed = {
        job.params["target"]: job.error
        for job in Job.objects.filter(kind=JobKind.CONVERT).exclude(status=JobStatus.SUCCEEDED)
    }
    assert sorted(failed) == sorted(target for target, _ in model.failed_conversions), failed
    for target, message in model.failed_conversions:
        assert message in failed[target], failed[target]
    served = [
        v
        for v in ModelVersion.objects.order_by("number")
        if v.format in ("onnx", "tflite") and not v.metadata.get("serving_rewrite")
    ]
    assert sorted(v.format for v in served) == sorted(model.served)
    for version in served:
        if version.parent is not None:
            assert version.parity["passed"] is True, version.parity["reason"]
            assert version.parity["signature"]["kept"] is True, version.parity["signature"]["summary"]
        assert version.signature["inputs"] == [
            {"name": name, "datatype": _datatype(array), "shape": spec_shape}
            for name, array, spec_shape in _expected_input_specs(version, data)
        ]

    client = developer.token_client()
    with asgi_server() as url:
        for version in served:
            endpoint = f"{model.name[:50]}-v{version.number}"
            response = client.post(
                "/api/v1/endpoints",
                {"name": endpoint, "model": "alpha/zoo", "version": version.number},
                format="json",
            )
            assert response.status_code == 201, response.json()
            drift = 0.0
            for protocol in model.protocols:
                answer = PROTOCOLS[protocol](url, endpoint, developer.token, data.inputs, list(data.outputs))
                drift = max(drift, _assert_same(model, version, protocol, answer, data.outputs))
            _report(model, version, drift)


def _report(model: ZooModel, version: ModelVersion, drift: float) -> None:
    """Append what the zoo measured to $MODELDECK_ZOO_REPORT (JSON lines), for the README's table of models."""
    target = os.environ.get("MODELDECK_ZOO_REPORT")
    if not target:
        return
    parity = version.parity or {}
    diffs = [o["max_abs_diff"] for o in parity.get("outputs", []) if o.get("max_abs_diff") is not None]
    row = {
        "model": model.name,
        "framework": model.framework,
        "recipe": model.recipe,
        "version": version.number,
        "format": version.format,
        "recipe_key": version.recipe_key,
        "parity_max_abs_diff": max(diffs) if diffs else None,
        "max_abs_diff_vs_framework": drift,
        "failed_conversions": [target for target, _ in model.failed_conversions],
        "notes": model.notes,
    }
    with open(target, "a") as out:
        out.write(json.dumps(row) + "\n")


def _datatype(array: np.ndarray) -> str:
    return NUMPY_TO_DATATYPE[np.asarray(array).dtype.name]


def _expected_input_specs(version: ModelVersion, data: Built) -> list[tuple[str, np.ndarray, list[int]]]:
    """The version's own input order and shapes, checked to name exactly the inputs the framework took."""
    specs = version.signature["inputs"]
    assert sorted(spec["name"] for spec in specs) == sorted(data.inputs)
    return [(spec["name"], data.inputs[spec["name"]], spec["shape"]) for spec in specs]


def _assert_same(
    model: ZooModel, version: ModelVersion, protocol: str, answer: dict[str, np.ndarray], expected: dict[str, Any]
) -> float:
    """Check every output against the framework's; return the largest absolute difference of the float ones."""
    where = f"{model.name} v{version.number} ({version.format}) over {protocol}"
    assert sorted(answer) == sorted(expected), where
    drift = 0.0
    for name, want in expected.items():
        got = np.asarray(answer[name])
        want = np.asarray(want)
        assert got.shape == want.shape, f"{where}: output {name} has shape {got.shape}, expected {want.shape}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got.astype(np.float64), want, atol=model.atol, rtol=model.rtol, err_msg=where)
            drift = max(drift, float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0)))
        elif want.dtype.kind in "OUS":
            assert [str(v) for v in got.ravel()] == [str(v) for v in want.ravel()], where
        else:
            np.testing.assert_array_equal(got, want, err_msg=where)
    return drift


# --- the four protocols, each spoken as its usual client does -------------------------------------------------------


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _json_data(array: np.ndarray) -> list[Any]:
    array = np.asarray(array)
    if array.dtype == object:
        return [str(v) for v in array.ravel()]
    return array.ravel().tolist()


def _decoded(data: list[Any], shape: list[int], datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array(data, dtype=object).reshape(shape)
    from runtimes.tensors import DATATYPE_TO_NUMPY

    return np.asarray(data, dtype=DATATYPE_TO_NUMPY[datatype]).reshape(shape)


def v2_json(url: str, endpoint: str, token: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, Any]:
    body = {
        "inputs": [
            {"name": name, "shape": list(array.shape), "datatype": _datatype(array), "data": _json_data(array)}
            for name, array in inputs.items()
        ]
    }
    response = httpx.post(f"{url}/v2/models/{endpoint}/infer", json=body, headers=_auth(token), timeout=30)
    assert response.status_code == 200, response.text
    return {o["name"]: _decoded(o["data"], o["shape"], o["datatype"]) for o in response.json()["outputs"]}


def v2_binary(url: str, endpoint: str, token: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, Any]:
    """tritonclient.http with its defaults: binary input tensors; outputs asked for as binary too."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url.removeprefix("http://"))
    tensors = []
    for name, array in inputs.items():
        tensor = triton.InferInput(name, list(array.shape), _datatype(array))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    requested = [triton.InferRequestedOutput(name, binary_data=True) for name in outputs]
    try:
        result = client.infer(endpoint, tensors, outputs=requested, headers=_auth(token))
    finally:
        client.close()
    return {name: _text(result.as_numpy(name)) for name in outputs}


def _text(array: np.ndarray) -> np.ndarray:
    # tritonclient returns BYTES as bytes objects; the framework's labels are str.
    if array.dtype == object:
        return np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else v, otypes=[object])(array)
    return array


def tfserving(url: str, endpoint: str, token: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, Any]:
    """The row format ("instances") that TF Serving's REST guide and Vertex AI clients send."""
    if len(inputs) == 1:
        instances: list[Any] = _json_rows(next(iter(inputs.values())))
    else:
        rows = {name: _json_rows(array) for name, array in inputs.items()}
        instances = [{name: rows[name][i] for name in inputs} for i in range(len(next(iter(rows.values()))))]
    response = httpx.post(
        f"{url}/v1/models/{endpoint}:predict", json={"instances": instances}, headers=_auth(token), timeout=30
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    if len(outputs) == 1:
        return {outputs[0]: np.array(predictions, dtype=object if _strings(predictions) else None)}
    return {name: np.array([row[name] for row in predictions]) for name in outputs}


def mlflow(url: str, endpoint: str, token: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, Any]:
    """MLflow 2's tensor input ("inputs": {name: nested list}) as `mlflow models serve` clients send it."""
    body = {"inputs": {name: _json_rows(array) for name, array in inputs.items()}}
    response = httpx.post(f"{url}/mlflow/{endpoint}/invocations", json=body, headers=_auth(token), timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    if len(outputs) == 1:
        return {outputs[0]: np.array(predictions, dtype=object if _strings(predictions) else None)}
    return {
        name: np.array(predictions[name], dtype=object if _strings(predictions[name]) else None) for name in outputs
    }


def mlflow_dataframe(
    url: str, endpoint: str, token: str, inputs: dict[str, np.ndarray], outputs: list[str]
) -> dict[str, Any]:
    """A pandas DataFrame as `requests.post(json={"dataframe_split": df.to_dict(orient="split")})` sends it."""
    columns = list(inputs)
    cells = {name: _json_rows(np.asarray(array).reshape(len(array), -1)[:, 0]) for name, array in inputs.items()}
    rows = [[cells[name][i] for name in columns] for i in range(len(cells[columns[0]]))]
    body = {"dataframe_split": {"columns": columns, "data": rows}}
    response = httpx.post(f"{url}/mlflow/{endpoint}/invocations", json=body, headers=_auth(token), timeout=30)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    return {name: np.array(predictions[name]) for name in outputs}


def _json_rows(array: np.ndarray) -> list[Any]:
    array = np.asarray(array)
    if array.dtype == object:
        return np.vectorize(str, otypes=[object])(array).tolist()
    return array.tolist()


def _strings(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, str)


PROTOCOLS = {
    "v2-json": v2_json,
    "v2-binary": v2_binary,
    "tfserving": tfserving,
    "mlflow": mlflow,
    "mlflow-dataframe": mlflow_dataframe,
}


QUANTIZABLE = [m for m in ZOO if "onnx" in m.served and not m.refused]


@pytest.mark.parametrize("model", QUANTIZABLE, ids=[m.name for m in QUANTIZABLE])
def test_quantized_versions_keep_the_zoo_models_contract(model: ZooModel, developer: Member, queued: list[int]) -> None:
    """float16 and int8 versions of every served ONNX version answer with its names, datatypes and shapes."""
    data = built(model)
    # Parity makes up numbers, never strings: a model with a string input is uploaded with a sample.
    sample = {name: array.tolist() for name, array in data.inputs.items()} if _takes_strings(data) else None
    assert _upload(developer, model, data, sample)["http_status"] == 201
    upload = ModelVersion.objects.get(number=1)
    if upload.status == VersionStatus.PROCESSING:
        model_version_inspect_task(upload.pk)
    _run_jobs(queued)
    source = ModelVersion.objects.filter(format="onnx").exclude(metadata__has_key="serving_rewrite").get()
    client = developer.token_client()
    for quantization in ("float16", "int8"):
        response = client.post(
            f"/api/v1/models/alpha/zoo/versions/{source.number}/conversions",
            {"target": "onnx", "quantization": quantization},
            format="json",
        )
        assert response.status_code == 202, response.json()
    _run_jobs(queued)
    refused = dict(model.failed_quantizations)
    for quantization in ("float16", "int8"):
        job = Job.objects.get(kind=JobKind.CONVERT, params={"target": "onnx", "quantization": quantization})
        if quantization in refused:
            assert job.status == JobStatus.FAILED
            assert refused[quantization] in job.error, job.error
            continue
        assert job.status == JobStatus.SUCCEEDED, job.error
        child = ModelVersion.objects.get(parent=source, recipe_key=f"onnx:{quantization}")
        assert child.signature == source.signature, child.parity["signature"]["summary"]
        assert child.parity["signature"]["kept"] is True
        assert child.parity["passed"] is True, child.parity["reason"]
        _report_quantized(model, child)


def _takes_strings(data: Built) -> bool:
    return any(np.asarray(array).dtype == object for array in data.inputs.values())


def _report_quantized(model: ZooModel, version: ModelVersion) -> None:
    target = os.environ.get("MODELDECK_ZOO_REPORT")
    if not target:
        return
    row = {
        "model": model.name,
        "quantized": version.recipe_key,
        "passed": version.parity["passed"],
        "reason": version.parity["reason"],
        "rewrites": version.metadata.get("rewrites", []),
    }
    with open(target, "a") as out:
        out.write(json.dumps(row) + "\n")

"""The container smoke test's checks, run on the host against the compose stack (docker/smoke/smoke-test.sh).

Upload a tiny seeded ONNX model, wait for its inspection, convert it, deploy the converted version, infer over
plain HTTP and over gRPC (tritonclient.grpc) and compare with numpy, find both calls in the web's and the gRPC
container's /metrics (scraped with the token; refused without it); then kill the worker container while a job
runs, start it again, and see the job finish (requeued by the reaper once the dead worker's heartbeats stop).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper, numpy_helper

from modeldeck.client import Client

MODEL = "smoke/mlp"
ENDPOINT = "smoke-mlp"
FEATURES = 256
LAYERS = 6
# The model whose benchmark the worker is killed in: heavy enough that the job runs for seconds, small on disk.
SLOW_MODEL = "smoke/slow"
SLOW_FEATURES = 2048
SLOW_LAYERS = 8


def step(message: str) -> None:
    print(f"docker-test: {message}", flush=True)


def mlp_build(path: Path) -> list[np.ndarray]:
    """Write a seeded MatMul+Relu stack and return its weights."""
    rng = np.random.default_rng(14)
    weights = [
        (rng.standard_normal((FEATURES, FEATURES)) / np.sqrt(FEATURES)).astype(np.float32) for _ in range(LAYERS)
    ]
    nodes, previous = [], "x"
    for index in range(LAYERS):
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [f"m{index}"]))
        previous = f"m{index}" if index == LAYERS - 1 else f"r{index}"
        if index < LAYERS - 1:
            nodes.append(helper.make_node("Relu", [f"m{index}"], [previous]))
    graph = helper.make_graph(
        nodes,
        "smoke_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["batch", FEATURES])],
        initializer=[numpy_helper.from_array(w, f"w{index}") for index, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


def slow_model_build(path: Path) -> None:
    """Write a stack of wide MatMuls whose weights are made at load time (ConstantOfShape), so the file stays tiny."""
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["w"],
            value=numpy_helper.from_array(np.array([1 / SLOW_FEATURES], dtype=np.float32)),
        )
    ]
    previous = "x"
    for index in range(SLOW_LAYERS):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"m{index}"]))
        previous = f"m{index}"
    graph = helper.make_graph(
        nodes,
        "smoke_slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SLOW_FEATURES])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["batch", SLOW_FEATURES])],
        initializer=[numpy_helper.from_array(np.array([SLOW_FEATURES, SLOW_FEATURES], dtype=np.int64), "shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def mlp_reference(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    for index, w in enumerate(weights):
        x = x @ w
        if index < len(weights) - 1:
            x = np.maximum(x, 0)
    return x


def infer(url: str, token: str, body: dict[str, Any], deadline_s: float) -> dict[str, Any]:
    """POST an Open Inference Protocol request as curl would, retrying while the new release warms up."""
    request = urllib.request.Request(  # noqa: S310 (the stack's own http URL)
        f"{url}/v2/models/{ENDPOINT}/infer",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read())
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"inference never answered 200: {exc}") from exc
            time.sleep(1)


def body_dtype(datatype: str) -> type:
    return np.float16 if datatype == "FP16" else np.float32


def grpc_infer(target: str, token: str, name: str, x: np.ndarray, datatype: str) -> np.ndarray:
    """The endpoint's first output for x over KServe V2 gRPC, as a tritonclient.grpc user calls it."""
    client = grpcclient.InferenceServerClient(target)
    try:
        tensor = grpcclient.InferInput(name, list(x.shape), datatype)
        tensor.set_data_from_numpy(x)
        result = client.infer(ENDPOINT, [tensor], headers={"authorization": f"Bearer {token}"}, client_timeout=60)
        (output,) = result.get_response().outputs
        return np.asarray(result.as_numpy(output.name), dtype=np.float32)
    finally:
        client.close()


def metrics_line(url: str, token: str, endpoint: str, protocol: str, deadline_s: float) -> str:
    """The Prometheus sample counting `endpoint`'s answered requests over `protocol` (the flusher hands the recorder's
    window over once a second). A scrape without the token must be refused."""
    try:
        urllib.request.urlopen(url, timeout=10)  # noqa: S310 -- the test stack's own URL
        refused = 0
    except urllib.error.HTTPError as exc:
        refused = exc.code
    assert refused == 401, f"{url} without the scrape token: {refused or 'answered'}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    wanted = f'endpoint="{endpoint}"'
    deadline = time.monotonic() + deadline_s
    while True:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            text = answer.read().decode()
        for line in text.splitlines():
            labels = (wanted, f'protocol="{protocol}"', 'code="200"')
            if line.startswith("modeldeck_inference_requests_total{") and all(label in line for label in labels):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} has no {protocol} request of {endpoint}")
        time.sleep(1)


def wait_running(client: Client, job_id: int, deadline_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        job = client.get_job(job_id)
        if job["status"] == "running":
            return dict(job)
        assert job["status"] == "queued", f"job {job_id} ended before the worker could be killed: {job['status']}"
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never started running")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--compose", required=True, help="the compose command line, without the subcommand")
    parser.add_argument("--docker", required=True, help="the docker client")
    parser.add_argument("--grpc", required=True, help="the gRPC server's host:port")
    parser.add_argument("--grpc-metrics", required=True, help="the gRPC container's /metrics URL")
    parser.add_argument("--metrics-token", required=True)
    args = parser.parse_args()
    compose = shlex.split(args.compose)
    client = Client(args.url, args.token, timeout=60)
    assert client.me()["teams"], "the token's user belongs to no team"

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.onnx"
        weights = mlp_build(path)
        started = time.monotonic()
        version = client.upload_version(MODEL, path, create_model=True)
    version = client.wait_version(MODEL, version["number"], timeout=180)
    step(f"uploaded and inspected v{version['number']} in {time.monotonic() - started:.0f} s")

    started = time.monotonic()
    job = client.convert(MODEL, version["number"], target="onnx", quantization="float16")
    job = client.wait_job(job["id"], timeout=300)
    converted = job["result_version"]
    assert converted is not None, job
    step(f"converted v{version['number']} to float16 ONNX v{converted} in {time.monotonic() - started:.0f} s")

    client.create_endpoint(ENDPOINT, model=MODEL, version=converted, reason="docker smoke test")
    x = np.random.default_rng(7).standard_normal((4, FEATURES)).astype(np.float32)
    (model_input,) = client.model_metadata(ENDPOINT)["inputs"]
    datatype = model_input["datatype"]
    body = {
        "inputs": [
            {
                "name": model_input["name"],
                "shape": list(x.shape),
                "datatype": datatype,
                "data": x.astype(body_dtype(datatype)).ravel().tolist(),
            }
        ]
    }
    answer = infer(args.url, args.token, body, deadline_s=120)
    (output,) = answer["outputs"]
    got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    expected = mlp_reference(weights, x)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert np.allclose(got, expected, rtol=0.05, atol=0.05), float(np.abs(got - expected).max())
    step(f"deployed v{converted} as {ENDPOINT} and inferred: {output['shape']} {output['datatype']} matches numpy")

    over_grpc = grpc_infer(args.grpc, args.token, model_input["name"], x.astype(body_dtype(datatype)), datatype)
    assert np.allclose(over_grpc, got, rtol=1e-6, atol=1e-6), float(np.abs(over_grpc - got).max())
    step(f"inferred over gRPC ({args.grpc}, tritonclient.grpc): the HTTP answer")
    for url, protocol in ((f"{args.url}/metrics", "http"), (args.grpc_metrics, "grpc")):
        line = metrics_line(url, args.metrics_token, ENDPOINT, protocol, deadline_s=30)
        step(f"{url} counts it: {line}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slow.onnx"
        slow_model_build(path)
        slow = client.upload_version(SLOW_MODEL, path, create_model=True)
    slow = client.wait_version(SLOW_MODEL, slow["number"], timeout=180)
    # The commands come from smoke-test.sh's own arguments.
    listed = subprocess.run([*compose, "ps", "-q", "worker"], check=True, capture_output=True, text=True)  # noqa: S603
    (worker,) = listed.stdout.split()
    job = client.benchmark(SLOW_MODEL, slow["number"])
    running = wait_running(client, job["id"], deadline_s=120)
    subprocess.run([args.docker, "kill", worker], check=True, capture_output=True)  # noqa: S603
    killed_at = time.monotonic()
    killed = client.get_job(job["id"])
    assert killed["status"] == "running", f"job {job['id']} ended before the kill landed: {killed['status']}"
    step(
        f"killed the worker container while job {job['id']} ran on {running['worker']} (attempt {running['attempts']})"
    )
    subprocess.run([*compose, "start", "worker"], check=True)  # noqa: S603
    done = client.wait_job(job["id"], timeout=300)
    assert done["attempts"] > running["attempts"], done
    assert any("stopped sending heartbeats" in entry["message"] for entry in done["log"]), done["log"]
    assert client.get_version(SLOW_MODEL, slow["number"])["benchmark"], "the benchmark's numbers were not stored"
    step(
        f"job {job['id']} was requeued by the reaper and succeeded on attempt {done['attempts']}, "
        f"{time.monotonic() - killed_at:.0f} s after the kill"
    )
    client.close()


if __name__ == "__main__":
    main()

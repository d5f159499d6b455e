"""Upload a large model file through the REST API to a real web server; print throughput and the server's memory.

Starts uvicorn on the embedded defaults in a temporary folder, creates a team, token and model, builds a valid
ONNX file of the requested size (one big initializer), streams it up, and prints:
  - throughput (MiB/s) of the whole request (upload, hashing, storing),
  - the web process's peak RSS growth during the request (target: under 64 MiB whatever the file size).
Usage: .venv/bin/python bench/upload.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def build_onnx(path: Path, size_mib: int) -> None:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    floats = size_mib * 1024 * 1024 // 4
    weights = numpy_helper.from_array(np.zeros((floats,), dtype=np.float32), name="w")
    node = helper.make_node("Add", ["x", "bias"], ["y"])
    bias = numpy_helper.from_array(np.ones((4,), dtype=np.float32), name="bias")
    graph = helper.make_graph(
        [node],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[bias, weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found")


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    size_mib = parser.parse_args().size_mib
    workdir = Path(tempfile.mkdtemp(prefix="modeldeck-bench-upload-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env |= {"DJANGO_SETTINGS_MODULE": "config.settings.local", "MODELDECK_VAR_DIR": str(workdir / "var")}
    env["MODELDECK_MAX_UPLOAD_BYTES"] = str((size_mib + 64) * 1024 * 1024)
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "createteam", "bench", "--admin", "bench")
    token = manage(env, "issuetoken", "--team", "bench", "--user", "bench", "--role", "developer")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            assert client.post("/api/v1/models", json={"team": "bench", "name": "big"}).status_code == 201
            path = workdir / "big.onnx"
            build_onnx(path, size_mib)
            # Warm the upload path once with a small file, so imports and caches are not counted as growth.
            small = workdir / "small.onnx"
            build_onnx(small, 1)
            with small.open("rb") as handle:
                assert (
                    client.post("/api/v1/models/bench/big/versions", files={"file": ("small.onnx", handle)}).status_code
                    == 201
                )
            rss_before = rss_kib(server.pid, "VmRSS")
            hwm_before = rss_kib(server.pid, "VmHWM")
            started = time.perf_counter()
            with path.open("rb") as handle:
                response = client.post("/api/v1/models/bench/big/versions", files={"file": ("big.onnx", handle)})
            elapsed = time.perf_counter() - started
            assert response.status_code == 201, response.text
            hwm_after = rss_kib(server.pid, "VmHWM")
        size = path.stat().st_size
        growth_mib = (max(hwm_after, hwm_before) - rss_before) / 1024
        print(f"file: {size / 2**20:.0f} MiB ONNX, status after upload: {response.json()['status']}")
        print(f"upload request: {elapsed:.2f} s, {size / 2**20 / elapsed:.1f} MiB/s (upload + sha256 + store)")
        print(
            f"web process RSS before: {rss_before / 1024:.1f} MiB; peak RSS growth during upload: {growth_mib:.1f} MiB"
        )
        print(f"target: growth under 64 MiB -> {'met' if growth_mib < 64 else 'NOT met'}")
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()

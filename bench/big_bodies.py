"""A one-row request's latency while 50 MB JSON bodies (with and without NaN) are being decoded by the same process.

Starts ModelDeck's web process as `make run` does (as bench/serving.py, embedded defaults, temporary folder), deploys
the iris model (the one-row requests) and a model that sums its whole input (x[N,4] -> one number: its answer is tiny,
so what a big request costs the server is its body: receiving and decoding it). Then sends one-row Open Inference
Protocol requests back to back on one connection for a few seconds, three times: alone, while another connection
sends 50 MB TF Serving bodies back to back, and while it sends 50 MB bodies with NaN in them (TF Serving clients write
missing values so). Prints and writes (bench/results/big_bodies.json) the one-row p50/p99/max and how long each big
request took; the event loop is free when the one-row p99 stays near its idle value.
Usage: .venv/bin/python bench/big_bodies.py [--seconds 8] [--megabytes 50] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# Run as a script, this folder would come first on sys.path and this file would shadow the `serving` package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.loadgen import http_request, load  # noqa: E402
from bench.serving import ROOT, _wait_ready, bench_team, build_iris, free_port, infer_body, local_site, server  # noqa: E402


def build_sum(path: Path) -> None:
    """x[N,4] -> the sum of every element: a model whose answer is one number whatever the body's size."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)],
        "sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def big_body(megabytes: float, nan: bool) -> bytes:
    """A TF Serving columnar request of about `megabytes` MB: full-precision floats, a tenth of them NaN if `nan`."""
    rows = int(megabytes * 1e6 / 4 / 21)  # about 21 bytes per float as json writes a float64
    x = np.random.default_rng(0).normal(size=(rows, 4))
    if nan:
        x[np.random.default_rng(1).random(x.shape) < 0.1] = np.nan
    return json.dumps({"inputs": x.tolist()}).encode()


def send_big(base: str, auth: dict[str, str], body: bytes, stop: threading.Event, seconds: list[float]) -> None:
    """Send `body` to the summing model back to back until `stop`; append each request's duration to `seconds`."""
    with httpx.Client(base_url=base, headers=auth, timeout=300) as client:
        while not stop.is_set():
            started = time.perf_counter()
            assert client.post("/v1/models/sum:predict", content=body).status_code == 200
            seconds.append(time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--megabytes", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "big_bodies.json")
    options = parser.parse_args()
    workdir, env = local_site("bodies")
    iris, summed = workdir / "iris.onnx", workdir / "sum.onnx"
    x = build_iris(iris)
    build_sum(summed)
    bodies = {"plain": big_body(options.megabytes, nan=False), "NaN": big_body(options.megabytes, nan=True)}
    token = bench_team(env)
    auth = {"Authorization": f"Bearer {token}"}
    port = free_port()
    web = ["config.asgi:application", "--loop", "uvloop", "--lifespan", "on"]
    web += ["--http", "serving.fastpath:DataPlaneProtocol", "--no-proxy-headers"]
    rows: list[dict[str, Any]] = []
    with server(web, env, port, "/v2/health/ready"):
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=auth, timeout=300) as api:
            for name, path in (("iris", iris), ("sum", summed)):
                assert api.post("/api/v1/models", json={"team": "bench", "name": name}).status_code == 201
                with path.open("rb") as handle:
                    created = api.post(f"/api/v1/models/bench/{name}/versions", files={"file": (path.name, handle)})
                assert created.status_code == 201, created.text
                made = api.post("/api/v1/endpoints", json={"name": name, "model": f"bench/{name}", "version": 1})
                assert made.status_code == 201, made.text
                _wait_ready(api, name)
            for kind, body in bodies.items():  # warm: the decoding helpers start on the first large body
                answer = api.post("/v1/models/sum:predict", content=body)
                assert answer.status_code == 200, f"{kind}: {answer.text[:300]}"
        headers = {"Content-Type": "application/json", **auth}
        one_row = http_request("POST", "/v2/models/iris/infer", infer_body(x), headers)
        for label in ("idle", "plain", "NaN"):
            big_seconds: list[float] = []
            stop = threading.Event()
            sender = None
            if label != "idle":
                sender = threading.Thread(target=send_big, args=(base, auth, bodies[label], stop, big_seconds))
                sender.start()
                time.sleep(0.5)
            result = load("127.0.0.1", port, one_row, concurrency=1, seconds=options.seconds, warmup=0.2)
            stop.set()
            if sender is not None:
                sender.join()
            answered = bool(result.latencies_ms)  # none: the loop was held the whole window
            row = {
                "big_bodies": label,
                "big_body_mb": round(len(bodies[label]) / 1e6, 1) if label != "idle" else 0,
                "one_row_requests": result.requests,
                "one_row_p50_ms": round(result.percentile(50), 2) if answered else None,
                "one_row_p99_ms": round(result.percentile(99), 2) if answered else None,
                "one_row_max_ms": round(max(result.latencies_ms), 2) if answered else None,
                "non_2xx": sum(n for status, n in result.statuses.items() if status != 200),
                "big_requests": len(big_seconds),
                "big_request_mean_s": round(sum(big_seconds) / len(big_seconds), 2) if big_seconds else None,
            }
            rows.append(row)
            print(
                f"one-row requests while big bodies: {label:5}  {result.requests:6} answered  "
                f"p50 {row['one_row_p50_ms']} ms  p99 {row['one_row_p99_ms']} ms  max {row['one_row_max_ms']} ms  "
                f"({row['big_requests']} big requests, {row['big_request_mean_s']} s each)",
                flush=True,
            )
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(
        json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()

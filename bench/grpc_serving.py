"""V2 gRPC serving, side by side: ModelDeck's gRPC server, a bare grpc.aio + onnxruntime server, and MLServer.

Builds the iris logistic regression as bench/serving.py does, then keeps three servers up at once:
  - ModelDeck's gRPC server as `make run` starts it (`manage.py servegrpc --port P`) on a scratch site, with the iris
    endpoint deployed through the REST API of the site's web process (skipped while the command does not exist);
  - bench/minimal_grpc.py: a bare `grpc.aio` server that runs the same ONNX file with onnxruntime (the reference);
  - MLServer 1.7.1, single process (parallel_workers 0), in a venv of its own (.venv-mlserver, created when missing:
    MLServer needs protobuf<7, the project pins 7). MLServer has no ONNX runtime (its runtimes are scikit-learn,
    XGBoost, LightGBM, CatBoost, MLlib, MLflow, Alibi, HuggingFace), so it serves the same fitted LogisticRegression
    as a joblib file through mlserver-sklearn; it answers `predict` (the labels) where the ONNX model answers labels
    and probabilities. Its per-request access log is off (`debug: false`), its metrics on, as it ships.
Every server gets the same bytes: a V2 ModelInferRequest for `iris` with one FP32 [1,4] tensor in raw_input_contents
and the `authorization: Bearer` metadata ModelDeck needs (the others ignore it). The load is closed loop, for fixed
seconds, at concurrency 1/8/32, from two load generators in turn:
  - `python xN`: grpc.aio clients in N spawned processes (`--clients`, the concurrency split over them), requests
    serialized once and sent as raw bytes on `channel.unary_unary`. A Python client costs 200-350 µs of CPU a call,
    as much as the servers, and on two cores it takes that CPU from the server it measures;
  - `h2load` (nghttp2's C load generator, apt's nghttp2-client; used when on PATH): the same HTTP/2 requests over as
    many connections, at 30-70 µs a call, so the servers' own cost decides.
The client's CPU per call is reported beside each row, and each server's. Configurations alternate and each is run
`--rounds` times (2 by default): this machine's two cores are shared, so read the spread before a ratio.
Usage: .venv/bin/python bench/grpc_serving.py [--seconds 3] [--rounds 2] [--clients 2] [--drivers python h2load]
       [--out bench/results/grpc.json]
Importable: `measure(...)` returns the rows (bench/serving.py can call it); `summarize` and `print_table` the table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# Run as a script, this folder would come first on sys.path and bench/serving.py would shadow the `serving` package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.loadgen import LoadResult  # noqa: E402
from bench.serving import (  # noqa: E402
    CONCURRENCY,
    ROOT,
    _wait_ready,
    bench_team,
    build_iris,
    free_port,
    local_site,
    process_cpu_seconds,
    started_server,
)

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MLSERVER_VENV = ROOT / ".venv-mlserver"
# The joblib file is unpickled by MLServer's venv: its scikit-learn must be the one that fitted it (this venv's).
MLSERVER_REQUIREMENTS = [
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    "scikit-learn==1.9.1",
    "joblib==1.6.0",
    "numpy==2.4.6",
    "protobuf==6.33.6",
    "grpcio==1.85.3",
]
SERVERS = ("ModelDeck gRPC", "bare grpc.aio + onnxruntime", "MLServer 1.7.1 gRPC (sklearn)")
MODELDECK, BARE, MLSERVER = SERVERS
# Measured by the issue's author on this machine kind (c=8, one Python client process).
ISSUE_REQ_S = {MLSERVER: (734.0, 845.0), BARE: (1769.0, 2056.0)}


# -- the load generator ---------------------------------------------------------------------------------------------


def _client_main(conn: Connection) -> None:
    """A client process: for each job received, drive `inflight` concurrent calls on one channel and send back the
    latencies, errors and this process's CPU time."""
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(asyncio.run(_client_job(**job)))


async def _client_job(
    *,
    target: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
    inflight: int,
    start_at: float,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    import grpc

    async with grpc.aio.insecure_channel(target) as channel:
        # No serializers: the request goes out as the bytes given and the answer comes back as bytes, so the client
        # spends nothing on protobuf.
        call = channel.unary_unary(MODEL_INFER)
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        with contextlib.suppress(grpc.aio.AioRpcError):  # a refusal is counted below, not here
            await call(payload, metadata=metadata)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_started = time.process_time()
        now = time.perf_counter()
        warm_until = now + warmup
        deadline = warm_until + seconds
        latencies: list[float] = []
        errors: dict[str, int] = {}
        calls = 0

        async def slot() -> None:
            nonlocal calls
            while True:
                started = time.perf_counter()
                if started >= deadline:
                    return
                try:
                    await call(payload, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                finally:
                    calls += 1
                if started >= warm_until:
                    latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(slot() for _ in range(inflight)))
        return {
            "latencies_ms": latencies,
            "errors": errors,
            "calls": calls,
            "cpu_s": time.process_time() - cpu_started,
        }


class ClientPool:
    """Long-lived client processes (spawned, so no gRPC state is forked), reused for every measurement."""

    def __init__(self, processes: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        for _ in range(processes):
            parent, child = context.Pipe()
            process = context.Process(target=_client_main, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)

    def run(
        self,
        target: str,
        payload: bytes,
        metadata: tuple[tuple[str, str], ...],
        concurrency: int,
        seconds: float,
        warmup: float = 0.5,
    ) -> tuple[LoadResult, dict[str, Any]]:
        """`concurrency` calls in flight, split over the client processes, for `warmup + seconds`; only calls started
        after the warm-up count. Returns the result and the client's CPU per call (every call, warm-up included)."""
        shares = [concurrency // len(self.pipes) + (i < concurrency % len(self.pipes)) for i in range(len(self.pipes))]
        busy = [(pipe, share) for pipe, share in zip(self.pipes, shares, strict=True) if share]
        start_at = time.time() + 1.0  # every process connected and warm before the clock starts
        for pipe, share in busy:
            job = {"target": target, "payload": payload, "metadata": metadata, "inflight": share}
            pipe.send(job | {"start_at": start_at, "warmup": warmup, "seconds": seconds})
        answers = [pipe.recv() for pipe, _ in busy]
        result = LoadResult(seconds=seconds)
        errors: dict[str, int] = {}
        for answer in answers:
            result.latencies_ms.extend(answer["latencies_ms"])
            for code, n in answer["errors"].items():
                errors[code] = errors.get(code, 0) + n
        result.statuses[200] = result.requests
        calls = sum(answer["calls"] for answer in answers)
        cpu = sum(answer["cpu_s"] for answer in answers)
        extra: dict[str, Any] = {"client_processes": len(busy), "calls": calls, "errors": errors}
        if calls:
            extra["client_cpu_us_per_req"] = round(cpu / calls * 1e6, 1)
        return result, extra


def h2load_run(
    target: str,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
    concurrency: int,
    seconds: float,
    *,
    connections: int,
    answer_bytes: int,
    scratch: Path,
) -> tuple[LoadResult, dict[str, Any]]:
    """The same load from h2load (nghttp2's C load generator), at a few µs of client CPU a call: what the servers do
    when the client is not the bottleneck. `concurrency` streams over `connections` HTTP/2 connections, as the
    Python clients open them. h2load sees HTTP statuses only, and a gRPC error is an HTTP 200 with no message: the
    answers' DATA bytes (`answer_bytes` each, gRPC framing included) tell whether every call got one."""
    connections = min(concurrency, connections)
    request = scratch / "request.grpc"
    request.write_bytes(b"\x00" + len(payload).to_bytes(4, "big") + payload)
    log = scratch / "h2load.log"
    log.unlink(missing_ok=True)
    argv = ["h2load", "-t", "1", "-c", str(connections), "-m", str(-(-concurrency // connections))]
    argv += ["-D", f"{round(seconds * 1000)}ms", "--warm-up-time", "500ms", "-d", str(request), "--log-file", str(log)]
    argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    for key, value in metadata:
        argv += ["-H", f"{key}: {value}"]
    process = subprocess.Popen([*argv, f"http://{target}{MODEL_INFER}"], stdout=subprocess.PIPE, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"h2load failed ({process.returncode}): {output[-2000:]}")
    result = LoadResult(seconds=seconds)
    for line in log.read_text().splitlines():
        _, http_status, micros = line.split("\t")
        if http_status == "200":
            result.latencies_ms.append(int(micros) / 1000)
    result.statuses[200] = result.requests
    # "traffic: … 730.73KB (748272) data": the answers' bytes, the warm-up's included (they are not in the log).
    traffic = re.search(r"\((\d+)\) data", output)
    data = int(traffic.group(1)) if traffic else 0
    # Every call answered, warm-up included (when none failed): what the CPU times are divided by.
    calls = data // answer_bytes
    extra: dict[str, Any] = {"client_processes": 1, "connections": connections, "calls": calls, "errors": {}}
    if calls < result.requests:
        extra["errors"] = {"calls without an answer (by DATA bytes)": result.requests - calls}
    if calls:
        extra["client_cpu_us_per_req"] = round((usage.ru_utime + usage.ru_stime) / calls * 1e6, 1)
    return result, extra


# -- the request and the answers -------------------------------------------------------------------------------------


def infer_request(x: np.ndarray, model: str = "iris") -> bytes:
    """The one request every server gets: a V2 ModelInferRequest with the tensor in raw_input_contents."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return bytes(request.SerializeToString())


def infer_once(target: str, payload: bytes, metadata: tuple[tuple[str, str], ...]) -> bytes:
    """One ModelInfer call; the answer's bytes."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        return bytes(channel.unary_unary(MODEL_INFER)(payload, metadata=metadata))


def decode_answer(raw: bytes) -> dict[str, np.ndarray]:
    """A ModelInferResponse's outputs by name."""
    from tritonclient.grpc import service_pb2

    dtypes = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
    answer = service_pb2.ModelInferResponse.FromString(raw)
    outputs = {}
    for i, output in enumerate(answer.outputs):
        if answer.raw_output_contents:
            data = np.frombuffer(answer.raw_output_contents[i], dtype=dtypes[output.datatype])
        else:
            contents = output.contents
            data = np.asarray(
                contents.fp32_contents or contents.fp64_contents or contents.int64_contents or contents.int_contents
            )
        outputs[output.name] = data.reshape(tuple(output.shape))
    return outputs


def wait_grpc(target: str, payload: bytes, metadata: tuple[tuple[str, str], ...], timeout: float = 60) -> None:
    """Until a ModelInfer call succeeds (the server up and the model loaded)."""
    import grpc

    deadline = time.monotonic() + timeout
    while True:
        try:
            infer_once(target, payload, metadata)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# -- the servers ---------------------------------------------------------------------------------------------------


def fit_iris_sklearn(path: Path) -> Any:
    """The LogisticRegression build_iris converts (same data, same parameters), kept as a joblib file for MLServer."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=1.0, max_iter=500, random_state=0).fit(x, y)
    joblib.dump(model, path)
    return model


def ensure_mlserver_venv(venv: Path = MLSERVER_VENV) -> Path:
    """MLServer's own venv (created when missing); returns its `mlserver` executable."""
    executable = venv / "bin" / "mlserver"
    if executable.exists():
        return executable
    uv = ROOT / ".tools" / "bin" / "uv"
    if uv.exists():
        # --no-config: the project's [tool.uv] overrides pin protobuf 7, which MLServer does not accept.
        subprocess.run([str(uv), "venv", "--no-config", "--python", "python3.11", str(venv)], check=True)
        install = [str(uv), "pip", "install", "--no-config", "--python", str(venv / "bin" / "python")]
    else:
        subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
        install = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*install, *MLSERVER_REQUIREMENTS], check=True, cwd=venv.parent)
    return executable


@contextmanager
def mlserver(workdir: Path, model_file: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """MLServer in one process serving `model_file` as `iris`; yields the process and its gRPC port."""
    executable = ensure_mlserver_venv()
    folder = workdir / "mlserver"
    (folder / "iris").mkdir(parents=True)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "parallel_workers": 0,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    shutil.copy(model_file, folder / "iris" / "model.joblib")
    model_settings = {
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }
    (folder / "iris" / "model-settings.json").write_text(json.dumps(model_settings))
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    argv = [str(executable), "start", str(folder)]
    with started_server(argv, env, http_port, "/v2/models/iris/ready", workdir / "mlserver.log") as process:
        yield process, grpc_port


@contextmanager
def bare_server(workdir: Path, env: dict[str, str], model_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """bench/minimal_grpc.py serving `model_path`; yields the process and its port."""
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "minimal_grpc.py"), str(model_path), str(port)]
    with started_server(argv, env, port, None, workdir / "minimal-grpc.log") as process:
        yield process, port


def servegrpc_exists() -> bool:
    return (ROOT / "serving" / "management" / "commands" / "servegrpc.py").exists()


@contextmanager
def modeldeck(
    workdir: Path, env: dict[str, str], model_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    """A scratch site with the iris endpoint deployed through the REST API, and its gRPC server as `make run` starts
    it; yields the gRPC process, its port and a developer token."""
    token = bench_team(env)
    auth = {"Authorization": f"Bearer {token}"}
    from common.webserver import web_command

    with ExitStack() as stack:
        web_port = free_port()
        web = web_command(host="127.0.0.1", port=web_port, workers=1, access_log=False)
        stack.enter_context(started_server(web, env, web_port, "/v2/health/ready", workdir / "web.log"))
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", headers=auth, timeout=120) as api:
            assert api.post("/api/v1/models", json={"team": "bench", "name": "iris"}).status_code == 201
            with model_path.open("rb") as handle:
                created = api.post("/api/v1/models/bench/iris/versions", files={"file": ("iris.onnx", handle)})
            assert created.status_code == 201, created.text
            made = api.post("/api/v1/endpoints", json={"name": "iris", "model": "bench/iris", "version": 1})
            assert made.status_code == 201, made.text
            _wait_ready(api, "iris")
        port = free_port()
        argv = [sys.executable, "manage.py", "servegrpc", "--host", "127.0.0.1", "--port", str(port)]
        process = stack.enter_context(started_server(argv, env, port, None, workdir / "servegrpc.log"))
        yield process, port, token


# -- the measurement ------------------------------------------------------------------------------------------------


def model_alone_us(onnx_path: Path, sklearn_model: Any, x: np.ndarray, seconds: float = 0.5) -> dict[str, float]:
    """Each server's model call alone, in process, in µs: what separates the runtimes before any serving."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}

    def timed(call: Callable[[], object]) -> float:
        for _ in range(50):
            call()
        calls, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            call()
            calls += 1
        return round(elapsed / calls * 1e6, 1)

    return {
        "onnxruntime": timed(lambda: session.run(None, feed)),
        "sklearn predict": timed(lambda: sklearn_model.predict(x)),
    }


def measure(
    *,
    seconds: float = 3.0,
    rounds: int = 2,
    clients: int = 2,
    concurrency: tuple[int, ...] = CONCURRENCY,
    with_modeldeck: bool | None = None,
    with_mlserver: bool = True,
    drivers: tuple[str, ...] | None = None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Start the servers side by side and measure V2 gRPC ModelInfer on each at every concurrency, `rounds` times,
    alternating servers within each concurrency. Returns one row per measurement (`round` numbered from 1, `client`
    naming the load generator).

    `with_modeldeck` None: ModelDeck's row when `manage.py servegrpc` exists. `drivers`: "python" (the client
    processes) and/or "h2load"; None: both when h2load is installed (apt's nghttp2-client), else python."""
    if with_modeldeck is None:
        with_modeldeck = servegrpc_exists()
    if drivers is None:
        drivers = ("python", "h2load") if shutil.which("h2load") else ("python",)
    workdir, env = local_site("grpc")
    pool = ClientPool(clients)
    rows: list[dict[str, Any]] = []
    try:
        onnx_path = workdir / "iris.onnx"
        x = build_iris(onnx_path)
        sklearn_model = fit_iris_sklearn(workdir / "iris.joblib")
        payload = infer_request(x)
        expected_label = int(sklearn_model.predict(x)[0])
        alone = model_alone_us(onnx_path, sklearn_model, x)
        log(f"model alone, in process (µs per call): {alone}")
        with ExitStack() as stack:
            targets: dict[str, Target] = {}
            process, port = stack.enter_context(bare_server(workdir, env, onnx_path))
            targets[BARE] = Target(f"127.0.0.1:{port}", process.pid)
            if with_mlserver:
                process, port = stack.enter_context(mlserver(workdir, workdir / "iris.joblib"))
                targets[MLSERVER] = Target(f"127.0.0.1:{port}", process.pid)
            metadata: tuple[tuple[str, str], ...] = ()
            if with_modeldeck:
                process, port, token = stack.enter_context(modeldeck(workdir, env, onnx_path))
                targets[MODELDECK] = Target(f"127.0.0.1:{port}", process.pid)
                metadata = (("authorization", f"Bearer {token}"),)
            for name, target in targets.items():
                wait_grpc(target.address, payload, metadata)
                answer = infer_once(target.address, payload, metadata)
                _check_answer(name, decode_answer(answer), expected_label)
                target.answer_bytes = 5 + len(answer)  # gRPC's frame: a flag byte and a 4-byte length
            order = [name for name in SERVERS if name in targets]
            for round_number in range(1, rounds + 1):
                for driver, c in itertools.product(drivers, concurrency):
                    # Alternate the order too, so no server always runs right after the same one.
                    for name in order if round_number % 2 else order[::-1]:
                        target = targets[name]
                        cpu_before = process_cpu_seconds(target.pid)
                        if driver == "python":
                            result, extra = pool.run(target.address, payload, metadata, c, seconds)
                            client = f"python x{clients}"
                        else:
                            result, extra = h2load_run(
                                target.address, payload, metadata, c, seconds, connections=clients,
                                answer_bytes=target.answer_bytes, scratch=workdir,
                            )  # fmt: skip
                            client = "h2load"
                        cpu_after = process_cpu_seconds(target.pid)
                        if cpu_before is not None and cpu_after is not None and extra["calls"]:
                            # Every call answered, warm-up included, as the CPU time counts them all.
                            extra["server_cpu_us_per_req"] = round((cpu_after - cpu_before) / extra["calls"] * 1e6, 1)
                        row = {"model": "iris", "system": name, "client": client, "concurrency": c}
                        row["model_alone_us"] = alone["sklearn predict" if name == MLSERVER else "onnxruntime"]
                        row |= {"round": round_number} | result.summary() | extra
                        rows.append(row)
                        log(_row_line(row))
    finally:
        pool.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


@dataclass
class Target:
    address: str
    pid: int
    answer_bytes: int = 0


def _row_line(row: dict[str, Any]) -> str:
    return (
        f"round {row['round']} {row['client']:9} {row['system']:32} c={row['concurrency']:<3}"
        f" {row['req_per_s']:>8.1f} req/s  p50 {row['p50_ms']:7.3f} ms  p99 {row['p99_ms']:7.3f} ms"
        f"  client {row.get('client_cpu_us_per_req', float('nan')):6.1f} µs/req"
        f"  server {row.get('server_cpu_us_per_req', float('nan')):6.1f} µs/req  errors {row['errors'] or 0}"
    )


def _check_answer(name: str, outputs: dict[str, np.ndarray], expected_label: int) -> None:
    labels = [v for k, v in outputs.items() if "label" in k or k == "predict"]
    if not labels or int(labels[0].ravel()[0]) != expected_label:
        raise RuntimeError(f"{name} answered {outputs}, expected label {expected_label}")


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per load generator, server and concurrency: the rounds' median req/s, p50 and p99, the spread, and
    the ratios to the bare server and to MLServer taken round by round (each pair measured a few seconds apart)."""
    lines = []
    keys = sorted(
        {(r["client"], r["concurrency"], r["system"]) for r in rows}, key=lambda k: (k[0], k[1], SERVERS.index(k[2]))
    )
    for client, c, system in keys:
        mine = {r["round"]: r for r in rows if (r["client"], r["concurrency"], r["system"]) == (client, c, system)}
        rates = [r["req_per_s"] for r in mine.values()]
        line: dict[str, Any] = {
            "client": client,
            "system": system,
            "concurrency": c,
            "rounds": len(mine),
            "req_per_s": round(statistics.median(rates), 1),
            "req_per_s_range": [min(rates), max(rates)],
            "p50_ms": round(statistics.median(r["p50_ms"] for r in mine.values()), 3),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in mine.values()), 3),
            "client_cpu_us_per_req": _median(r.get("client_cpu_us_per_req") for r in mine.values()),
            "server_cpu_us_per_req": _median(r.get("server_cpu_us_per_req") for r in mine.values()),
            "errors": sum(sum(r["errors"].values()) for r in mine.values()),
        }
        for reference, key in ((BARE, "vs_bare"), (MLSERVER, "vs_mlserver")):
            ratios = []
            for round_number, row in mine.items():
                ref = next(
                    (r for r in rows if (r["client"], r["concurrency"], r["system"], r["round"]) == (
                        client, c, reference, round_number
                    )),
                    None,
                )  # fmt: skip
                if ref and ref["req_per_s"]:
                    ratios.append(row["req_per_s"] / ref["req_per_s"])
            if ratios:
                line[key] = round(statistics.median(ratios), 2)
                line[f"{key}_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
        lines.append(line)
    return lines


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def print_table(lines: list[dict[str, Any]]) -> None:
    def ratio(line: dict[str, Any], key: str) -> str:
        if key not in line:
            return "-"
        low, high = line[f"{key}_range"]
        return f"{line[key]:.2f}x ({low:.2f}-{high:.2f})"

    def number(value: float | None) -> str:
        return f"{value:.0f}" if value is not None else "-"

    print("\nV2 gRPC ModelInfer, iris, FP32 [1,4] in raw_input_contents: median of the rounds, (min-max)")
    header = f"{'client':9} {'server':31} {'c':>3} {'req/s':>7} {'(min-max)':>11} {'p50 ms':>7} {'p99 ms':>7}"
    header += f" {'cli µs':>6} {'srv µs':>6} {'err':>4}  {'vs bare':>17}  {'vs MLServer':>17}"
    print(header)
    for line in lines:
        low, high = line["req_per_s_range"]
        print(
            f"{line['client']:9} {line['system'][:31]:31} {line['concurrency']:>3} {line['req_per_s']:>7.0f}"
            f" {f'({low:.0f}-{high:.0f})':>11} {line['p50_ms']:>7.3f} {line['p99_ms']:>7.3f}"
            f" {number(line['client_cpu_us_per_req']):>6} {number(line['server_cpu_us_per_req']):>6}"
            f" {line['errors']:>4}  {ratio(line, 'vs_bare'):>17}  {ratio(line, 'vs_mlserver'):>17}"
        )
    issue = ", ".join(f"{name} {low:.0f}-{high:.0f} req/s" for name, (low, high) in ISSUE_REQ_S.items())
    print(f"\nthe issue's measurement at c=8, one Python client process: {issue}")
    print("targets at c=8 (ModelDeck >= 0.8x the bare server, >= 2x MLServer):")
    for line in lines:
        if line["system"] == MODELDECK and line["concurrency"] == 8:
            print(f"  {line['client']:9} vs bare {ratio(line, 'vs_bare')}, vs MLServer {ratio(line, 'vs_mlserver')}")
    # Server CPU per call is steadier than req/s on a shared machine; where the CPU is the limit, the bare server's
    # cost over ModelDeck's is the most the throughput ratio can be.
    cpu = {
        (line["client"], line["system"]): line["server_cpu_us_per_req"] for line in lines if line["concurrency"] == 8
    }
    for client in sorted({client for client, _ in cpu}):
        mine, bare = cpu.get((client, MODELDECK)), cpu.get((client, BARE))
        if mine and bare:
            print(f"  {client:9} server CPU per call: ModelDeck {mine:.0f} µs, bare {bare:.0f} µs ({bare / mine:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="client processes the concurrency is split over")
    parser.add_argument(
        "--drivers", nargs="+", choices=("python", "h2load"), help="load generators (default: both if h2load is there)"
    )
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "grpc.json")
    options = parser.parse_args()
    rows = measure(
        seconds=options.seconds,
        rounds=options.rounds,
        clients=options.clients,
        with_mlserver=not options.no_mlserver,
        drivers=tuple(options.drivers) if options.drivers else None,
        log=lambda line: print(line, flush=True),
    )
    lines = summarize(rows)
    print_table(lines)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "settings": {"seconds": options.seconds, "rounds": options.rounds, "client_processes": options.clients},
                "notes": [
                    "MLServer has no ONNX runtime: it serves the same fitted LogisticRegression (joblib) through"
                    " mlserver-sklearn and answers `predict` only; the others run the ONNX file with onnxruntime.",
                    "MLServer runs with parallel_workers 0 and debug false (no per-request access log), metrics on.",
                    "client and server CPU per request count every call, warm-up included, over the CPU time of the"
                    " whole run; req/s and latencies count only calls started after the warm-up.",
                ],
                "summary": lines,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {options.out}")


if __name__ == "__main__":
    main()

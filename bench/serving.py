"""Serving throughput and latency: raw onnxruntime in-process (the limit) vs ModelDeck over HTTP, side by side.

Builds two models (iris logistic regression via scikit-learn + skl2onnx, and a seeded MLP 784-512-512-10), starts
ModelDeck's web process exactly as `make run` does (uvicorn, uvloop, one process, embedded defaults) in a temporary
folder, uploads both models through the REST API, deploys them, and drives Open Inference Protocol JSON requests
with a closed-loop client at concurrency 1, 8 and 32 (bench/loadgen.py). Also measured in the same run:
  - a minimal raw ASGI app serving the iris model (bench/minimal_app.py), the overhead reference;
  - dynamic batching on vs off at concurrency 32 (MLP, JSON and binary tensors; and a 784-2048-2048-10 MLP), each with
    the server's CPU time per request, beside the model's own cost per row at batch 1 and 32 (in-process): batching
    takes away only the model's share of a request's cost;
  - the ceiling for batching in Python: bench/lean_server.py (raw protocol, nothing but parse, run, answer), off/on;
  - the process-model check: the minimal app under `uvicorn --workers 2` with asyncio's loop vs uvloop;
  - the HTTP servers side by side (iris, V2 JSON, c=1/8/32, each configuration twice, alternating): `make run`'s
    default web process, the same with the access log on (c=8), ModelDeck's data plane on granian through RSGI
    (config/rsgi.py) and through ASGI (config/asgi.py as is), and the minimal app on uvicorn and on granian (RSGI,
    bench/minimal_rsgi.py), with the server's CPU per request (its worker processes included).
Prints a table and writes the numbers as JSON (default bench/results/serving.json).
Usage: .venv/bin/python bench/serving.py [--seconds 3] [--rounds 2] [--out PATH] [--servers-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# Run as a script, this folder would come first on sys.path and this file would shadow the `serving` package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from bench.loadgen import LoadResult, http_request, load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = (1, 8, 32)
# Measured on this machine by the author (2 cores, load generator on the same machine).
MLFLOW_REQ_S = {1: 420.0, 8: 590.0}


def build_iris(path: Path, regularization: float = 1.0) -> np.ndarray:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(C=regularization, max_iter=500, random_state=0).fit(x, y)
    onx = convert_sklearn(
        model, initial_types=[("x", FloatTensorType([None, 4]))], options={id(model): {"zipmap": False}}
    )
    path.write_bytes(onx.SerializeToString())
    return x[:1].astype(np.float32)


def build_mlp(path: Path, hidden: int = 512) -> np.ndarray:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    sizes = [784, hidden, hidden, 10]
    nodes, inits = [], []
    last = "x"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        b = np.zeros(n_out, dtype=np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [
            helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        last = f"a{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
    nodes.append(helper.make_node("Softmax", [last], ["probs"], axis=-1))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return rng.random((1, 784), dtype=np.float32)


def raw_onnxruntime(path: Path, x: np.ndarray, concurrency: int, seconds: float) -> LoadResult:
    """The limit: the same model run in-process with no HTTP, by `concurrency` threads."""
    from registry.formats.onnx import FORMAT
    from runtimes.onnx import OnnxRuntime

    runtime = OnnxRuntime(path, FORMAT.inspect(path).signature)
    name = runtime.signature.inputs[0].name
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.perf_counter() + 0.3 + seconds
    warm_until = deadline - seconds

    def worker() -> None:
        latencies = []
        while True:
            started = time.perf_counter()
            if started >= deadline:
                break
            runtime.run({name: x})
            if started >= warm_until:
                latencies.append((time.perf_counter() - started) * 1000)
        with lock:
            result.latencies_ms.extend(latencies)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = seconds
    result.statuses[200] = result.requests
    return result


def model_us_per_row(path: Path, x: np.ndarray, batch: int, seconds: float = 1.0) -> float:
    """One model call of `batch` rows on the serving runtime, in µs per row (the least batching can bring it to)."""
    from registry.formats.onnx import FORMAT
    from runtimes.onnx import OnnxRuntime

    runtime = OnnxRuntime(path, FORMAT.inspect(path).signature)
    feed = {runtime.signature.inputs[0].name: np.repeat(x, batch, axis=0)}
    for _ in range(20):
        runtime.run(feed)
    calls = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        runtime.run(feed)
        calls += 1
    return elapsed / calls / batch * 1e6


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and all its threads so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float | None:
    """`process_cpu_seconds` of a process and every process under it (granian serves from a child process)."""
    total = process_cpu_seconds(pid)
    if total is None:
        return None
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            total += tree_cpu_seconds(int(child)) or 0.0
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def started_server(
    argv: list[str], env: dict[str, str], port: int, ready_path: str | None, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server started with exactly `argv`, its output (its log) written to `log` as a container's would be."""
    with log.open("ab") as output:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        if ready_path is None:
            _wait_tcp(port)
        else:
            _wait_http(port, ready_path, process, log)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def server(args: list[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[subprocess.Popen[bytes]]:
    """uvicorn serving `args` (the app and its options) on `port`, quiet: the other benchmarks' web process."""
    argv = [sys.executable, "-m", "uvicorn", *args, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with tempfile.TemporaryDirectory() as folder, started_server(argv, env, port, ready_path, Path(folder) / "o") as up:
        yield up


def _wait_http(port: int, path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server on {port} never became ready: {log.read_text()[-2000:]}")


def infer_body(x: np.ndarray) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()


def binary_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The binary tensor data extension, as tritonclient.http sends it by default: JSON header, then raw bytes."""
    header = json.dumps(
        {
            "inputs": [
                {"name": "x", "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def local_site(name: str) -> tuple[Path, dict[str, str]]:
    """A scratch folder and the environment of a site in it as `make run` has one: embedded defaults (SQLite, local
    artifacts), none of the shell's DATABASE_URL, REDIS_URL or CELERY_BROKER_URL."""
    workdir = Path(tempfile.mkdtemp(prefix=f"modeldeck-bench-{name}-"))
    # MODELDECK_ACCESS_LOG too: the rows labelled `make run` measure its default.
    dropped = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MODELDECK_ACCESS_LOG"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env |= {"DJANGO_SETTINGS_MODULE": "config.settings.local", "MODELDECK_VAR_DIR": str(workdir / "var")}
    return workdir, env


def bench_team(env: dict[str, str]) -> str:
    """Migrate the site, create the team `bench` (admin `bench`), and return a developer token of it."""
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "createteam", "bench", "--admin", "bench")
    return manage(env, "issuetoken", "--team", "bench", "--user", "bench", "--role", "developer")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "serving.json")
    parser.add_argument("--modeldeck-only", action="store_true", help="skip the references (quick iterations)")
    parser.add_argument("--servers-only", action="store_true", help="only the HTTP servers side by side")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each server configuration, alternating")
    parser.add_argument("--no-grpc", action="store_true", help="skip the gRPC rows (bench/grpc_serving.py)")
    options = parser.parse_args()
    seconds = options.seconds
    workdir, env = local_site("serving")
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "MODELDECK_VAR_DIR")})
    import django

    django.setup()
    from django.conf import settings

    from common.webserver import web_command

    servers_only = options.servers_only

    models = {"iris": workdir / "iris.onnx", "mlp": workdir / "mlp.onnx", "mlp-wide": workdir / "mlp-wide.onnx"}
    inputs = {
        "iris": build_iris(models["iris"]),
        "mlp": build_mlp(models["mlp"]),
        "mlp-wide": build_mlp(models["mlp-wide"], hidden=2048),
    }
    rows: list[dict[str, Any]] = []

    def record(model: str, system: str, concurrency: int, result: LoadResult, **extra: Any) -> None:
        row = {"model": model, "system": system, "concurrency": concurrency, **result.summary(), **extra}
        rows.append(row)
        print(
            f"{model:8} {system:34} c={concurrency:<3} {row['req_per_s']:>9.1f} req/s  p50 {row['p50_ms']:7.3f} ms"
            f"  p99 {row['p99_ms']:7.3f} ms  non-2xx {row['non_2xx']}",
            flush=True,
        )

    model_cost = {
        model: {str(batch): round(model_us_per_row(models[model], inputs[model], batch), 1) for batch in (1, 32)}
        for model in ("mlp", "mlp-wide")
    }
    for model, cost in model_cost.items():
        print(f"{model:8} model alone: {cost['1']:.1f} µs per row at batch 1, {cost['32']:.1f} at batch 32", flush=True)

    for model in ("iris", "mlp") if not (options.modeldeck_only or servers_only) else ():
        for c in CONCURRENCY:
            record(
                model, "onnxruntime in-process (limit)", c, raw_onnxruntime(models[model], inputs[model], c, seconds)
            )

    def http_load(
        port: int, path: str, body: bytes, c: int, headers: dict[str, str] | None = None, warmup: float = 0.5
    ) -> LoadResult:
        request = http_request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
        return load("127.0.0.1", port, request, concurrency=c, seconds=seconds, warmup=warmup)

    def server_load(
        pid: int, port: int, path: str, body: bytes, c: int, headers: dict[str, str]
    ) -> tuple[LoadResult, dict[str, float]]:
        """`http_load`, plus the server's CPU time per request (no warm-up: every request is counted, as the CPU is)."""
        before = tree_cpu_seconds(pid)
        result = http_load(port, path, body, c, headers, warmup=0)
        after = tree_cpu_seconds(pid)
        if before is None or after is None or not result.requests:
            return result, {}
        return result, {"server_cpu_us_per_req": round((after - before) / result.requests * 1e6, 1)}

    minimal_env = {**env, "MINIMAL_MODEL": str(models["iris"])}
    port = free_port()
    minimal = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(port), "--loop", "uvloop"]  # noqa: RUF005
        + ["--http", "httptools", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT,
        env=minimal_env,
    )
    try:
        _wait_tcp(port)
        for c in CONCURRENCY if not (options.modeldeck_only or servers_only) else ():
            record("iris", "minimal ASGI app (reference)", c, http_load(port, "/", infer_body(inputs["iris"]), c))
    finally:
        minimal.terminate()
        minimal.wait()

    # ModelDeck, started with `make run`'s web command line (common.webserver), its default configuration.
    token = bench_team(env)
    auth = {"Authorization": f"Bearer {token}"}
    port = free_port()
    make_run = web_command(host="127.0.0.1", port=port, workers=1, access_log=settings.MODELDECK_ACCESS_LOG)
    propagation: float | None = None
    with started_server(make_run, env, port, "/v2/health/ready", workdir / "make-run.log") as web_process:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=auth, timeout=120) as api:
            for model in models:
                assert api.post("/api/v1/models", json={"team": "bench", "name": model}).status_code == 201
                with models[model].open("rb") as handle:
                    created = api.post(
                        f"/api/v1/models/bench/{model}/versions", files={"file": (f"{model}.onnx", handle)}
                    )
                assert created.status_code == 201, created.text
                for name in (model, f"{model}-batched"):
                    made = api.post("/api/v1/endpoints", json={"name": name, "model": f"bench/{model}", "version": 1})
                    assert made.status_code == 201, made.text
            for name in ("mlp-batched", "mlp-wide-batched"):
                patched = api.patch(f"/api/v1/endpoints/{name}", json={"max_batch_size": 32, "max_queue_delay_ms": 2})
                assert patched.status_code == 200, patched.text
            for model in models:
                for name in (model, f"{model}-batched"):
                    _wait_ready(api, name)
            check = api.post("/v2/models/iris/infer", content=infer_body(inputs["iris"]))
            assert check.status_code == 200, check.text
        for model in ("iris", "mlp") if not servers_only else ():
            for c in CONCURRENCY:
                body = infer_body(inputs[model])
                record(
                    model, "ModelDeck /v2 JSON, token", c, http_load(port, f"/v2/models/{model}/infer", body, c, auth)
                )
        # Batching off and on, each with the server's CPU per request: what the model's share of it is decides
        # how much batching can give (see _report).
        json_mlp = infer_body(inputs["mlp"])
        for name, label in (
            (("mlp", "ModelDeck /v2 JSON, off"), ("mlp-batched", "ModelDeck /v2 JSON, batching"))
            if not servers_only
            else ()
        ):
            result, cpu = server_load(web_process.pid, port, f"/v2/models/{name}/infer", json_mlp, 32, auth)
            record("mlp", label, 32, result, **cpu)
        for model in ("mlp", "mlp-wide") if not servers_only else ():
            body, binary = binary_body(inputs[model])
            for name, label in (
                (model, "ModelDeck /v2 binary, token"),
                (f"{model}-batched", "ModelDeck /v2 binary, batching"),
            ):
                path = f"/v2/models/{name}/infer"
                result, cpu = server_load(web_process.pid, port, path, body, 32, {**auth, **binary})
                record(model, label, 32, result, **cpu)
        if not options.modeldeck_only:
            _servers_side_by_side(
                record=record,
                env=env,
                workdir=workdir,
                make_run=(web_process, port),
                minimal_env=minimal_env,
                x=inputs["iris"],
                auth=auth,
                seconds=seconds,
                rounds=options.rounds,
            )
        if not servers_only:
            propagation = _promote_to_served(api_base=base, auth=auth, workdir=workdir, x=inputs["iris"])
            print(f"promote -> first answer from the new version: {propagation * 1000:.1f} ms", flush=True)

    # The ceiling for batching in Python: the leanest server there can be (bench/lean_server.py), off and on.
    body, binary = binary_body(inputs["mlp"])
    for mode in ("off", "on") if not (options.modeldeck_only or servers_only) else ():
        port = free_port()
        lean = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "lean_server.py"), str(models["mlp"]), str(port), mode],
            cwd=ROOT,
            env=env,
        )
        try:
            _wait_tcp(port)
            result, cpu = server_load(lean.pid, port, "/", body, 32, binary)
            record("mlp", f"lean raw server binary, batching {mode}", 32, result, **cpu)
        finally:
            lean.terminate()
            lean.wait()

    # The process model: why `uvicorn --workers 2` showed a flat 44 ms p50 (see README).
    for loop_name in ("asyncio", "uvloop") if not (options.modeldeck_only or servers_only) else ():
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(port), "--workers", "2"]  # noqa: RUF005
            + ["--loop", loop_name, "--log-level", "warning", "--no-access-log"],
            cwd=ROOT,
            env=minimal_env,
        )
        try:
            _wait_tcp(port)
            time.sleep(1.0)
            result = http_load(port, "/", infer_body(inputs["iris"]), 1)
            record("iris", f"minimal app, --workers 2, {loop_name}", 1, result)
        finally:
            process.terminate()
            process.wait()

    if not (options.modeldeck_only or servers_only):
        _report(rows, model_cost)
    server_summary = _report_servers(rows)
    grpc_summary = None
    if not (options.no_grpc or options.modeldeck_only):
        # Imported here: bench.grpc_serving imports this module. Its servers start after these have stopped.
        from bench import grpc_serving

        grpc_rows = grpc_serving.measure(seconds=options.seconds, rounds=options.rounds)
        grpc_summary = grpc_serving.summarize(grpc_rows)
        grpc_serving.print_table(grpc_summary)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "rows": rows,
                "model_us_per_row": model_cost,
                "promote_to_served_ms": round(propagation * 1000, 1) if propagation is not None else None,
                "servers": server_summary,
                "grpc": grpc_summary,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {options.out}")
    subprocess.run(["rm", "-rf", str(workdir)], check=False)


SERVERS_MAKE_RUN = "make run default: uvicorn + fast path"
SERVERS_ACCESS_LOG = "make run + access log on"
SERVERS_GRANIAN_RSGI = "granian RSGI, ModelDeck"
SERVERS_GRANIAN_ASGI = "granian ASGI, ModelDeck"
SERVERS_MINIMAL_UVICORN = "minimal app, uvicorn (ASGI)"
SERVERS_MINIMAL_GRANIAN = "minimal app, granian (RSGI)"


def _granian(target: str, interface: str, port: int) -> list[str]:
    """granian as runstack runs uvicorn: one worker, uvloop, info log, no access log (granian's default)."""
    argv = [sys.executable, "-m", "granian", "--interface", interface, "--loop", "uvloop", "--workers", "1"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info", "--no-access-log"]
    return [*argv, target]


def _servers_side_by_side(
    *,
    record: Callable[..., None],
    env: dict[str, str],
    workdir: Path,
    make_run: tuple[subprocess.Popen[bytes], int],
    minimal_env: dict[str, str],
    x: np.ndarray,
    auth: dict[str, str],
    seconds: float,
    rounds: int,
) -> None:
    """iris V2 JSON on every HTTP server configuration, all started at once and measured in alternating rounds
    (ABC..., then ...CBA) so that a slow spell of this shared machine weighs on each about equally."""
    from common.webserver import web_command

    body = infer_body(x)
    model_path, minimal_path = "/v2/models/iris/infer", "/"
    with_token = {"Content-Type": "application/json", **auth}
    plain = {"Content-Type": "application/json"}
    ports = {name: free_port() for name in ("log", "rsgi", "asgi", "min-uvicorn", "min-granian")}
    # name -> (argv, environment, ready path (None: just listening), request path, headers, concurrencies)
    plans: dict[str, tuple[list[str], dict[str, str], str | None, str, dict[str, str], tuple[int, ...]]] = {
        SERVERS_ACCESS_LOG: (
            web_command(host="127.0.0.1", port=ports["log"], workers=1, access_log=True),
            env,
            "/v2/health/ready",
            model_path,
            with_token,
            (8,),
        ),
        SERVERS_GRANIAN_RSGI: (
            _granian("config.rsgi:application", "rsgi", ports["rsgi"]),
            env,
            "/v2/health/ready",
            model_path,
            with_token,
            CONCURRENCY,
        ),
        SERVERS_GRANIAN_ASGI: (
            _granian("config.asgi:application", "asgi", ports["asgi"]),
            env,
            "/v2/health/ready",
            model_path,
            with_token,
            CONCURRENCY,
        ),
        SERVERS_MINIMAL_UVICORN: (
            [sys.executable, "-m", "uvicorn", "bench.minimal_app:app", "--port", str(ports["min-uvicorn"])]  # noqa: RUF005
            + ["--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"],
            minimal_env,
            None,
            minimal_path,
            plain,
            CONCURRENCY,
        ),
        SERVERS_MINIMAL_GRANIAN: (
            _granian("bench.minimal_rsgi:app", "rsgi", ports["min-granian"]),
            minimal_env,
            None,
            minimal_path,
            plain,
            CONCURRENCY,
        ),
    }
    with ExitStack() as stack:
        running: dict[str, tuple[subprocess.Popen[bytes], int, str, dict[str, str], tuple[int, ...], list[str]]] = {}
        make_run_process, make_run_port = make_run
        running[SERVERS_MAKE_RUN] = (make_run_process, make_run_port, model_path, with_token, CONCURRENCY, [])
        for name, (argv, server_env, ready, path, headers, concurrencies) in plans.items():
            port = int(argv[argv.index("--port") + 1])
            log = workdir / f"server-{port}.log"
            process = stack.enter_context(started_server(argv, server_env, port, ready, log))
            running[name] = (process, port, path, headers, concurrencies, argv)
        order = list(running)
        for _process, port, path, headers, _, _ in running.values():
            request = http_request("POST", path, body, headers)
            warm = load("127.0.0.1", port, request, concurrency=8, seconds=0.5, warmup=0)
            if not warm.requests or warm.non_2xx:
                raise RuntimeError(f"server on {port} answered {warm.statuses} while warming up")
        for c in CONCURRENCY:
            for round_number in range(rounds):
                for name in order if round_number % 2 == 0 else reversed(order):
                    process, port, path, headers, concurrencies, argv = running[name]
                    if c not in concurrencies:
                        continue
                    request = http_request("POST", path, body, headers)
                    before = tree_cpu_seconds(process.pid)
                    result = load("127.0.0.1", port, request, concurrency=c, seconds=seconds, warmup=0)
                    after = tree_cpu_seconds(process.pid)
                    extra: dict[str, Any] = {"round": round_number + 1, "group": "servers"}
                    if before is not None and after is not None and result.requests:
                        extra["server_cpu_us_per_req"] = round((after - before) / result.requests * 1e6, 1)
                    if argv:
                        extra["command"] = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
                    record("iris", name, c, result, **extra)


def _report_servers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The side-by-side table (median of the rounds, and their spread) and the ratios that decide."""
    group = [row for row in rows if row.get("group") == "servers"]
    if not group:
        return {}
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for row in group:
        cell = table.setdefault(row["system"], {}).setdefault(str(row["concurrency"]), {"runs": []})
        cell["runs"].append(
            {k: row.get(k) for k in ("req_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_req", "non_2xx")}
        )
    print("\nHTTP servers side by side, iris V2 JSON (median of the rounds; every round's req/s in brackets)")
    for system, cells in table.items():
        for level, cell in cells.items():
            runs = cell["runs"]
            for key in ("req_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_req"):
                values = [run[key] for run in runs if run.get(key) is not None]
                cell[key] = round(float(np.median(values)), 3) if values else None
            spread = ", ".join(f"{run['req_per_s']:.0f}" for run in runs)
            print(
                f"  {system:38} c={level:<3} {cell['req_per_s']:>8.0f} req/s [{spread}]  p50 {cell['p50_ms']:.3f}"
                f"  p99 {cell['p99_ms']:.3f} ms  server CPU {cell['server_cpu_us_per_req'] or float('nan'):.0f} µs/req"
            )
    ratios: dict[str, float] = {}

    def ratio(label: str, a: str, b: str, c: int) -> None:
        if a in table and b in table and str(c) in table[a] and str(c) in table[b]:
            ratios[label] = round(table[a][str(c)]["req_per_s"] / table[b][str(c)]["req_per_s"], 3)

    ratio("make run default / minimal app uvicorn, c=8 (target >= 0.85)", SERVERS_MAKE_RUN, SERVERS_MINIMAL_UVICORN, 8)
    ratio("access log on / make run default, c=8", SERVERS_ACCESS_LOG, SERVERS_MAKE_RUN, 8)
    for c in CONCURRENCY:
        ratio(f"granian RSGI ModelDeck / make run default, c={c}", SERVERS_GRANIAN_RSGI, SERVERS_MAKE_RUN, c)
        ratio(f"granian ASGI ModelDeck / make run default, c={c}", SERVERS_GRANIAN_ASGI, SERVERS_MAKE_RUN, c)
        ratio(f"minimal app granian RSGI / uvicorn, c={c}", SERVERS_MINIMAL_GRANIAN, SERVERS_MINIMAL_UVICORN, c)
        ratio(f"granian RSGI ModelDeck / minimal app granian, c={c}", SERVERS_GRANIAN_RSGI, SERVERS_MINIMAL_GRANIAN, c)
    print("ratios (req/s, medians of this run)")
    for label, value in ratios.items():
        print(f"  {label}: {value:.2f}x")
    return {"table": table, "ratios": ratios}


def _promote_to_served(*, api_base: str, auth: dict[str, str], workdir: Path, x: np.ndarray) -> float:
    """Upload a second iris version, promote it, and time until the data plane answers from it."""
    path = workdir / "iris-v2.onnx"
    build_iris(path, regularization=0.1)
    with httpx.Client(base_url=api_base, headers=auth, timeout=60) as api:
        with path.open("rb") as handle:
            assert (
                api.post("/api/v1/models/bench/iris/versions", files={"file": ("iris.onnx", handle)}).status_code == 201
            )
        started = time.perf_counter()
        assert api.post("/api/v1/endpoints/iris/promote", json={"version": 2}).status_code == 201
        while api.post("/v2/models/iris/infer", content=infer_body(x)).json()["model_version"] != "2":
            pass
        return time.perf_counter() - started


def _wait_tcp(port: int) -> None:
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _wait_ready(api: httpx.Client, name: str) -> None:
    for _ in range(100):
        if api.get(f"/v2/models/{name}/ready").status_code == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"endpoint {name} never became ready")


def _find(rows: list[dict[str, Any]], model: str, system: str, c: int) -> dict[str, Any]:
    return next(r for r in rows if r["model"] == model and r["system"].startswith(system) and r["concurrency"] == c)


def _report(rows: list[dict[str, Any]], model_cost: dict[str, dict[str, float]]) -> None:
    pick: Callable[[str, str, int], dict[str, Any]] = lambda m, s, c: _find(rows, m, s, c)  # noqa: E731
    md8 = pick("iris", "ModelDeck", 8)["req_per_s"]
    md1 = pick("iris", "ModelDeck", 1)["p50_ms"]
    min1 = pick("iris", "minimal", 1)["p50_ms"]
    print("\ntargets (ratios from this run)")
    mlflow = MLFLOW_REQ_S[8]
    print(f"  iris c=8 throughput vs MLflow's measured {mlflow:.0f} req/s: {md8 / mlflow:.2f}x (target >= 3x)")
    print(f"  iris c=1 p50 vs the minimal app: {md1 / min1:.2f}x (target <= 1.5x)")
    print("  batching on vs off at c=32 (target >= 2x for mlp):")
    for model, encoding in (("mlp", "JSON"), ("mlp", "binary"), ("mlp-wide", "binary")):
        off_row = pick(model, f"ModelDeck /v2 {encoding}, {'off' if encoding == 'JSON' else 'token'}", 32)
        on_row = pick(model, f"ModelDeck /v2 {encoding}, batching", 32)
        cost = model_cost[model]
        print(
            f"    {model} {encoding}: {on_row['req_per_s'] / off_row['req_per_s']:.2f}x; server CPU per request"
            f" {off_row.get('server_cpu_us_per_req', float('nan')):.0f} µs off, "
            f"{on_row.get('server_cpu_us_per_req', float('nan')):.0f} µs on; the model alone"
            f" {cost['1']:.0f} µs a row at batch 1, {cost['32']:.0f} at batch 32"
        )
    off_row, on_row = (pick("mlp", f"lean raw server binary, batching {mode}", 32) for mode in ("off", "on"))
    print(
        f"    mlp binary, the leanest Python server (no validation, auth or recording):"
        f" {on_row['req_per_s'] / off_row['req_per_s']:.2f}x; server CPU per request"
        f" {off_row.get('server_cpu_us_per_req', float('nan')):.0f} µs off,"
        f" {on_row.get('server_cpu_us_per_req', float('nan')):.0f} µs on"
    )


if __name__ == "__main__":
    main()

"""The data plane's own cost per request, in process: no sockets, no client, so far less noise than bench/serving.py.

Sets up ModelDeck on the embedded defaults in a temporary folder (as bench/serving.py does), deploys the seeded MLP
784-512-512-10 twice (batching off, and on with `max_batch_size` 32 / `max_queue_delay_ms` 2), then writes raw
HTTP/1.1 requests straight into protocol instances on one uvloop loop (uvicorn's own httptools protocol, which
takes the ASGI path, and `serving.fastpath.DataPlaneProtocol`), 32 connections each waiting for its answer before
sending the next (closed loop, as the load generator), and reports the process's
CPU time per request (every thread: the event loop, onnxruntime's and the batcher's) for Open Inference Protocol
binary and JSON requests, with the model's own cost per row beside it. What is left after the model's share is
what the data plane costs a request: routing, the token check, decoding and checking, batching, encoding, recording
and the HTTP protocol. Use it to weigh a change to the request path; bench/serving.py has the over-the-wire numbers.
Usage: .venv/bin/python bench/dataplane.py [--requests 16000] [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this folder would come first on sys.path and this file would shadow the `serving` package.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402

from bench.serving import ROOT, bench_team, binary_body, build_mlp, infer_body, local_site, model_us_per_row  # noqa: E402

CONCURRENCY = 32


class Sink(asyncio.Transport):
    """A connection's far end: counts the responses (the protocol writes each in one call) and wakes the sender."""

    def __init__(self) -> None:
        super().__init__()
        self.answered: asyncio.Future[bytes] | None = None
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(bytes(data[:12]))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def raw_request(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "host: bench", f"content-length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + body


async def measure(
    application: Any, protocol_class: type[HttpToolsProtocol], request: bytes, requests: int, repeats: int
) -> list[float]:
    """CPU µs per request of `repeats` closed-loop runs of `requests` requests over CONCURRENCY connections."""
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(
        application, http=protocol_class, lifespan="off", proxy_headers=False, log_config=None, access_log=False
    )
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()

    async def connection(count: int) -> None:
        protocol = protocol_class(config=config, server_state=state, app_state={})
        sink = Sink()
        protocol.connection_made(sink)
        for _ in range(count):
            sink.answered = loop.create_future()
            protocol.data_received(request)
            status = await sink.answered
            if not status.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"the data plane answered {status!r}")
        protocol.connection_lost(None)

    await asyncio.gather(*(connection(200) for _ in range(CONCURRENCY)))  # warm: router, token cache, batcher
    results = []
    for _ in range(repeats):
        started = time.process_time()
        await asyncio.gather(*(connection(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        results.append((time.process_time() - started) / (requests // CONCURRENCY * CONCURRENCY) * 1e6)
    return results


async def deploy(application: Any, token: str, model: Path) -> None:
    import httpx

    transport = httpx.ASGITransport(app=application)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as api:
        assert (await api.post("/api/v1/models", json={"team": "bench", "name": "mlp"})).status_code == 201
        created = await api.post("/api/v1/models/bench/mlp/versions", files={"file": ("mlp.onnx", model.read_bytes())})
        assert created.status_code == 201, created.text
        for name in ("mlp", "mlp-batched"):
            made = await api.post("/api/v1/endpoints", json={"name": name, "model": "bench/mlp", "version": 1})
            assert made.status_code == 201, made.text
        settings = {"max_batch_size": 32, "max_queue_delay_ms": 2}
        assert (await api.patch("/api/v1/endpoints/mlp-batched", json=settings)).status_code == 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dataplane.json")
    options = parser.parse_args()
    workdir, env = local_site("dataplane")
    token = bench_team(env)
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "MODELDECK_VAR_DIR")})
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        os.environ.pop(name, None)
    model = workdir / "mlp.onnx"
    x = build_mlp(model)
    model_cost = {str(batch): round(model_us_per_row(model, x, batch), 1) for batch in (1, 32)}

    import django

    django.setup()
    import uvloop

    from config.asgi import application
    from serving.fastpath import DataPlaneProtocol

    protocols = {"uvicorn httptools (ASGI)": HttpToolsProtocol, "DataPlaneProtocol": DataPlaneProtocol}

    auth = {"authorization": f"Bearer {token}"}
    binary, binary_headers = binary_body(x)
    cases = [
        ("binary", "off", "mlp", binary, {**auth, **{k.lower(): v for k, v in binary_headers.items()}}),
        ("binary", "on", "mlp-batched", binary, {**auth, **{k.lower(): v for k, v in binary_headers.items()}}),
        ("JSON", "off", "mlp", infer_body(x), {**auth, "content-type": "application/json"}),
        ("JSON", "on", "mlp-batched", infer_body(x), {**auth, "content-type": "application/json"}),
    ]
    rows: list[dict[str, Any]] = []

    async def run() -> None:
        await deploy(application, token, model)
        for (encoding, batching, endpoint, body, headers), (label, protocol_class) in itertools.product(
            cases, protocols.items()
        ):
            request = raw_request(f"/v2/models/{endpoint}/infer", body, headers)
            runs = await measure(application, protocol_class, request, options.requests, options.repeats)
            row = {
                "protocol": label,
                "encoding": encoding,
                "batching": batching,
                "cpu_us_per_request_min": round(min(runs), 1),
                "cpu_us_per_request_median": round(statistics.median(runs), 1),
            }
            rows.append(row)
            print(
                f"MLP 784-512-512-10, {encoding:6} batching {batching:3}, {label:24}: "
                f"{row['cpu_us_per_request_min']:6.1f} µs CPU "
                f"a request (min of {options.repeats}; median {row['cpu_us_per_request_median']:.1f})",
                flush=True,
            )

    uvloop.run(run())
    print(f"the model alone: {model_cost['1']:.1f} µs a row at batch 1, {model_cost['32']:.1f} at batch 32")
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "concurrency": CONCURRENCY,
                "rows": rows,
                "model_us_per_row": model_cost,
            },
            indent=2,
        )
    )
    print(f"\nwritten: {options.out}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""What monitoring costs: the recorder call per request, and serving throughput with recording on vs off.

1. `Recorder.record` in-process, timed in batches (target: under 20 µs per request).
2. ModelDeck's web process started as `make run` starts it, twice (MODELDECK_RECORD_INFERENCE=1, then 0), serving
   the iris model over /v2 JSON at concurrency 8 and 32 (target: the two under 10 % apart). Runs alternate
   on/off/on/off to spread the machine's noise over both.
Usage: .venv/bin/python bench/monitoring.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder would come first on sys.path and shadow the project's packages.
sys.path[0] = str(ROOT)
from bench.loadgen import http_request, load  # noqa: E402
from bench.serving import bench_team, build_iris, free_port, infer_body, local_site, server  # noqa: E402


def recorder_cost() -> tuple[float, float]:
    from monitoring.recorder import Recorder

    recorder = Recorder()
    samples = []
    for _ in range(50):
        started = time.perf_counter()
        for i in range(2000):
            recorder.record("iris", 1 + i % 2, "primary", 200, 0.0004, 1)
        samples.append((time.perf_counter() - started) / 2000 * 1e6)
        recorder.swap()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    seconds = parser.parse_args().seconds
    p50, p99 = recorder_cost()
    print(f"Recorder.record: p50 {p50:.2f} µs, p99 {p99:.2f} µs per request (target < 20 µs)")

    workdir, env = local_site("monitoring")
    x = build_iris(workdir / "iris.onnx")
    token = bench_team(env)
    auth = {"Authorization": f"Bearer {token}"}
    web = ["config.asgi:application", "--loop", "uvloop", "--lifespan", "on"]
    web += ["--http", "serving.fastpath:DataPlaneProtocol"]
    request = http_request("POST", "/v2/models/iris/infer", infer_body(x), {"Content-Type": "application/json", **auth})
    results: dict[tuple[str, int], list[float]] = {}
    created = False
    for _ in range(2):
        for mode in ("on", "off"):
            port = free_port()
            with server(
                web, {**env, "MODELDECK_RECORD_INFERENCE": "1" if mode == "on" else "0"}, port, "/v2/health/ready"
            ):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=60) as api:
                    if not created:
                        api.post("/api/v1/models", json={"team": "bench", "name": "iris"}).raise_for_status()
                        with (workdir / "iris.onnx").open("rb") as handle:
                            api.post("/api/v1/models/bench/iris/versions", files={"file": ("iris.onnx", handle)})
                        api.post("/api/v1/endpoints", json={"name": "iris", "model": "bench/iris", "version": 1})
                        created = True
                    for _ in range(100):
                        if api.post("/v2/models/iris/infer", content=infer_body(x)).status_code == 200:
                            break
                        time.sleep(0.1)
                for c in (8, 32):
                    result = load("127.0.0.1", port, request, concurrency=c, seconds=seconds)
                    results.setdefault((mode, c), []).append(result.rate)
                    print(f"monitoring {mode:3} c={c:<3} {result.rate:9.1f} req/s  p50 {result.percentile(50):.3f} ms")
    for c in (8, 32):
        on, off = statistics.fmean(results[("on", c)]), statistics.fmean(results[("off", c)])
        apart = abs(off - on) / off * 100
        print(f"c={c}: on {on:.0f} req/s vs off {off:.0f} req/s -> {apart:.1f} % apart (target < 10 %)")
    subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()

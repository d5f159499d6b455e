"""Measure a model with the runtime that serves it: load time, latency percentiles and throughput per batch size.

Run as a child process (`python -m registry.benchmark FORMAT PATH` with the signature as JSON on stdin) so that
its peak memory is the model's and the runtime's alone; it prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from registry.synthetic_inputs import synthesize_inputs

# "Measured with the same runtime that will serve it": the runtime layer's loaders are the ones serving uses.
from runtimes import LOADERS
from runtimes.tensors import Signature

BATCH_SIZES = (1, 8, 32)
SERVED_FORMATS = tuple(LOADERS)  # the formats a serving runtime runs
WARMUP_RUNS = 5
# Per batch size: stop after this many runs or this many seconds, whichever comes first.
MAX_RUNS = 300
MAX_SECONDS = 2.0


def _percentile(sorted_ms: list[float], fraction: float) -> float:
    index = min(len(sorted_ms) - 1, max(0, round(fraction * len(sorted_ms)) - 1))
    return sorted_ms[index]


def benchmark_model(format_name: str, path: Path, signature: Signature) -> dict[str, Any]:
    """Load the model, warm it up, and time runs at each batch size on seeded synthetic inputs."""
    started = time.perf_counter()
    runner = LOADERS[format_name](path, signature)
    load_ms = (time.perf_counter() - started) * 1000
    batches = []
    for batch in BATCH_SIZES:
        inputs = synthesize_inputs(signature, seed=batch, rows=batch)
        for _ in range(WARMUP_RUNS):
            runner.run(inputs)
        timings: list[float] = []
        deadline = time.perf_counter() + MAX_SECONDS
        while len(timings) < MAX_RUNS and time.perf_counter() < deadline:
            start = time.perf_counter()
            runner.run(inputs)
            timings.append((time.perf_counter() - start) * 1000)
        timings.sort()
        mean_ms = statistics.fmean(timings)
        batches.append(
            {
                "batch_size": batch,
                "runs": len(timings),
                "p50_ms": round(_percentile(timings, 0.50), 4),
                "p95_ms": round(_percentile(timings, 0.95), 4),
                "p99_ms": round(_percentile(timings, 0.99), 4),
                "throughput_rows_per_s": round(batch / (mean_ms / 1000), 1),
            }
        )
    return {"load_ms": round(load_ms, 2), "file_size": path.stat().st_size, "batches": batches}


def _rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    format_name, path = sys.argv[1], Path(sys.argv[2])
    signature = Signature.from_dict(json.load(sys.stdin))
    baseline = _rss_mib()  # the interpreter, numpy and the runtime's imports, before the model is loaded
    result = benchmark_model(format_name, path, signature)
    peak = _rss_mib()
    result["memory"] = {"peak_rss_mib": peak, "model_and_runs_mib": round(peak - baseline, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

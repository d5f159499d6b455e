"""A small closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next request on reply.

Raw asyncio streams on uvloop, no HTTP client library, so the client adds as little as it can to what it measures
(on this 2-core machine the client and the server share the CPU; compare ratios from one run).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """Encode one keep-alive HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    bodies: list[bytes] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def summary(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "req_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else float("nan"),
            "non_2xx": self.non_2xx,
        }


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, (await reader.readexactly(length) if length else b"")
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunks.append(await reader.readexactly(size + 2))
        if size == 0:
            return status, b"".join(chunk[:-2] for chunk in chunks)


async def _connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    warmup_until: float,
    result: LoadResult,
    keep_bodies: int,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= deadline:
                return
            writer.write(request)
            status, body = await _read_response(reader)
            if started < warmup_until:
                continue
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if len(result.bodies) < keep_bodies:
                result.bodies.append(body)
    finally:
        writer.close()


async def run_load(
    host: str,
    port: int,
    request: bytes,
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 0.5,
    keep_bodies: int = 0,
) -> LoadResult:
    """Drive `concurrency` connections for `warmup + seconds`; only requests started after the warm-up count."""
    result = LoadResult()
    now = time.perf_counter()
    warmup_until = now + warmup
    deadline = warmup_until + seconds
    await asyncio.gather(
        *(_connection(host, port, request, deadline, warmup_until, result, keep_bodies) for _ in range(concurrency))
    )
    result.seconds = seconds
    return result


def load(host: str, port: int, request: bytes, *, concurrency: int, seconds: float, **kwargs: float) -> LoadResult:
    """Run `run_load` on a fresh uvloop event loop."""
    import uvloop

    return uvloop.run(run_load(host, port, request, concurrency=concurrency, seconds=seconds, **kwargs))  # type: ignore[arg-type]

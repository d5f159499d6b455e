"""Serve the inference protocols over gRPC (KServe V2, TF Serving) until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

# Calls in flight when SIGTERM comes get this long to finish (Kubernetes waits 30 s before it kills).
STOP_GRACE_SECONDS = 10.0


class Command(BaseCommand):
    help = "Serve KServe V2 and TF Serving over gRPC on one port, with grpc.health.v1 for probes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 -- a server's port, as the web process's
        parser.add_argument("--port", type=int, default=settings.MODELDECK_GRPC_PORT)
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=settings.MODELDECK_GRPC_METRICS_PORT,
            help="serve GET /metrics (this process's Prometheus folder) on this port too; 0: none",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        address = f"{options['host']}:{options['port']}"
        metrics = (options["host"], options["metrics_port"]) if options["metrics_port"] else None
        asyncio.run(serve(address, self.stdout.write, metrics))


async def serve(
    address: str, write: Any = print, metrics: tuple[str, int] | None = None, stop: asyncio.Event | None = None
) -> None:
    """Start the router and the monitoring flusher as a web process's lifespan does, serve (and answer scrapes on
    `metrics`, (host, port), if given) until SIGTERM or SIGINT, or `stop` is set, and stop cleanly."""
    from monitoring.drift import drift_monitor
    from monitoring.flusher import flusher
    from monitoring.metrics_port import metrics_port_start
    from monitoring.recorder import recorder
    from serving.grpc.server import grpc_server_build, grpc_server_stop
    from serving.router import router_get

    recorder.enabled = settings.MODELDECK_RECORD_INFERENCE
    drift_monitor.sample_rate = settings.MODELDECK_DRIFT_SAMPLE_RATE if recorder.enabled else 0.0
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    router = router_get()
    # Load every live endpoint before the health service says SERVING, and follow the control plane from now on.
    router.start()
    flusher.start()
    server = await grpc_server_build(address)
    await server.start()
    write(f"gRPC inference on {address} (KServe V2; grpc.health.v1)")
    scrapes = await metrics_port_start(*metrics) if metrics else None
    if metrics:
        write(f"Prometheus metrics on http://{metrics[0]}:{metrics[1]}/metrics")
    try:
        await stop.wait()
    finally:
        if scrapes is not None:
            scrapes.close()
        await grpc_server_stop(server, STOP_GRACE_SECONDS)
        router.stop()
        await flusher.stop()
        write("gRPC server stopped")

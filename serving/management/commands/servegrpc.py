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

    def handle(self, *args: Any, **options: Any) -> None:
        address = f"{options['host']}:{options['port']}"
        asyncio.run(serve(address, self.stdout.write))


async def serve(address: str, write: Any = print) -> None:
    """Start the router and the monitoring flusher as a web process's lifespan does, serve, and stop cleanly."""
    from monitoring.drift import drift_monitor
    from monitoring.flusher import flusher
    from monitoring.recorder import recorder
    from serving.grpc.server import grpc_server_build, grpc_server_stop
    from serving.router import router_get

    recorder.enabled = settings.MODELDECK_RECORD_INFERENCE
    drift_monitor.sample_rate = settings.MODELDECK_DRIFT_SAMPLE_RATE if recorder.enabled else 0.0
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
    try:
        await stop.wait()
    finally:
        await grpc_server_stop(server, STOP_GRACE_SECONDS)
        router.stop()
        await flusher.stop()
        write("gRPC server stopped")

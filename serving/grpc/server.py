"""The gRPC server: KServe V2 and TF Serving on one port, with the standard health service for probes.

Built on the running event loop (grpc.aio): the data plane's router, batchers and recorder expect the one loop they
were first used on, as in a web process. `servegrpc` runs it; tests run it on a thread of their own.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import grpc
from django.conf import settings
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from serving.grpc import calls
from serving.grpc.tfserving import MODEL_SERVICE, PREDICTION_SERVICE, tfserving_handlers
from serving.grpc.v2 import SERVICE as V2_SERVICE
from serving.grpc.v2 import v2_handlers
from serving.router import router_get

logger = logging.getLogger(__name__)

READY_POLL_SECONDS = 0.1
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Each server's health service and the task that marks it serving: grpc.aio.Server holds neither.
_health: weakref.WeakKeyDictionary[grpc.aio.Server, tuple[health.aio.HealthServicer, asyncio.Task[None]]] = (
    weakref.WeakKeyDictionary()
)


# What a probe may name ("" is the whole server): each service answers as soon as the releases were read.
HEALTH_SERVICES = ("", V2_SERVICE, PREDICTION_SERVICE, MODEL_SERVICE)


async def grpc_server_build(address: str) -> grpc.aio.Server:
    """A gRPC server bound to `address` ("host:port"), not started: the V2 service, TF Serving's, and
    `grpc.health.v1.Health`, NOT_SERVING until the router has read the releases.

    A message over MODELDECK_MAX_INFER_BYTES is refused by gRPC itself (RESOURCE_EXHAUSTED) before it is read; the
    inference calls' messages count against MODELDECK_MAX_INFLIGHT_BODY_BYTES until they are answered.
    """
    limit = settings.MODELDECK_MAX_INFER_BYTES
    calls.limits_read()
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            # One process per port (the router and its warm models are per process), never several sharing it.
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers(tuple(v2_handlers() + tfserving_handlers()))
    checker = health.aio.HealthServicer()
    for service in HEALTH_SERVICES:
        await checker.set(service, NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address}")
    task = asyncio.get_running_loop().create_task(_serving_when_ready(checker), name="grpc-health")
    _health[server] = (checker, task)
    return server


async def _serving_when_ready(checker: health.aio.HealthServicer) -> None:
    router = router_get()
    while not router.ready:
        await asyncio.sleep(READY_POLL_SECONDS)
    for service in HEALTH_SERVICES:
        await checker.set(service, SERVING)
    logger.debug("gRPC health: serving")


async def grpc_server_stop(server: grpc.aio.Server, grace: float | None) -> None:
    """Tell the probes NOT_SERVING, then stop: calls in flight get `grace` seconds to finish."""
    found = _health.pop(server, None)
    if found is not None:
        checker, task = found
        task.cancel()
        await checker.enter_graceful_shutdown()
    await server.stop(grace)

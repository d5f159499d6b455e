"""Decode large request bodies off the event loop, in helper processes.

Why processes and not threads: orjson, `json`, the csv module and numpy's conversion of lists all hold the GIL for
the whole body (a 50 MB JSON body is most of a second of CPU on the 2-core development VM), so a thread stalls the
loop just the same. A helper process costs a copy of the body out and of the arrays back, at memcpy speed, and
leaves the loop free to answer every other request meanwhile (bench/serving.py's "big bodies" rows measure it).
Bodies up to MODELDECK_OFFLOOP_DECODE_BYTES are decoded in place: for them the copies cost more than the decoding.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed

from serving.protocols.errors import ProtocolError

T = TypeVar("T")

MAX_PROCESSES = 4

_pool: ProcessPoolExecutor | None = None
# MODELDECK_OFFLOOP_DECODE_BYTES, read once: every request asks, and a read through Django's lazy settings object
# costs about as much as the rest of this check (kept in step with the setting when a test changes it).
_threshold: int | None = None


async def body_decode(size: int, decode: Callable[..., T], *args: Any) -> T:
    """`decode(*args)`, run in a helper process when the body it decodes is `size` bytes over the threshold.

    `decode` and its arguments cross to the process by pickle: a module-level function of serving.protocols."""
    global _threshold
    if _threshold is None:
        _threshold = settings.MODELDECK_OFFLOOP_DECODE_BYTES
    if size <= _threshold:
        return decode(*args)
    try:
        return await asyncio.get_running_loop().run_in_executor(_executor(), decode, *args)
    except BrokenProcessPool:
        # A helper died (killed for memory): start afresh for the next request, and let this one retry.
        decoding_stop(wait=False)
        raise ProtocolError(
            "the request body could not be decoded now; retry shortly", 503, {"retry-after": "1"}
        ) from None


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # Spawned, not forked: the web process runs threads (the router's, asgiref's) that a fork would copy mid-step.
        _pool = ProcessPoolExecutor(
            max_workers=min(MAX_PROCESSES, os.cpu_count() or 1), mp_context=multiprocessing.get_context("spawn")
        )
    return _pool


def decoding_stop(*, wait: bool = True) -> None:
    """Stop the helper processes (at shutdown; they are started again on the next large body)."""
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def _forget_threshold(*, setting: str, **kwargs: Any) -> None:
    global _threshold
    if setting == "MODELDECK_OFFLOOP_DECODE_BYTES":
        _threshold = None


setting_changed.connect(_forget_threshold)

"""Dynamic batching for the data plane: concurrent requests to one model version share one model call."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Tensors = dict[str, np.ndarray]
# Requests with equal keys can be stacked on axis 0: same input names, dtypes and non-batch dimensions.
_BatchKey = tuple[tuple[str, np.dtype[Any], tuple[int, ...]], ...]


@dataclass(slots=True)
class BatcherStats:
    """Counters of one Batcher, for monitoring and tests."""

    requests: int = 0
    batches: int = 0  # model calls, including per-request calls after a fallback
    rows: int = 0
    max_batch_rows: int = 0

    def count_call(self, rows: int) -> None:
        """Record one model call of `rows` rows."""
        self.batches += 1
        self.rows += rows
        self.max_batch_rows = max(self.max_batch_rows, rows)


@dataclass(slots=True)
class _Request:
    inputs: Tensors
    rows: int
    arrived: float
    future: asyncio.Future[Tensors]


@dataclass(slots=True)
class _Group:
    key: _BatchKey
    pending: deque[_Request] = field(default_factory=deque)
    rows: int = 0


@dataclass(slots=True)
class _Outcome:
    results: list[Tensors | Exception]
    fallback_calls: list[int]  # rows of each extra per-request call made because the batch did not split
    batch_major: bool


class Batcher:
    """Stack concurrent requests for one model version along the batch dimension and run them once."""

    def __init__(
        self,
        run: Callable[[Tensors], Tensors],
        *,
        max_batch_size: int,
        max_queue_delay_ms: float,
        executor: concurrent.futures.Executor | None = None,
        inline_below_seconds: float = 0.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must not be negative, got {max_queue_delay_ms}")
        self._run = run
        self._max_batch_size = max_batch_size
        self._delay = max_queue_delay_ms / 1000
        self._executor = executor
        # A batch expected to take less than this runs on the event loop: for a small model the thread hop (a wake-up,
        # the GIL handed back and forth, a call_soon_threadsafe) costs more than the loop is blocked. Expected from
        # the last call's time per row, which overestimates a bigger batch (the fixed cost is spread thinner).
        self._inline_below = inline_below_seconds
        self._seconds_per_row = 0.0
        self.stats = BatcherStats()
        # Cleared for good once an output's first dimension does not match the rows sent: that model does not batch.
        self._batch_major = True
        self._groups: dict[_BatchKey, _Group] = {}
        self._queued = 0
        self._in_flight: list[_Request] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def batching(self) -> bool:
        """Whether requests are still stacked (False once the model proved not to batch along axis 0)."""
        return self._batch_major

    async def submit(self, inputs: Tensors) -> Tensors:
        """Queue one request (every input batched on axis 0, same row count across inputs) and return its outputs."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        rows, key = _describe(inputs)
        loop = asyncio.get_running_loop()
        self.stats.requests += 1
        if not self._batch_major:
            self.stats.count_call(rows)
            return await loop.run_in_executor(self._executor, self._run, inputs)

        if self._task is None or self._task.done():
            if self._loop is not None and self._loop is not loop:
                raise RuntimeError("a Batcher serves the event loop it was first used in")
            self._loop = loop
            self._task = loop.create_task(self._collect(), name="modeldeck-batcher")
        future: asyncio.Future[Tensors] = loop.create_future()
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key)
        group.pending.append(_Request(inputs, rows, loop.time(), future))
        group.rows += rows
        self._queued += 1
        # Wake the collector only when it has something new to decide: a first request, or a batch just filled up.
        if self._queued == 1 or group.rows - rows < self._max_batch_size <= group.rows:
            self._wake()
        return await future

    async def close(self) -> None:
        """Stop the collector task; requests still queued are run (not dropped) before close returns."""
        self._closed = True
        if self._task is None:
            return
        self._wake()
        # Shielded: cancelling whoever awaits close() must not cancel the drain and strand queued callers.
        await asyncio.shield(self._task)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                group = self._oldest_group()
                if group is None:
                    if self._closed:
                        return
                    await self._sleep(loop, None)
                    continue
                if not self._closed and self._batch_major and group.rows < self._max_batch_size:
                    # Measured from the oldest request's arrival, so time spent queued behind a running batch counts
                    # and a backlog is dispatched at once instead of waiting a second delay.
                    remaining = group.pending[0].arrived + self._delay - loop.time()
                    if remaining > 0:
                        # A full batch of another shape cannot improve by waiting; it goes ahead of the oldest one.
                        full = next((g for g in self._groups.values() if g.rows >= self._max_batch_size), None)
                        if full is None:
                            await self._sleep(loop, remaining)
                            continue
                        group = full
                batch, rows = self._take(group)
                if batch:
                    await self._dispatch(loop, batch, rows)
        finally:
            stranded = [*self._in_flight, *(r for g in self._groups.values() for r in g.pending)]
            self._in_flight = []
            self._groups.clear()
            self._queued = 0
            for request in stranded:
                _settle(request.future, RuntimeError("the batcher stopped before this request ran"))

    def _oldest_group(self) -> _Group | None:
        if not self._groups:
            return None
        if len(self._groups) == 1:
            return next(iter(self._groups.values()))
        return min(self._groups.values(), key=lambda g: g.pending[0].arrived)

    async def _sleep(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _resolve, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    def _take(self, group: _Group) -> tuple[list[_Request], int]:
        batch: list[_Request] = []
        rows = 0
        pending = group.pending
        while pending:
            request = pending[0]
            # A caller that went away needs no compute; one that overflows the batch waits for the next, in order.
            if (
                not request.future.done()
                and batch
                and (not self._batch_major or rows + request.rows > self._max_batch_size)
            ):
                break
            pending.popleft()
            group.rows -= request.rows
            self._queued -= 1
            if not request.future.done():
                batch.append(request)
                rows += request.rows
        if not pending:
            del self._groups[group.key]
        return batch, rows

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[_Request], rows: int) -> None:
        self.stats.count_call(rows)
        # Left set if the collector is cancelled mid-call, so its cleanup fails these callers instead of stranding them.
        self._in_flight = batch
        try:
            if rows * self._seconds_per_row < self._inline_below:
                outcome = self._execute(batch, rows)
            else:
                outcome = await loop.run_in_executor(self._executor, self._execute, batch, rows)
        except Exception as error:  # noqa: BLE001  (the model's error belongs to every caller in the batch)
            self._in_flight = []
            for request in batch:
                _settle(request.future, error)
            return
        self._in_flight = []
        if not outcome.batch_major:
            self._batch_major = False
        for call_rows in outcome.fallback_calls:
            self.stats.count_call(call_rows)
        for request, result in zip(batch, outcome.results, strict=True):
            _settle(request.future, result)

    def _execute(self, batch: list[_Request], rows: int) -> _Outcome:
        started = time.perf_counter()
        try:
            return self._execute_timed(batch, rows)
        finally:
            self._seconds_per_row = (time.perf_counter() - started) / max(rows, 1)

    def _execute_timed(self, batch: list[_Request], rows: int) -> _Outcome:
        # In the executor unless the batch is quick (see _inline_below): concatenating and slicing large tensors must
        # not block the event loop.
        if len(batch) == 1:
            outputs = self._run(batch[0].inputs)
            return _Outcome([outputs], [], _is_batch_major(outputs, rows))
        stacked = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
        outputs = self._run(stacked)
        if _is_batch_major(outputs, rows):
            bounds = itertools.pairwise(itertools.accumulate((r.rows for r in batch), initial=0))
            results: list[Tensors | Exception] = [
                {name: value[start:stop] for name, value in outputs.items()} for start, stop in bounds
            ]
            return _Outcome(results, [], True)
        results = []
        for request in batch:
            try:
                results.append(self._run(request.inputs))
            except Exception as error:  # noqa: BLE001  (handed to that one caller, not swallowed)
                results.append(error)
        return _Outcome(results, [r.rows for r in batch], False)


def _describe(inputs: Tensors) -> tuple[int, _BatchKey]:
    if len(inputs) == 1:  # the common case, without the general case's sorting and comparing
        ((name, value),) = inputs.items()
        if value.ndim:
            return value.shape[0], ((name, value.dtype, value.shape[1:]),)
    if not inputs:
        raise ValueError("a request needs at least one input")
    if scalars := [name for name, value in inputs.items() if value.ndim == 0]:
        raise ValueError(f"inputs {scalars} are scalars; every input needs a batch dimension")
    rows = {name: value.shape[0] for name, value in inputs.items()}
    if len(set(rows.values())) != 1:
        raise ValueError(f"inputs disagree on their row count: {rows}")
    key = tuple(sorted((name, value.dtype, value.shape[1:]) for name, value in inputs.items()))
    return next(iter(rows.values())), key


def _is_batch_major(outputs: Tensors, rows: int) -> bool:
    return all(value.ndim >= 1 and value.shape[0] == rows for value in outputs.values())


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _settle(future: asyncio.Future[Tensors], result: Tensors | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

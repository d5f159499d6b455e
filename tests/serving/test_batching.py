"""The dynamic batcher: concurrent requests share model calls and every caller gets exactly its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from serving.batching import Batcher
from tests.registry.model_files import onnx_file

Tensors = dict[str, np.ndarray]
MakeBatcher = Callable[..., Batcher]


class Doubler:
    """Double every input, remembering the name, dtype and shape of each input of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, str, tuple[int, ...]], ...]] = []

    def __call__(self, inputs: Tensors) -> Tensors:
        self.calls.append(tuple((name, value.dtype.str, value.shape) for name, value in inputs.items()))
        return {name: value * 2 for name, value in inputs.items()}

    @property
    def rows(self) -> list[int]:
        return [call[0][2][0] for call in self.calls]


class Gated(Doubler):
    """A Doubler whose calls block until the test releases them."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, inputs: Tensors) -> Tensors:
        self.started.set()
        self.release.wait(10)
        return super().__call__(inputs)


class ModelFailedError(Exception):
    pass


def request(seed: int, rows: int = 1, features: int = 4, dtype: Any = np.float32, name: str = "x") -> Tensors:
    """Rows that differ per request and per row, so a mixed-up slice cannot pass."""
    values = np.arange(rows * features, dtype=dtype).reshape(rows, features) + 1000 * seed
    return {name: values}


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="batcher-test") as pool:
        yield pool


@pytest.fixture
async def make_batcher(executor: ThreadPoolExecutor) -> AsyncIterator[MakeBatcher]:
    made: list[Batcher] = []

    def make(
        run: Callable[[Tensors], Tensors],
        max_batch_size: int = 8,
        max_queue_delay_ms: float = 50,
        inline_below_seconds: float = 0.0,
    ) -> Batcher:
        batcher = Batcher(
            run,
            max_batch_size=max_batch_size,
            max_queue_delay_ms=max_queue_delay_ms,
            executor=executor,
            inline_below_seconds=inline_below_seconds,
        )
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        await batcher.close()


def assert_doubled(result: Tensors, sent: Tensors) -> None:
    assert result.keys() == sent.keys()
    for name, value in sent.items():
        np.testing.assert_array_equal(result[name], value * 2)
        assert result[name].dtype == value.dtype


async def test_sixteen_concurrent_requests_make_two_full_batches(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_batch_size=8, max_queue_delay_ms=50)
    sent = [request(i) for i in range(16)]

    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in sent))

    assert run.rows == [8, 8]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)
    assert (batcher.stats.requests, batcher.stats.batches, batcher.stats.rows) == (16, 2, 16)
    assert batcher.stats.max_batch_rows == 8


async def test_a_batch_that_fills_up_runs_without_waiting_out_the_delay(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_batch_size=4, max_queue_delay_ms=60_000)
    first = asyncio.create_task(batcher.submit(request(0)))
    for _ in range(3):
        await asyncio.sleep(0)  # the collector is now asleep on the first request's delay
    sent = [request(i) for i in range(1, 4)]

    # The timeout only guards against a hang: a collector that missed the wake-up would sleep the full minute.
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(inputs) for inputs in sent)), timeout=30)

    assert_doubled(await first, request(0))
    assert run.rows == [4]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)


async def test_a_lone_request_runs_after_the_delay_on_its_own(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_queue_delay_ms=20)
    sent = request(7)

    assert_doubled(await batcher.submit(sent), sent)
    assert run.rows == [1]


async def test_mixed_row_counts_are_split_back_per_request(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run)
    sent = [request(1, rows=1), request(2, rows=3), request(3, rows=2)]

    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in sent))

    assert run.rows == [6]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)


async def test_a_zero_delay_still_batches_what_is_already_queued(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_queue_delay_ms=0)
    sent = [request(i) for i in range(4)]

    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in sent))

    assert run.rows == [4]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)


async def test_incompatible_requests_are_not_stacked_together(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run)
    sent = [
        request(1),
        request(2, features=5),
        request(3, dtype=np.float64),
        request(4, rows=2),
        request(5, name="z"),
    ]

    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in sent))

    assert run.calls == [
        (("x", "<f4", (3, 4)),),
        (("x", "<f4", (1, 5)),),
        (("x", "<f8", (1, 4)),),
        (("z", "<f4", (1, 4)),),
    ]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)


async def test_a_full_batch_of_another_shape_does_not_wait_for_the_oldest_request(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_batch_size=4, max_queue_delay_ms=60_000)
    odd = asyncio.create_task(batcher.submit(request(0, features=5)))
    sent = [request(i) for i in range(1, 5)]

    # The timeout only guards against a hang: without the shortcut these would wait the full minute.
    results = await asyncio.wait_for(asyncio.gather(*(batcher.submit(inputs) for inputs in sent)), timeout=30)
    assert not odd.done()
    await batcher.close()

    assert run.calls == [(("x", "<f4", (4, 4)),), (("x", "<f4", (1, 5)),)]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)
    assert_doubled(odd.result(), request(0, features=5))


async def test_an_oversize_request_runs_alone_and_whole(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_batch_size=4)
    sent = [request(1, rows=10), request(2), request(3)]

    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in sent))

    assert run.rows == [10, 2]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)
    assert batcher.stats.max_batch_rows == 10


async def test_requests_queued_behind_a_running_batch_form_the_next_one(make_batcher: MakeBatcher) -> None:
    run = Gated()
    batcher = make_batcher(run, max_queue_delay_ms=20)
    first = asyncio.create_task(batcher.submit(request(0)))
    assert await asyncio.to_thread(run.started.wait, 10)
    sent = [request(i) for i in range(1, 6)]
    queued = [asyncio.create_task(batcher.submit(inputs)) for inputs in sent]
    await asyncio.sleep(0.05)

    run.release.set()
    results = await asyncio.gather(*queued)

    assert_doubled(await first, request(0))
    assert run.rows == [1, 5]
    for result, inputs in zip(results, sent, strict=True):
        assert_doubled(result, inputs)


class Timed(Doubler):
    """A Doubler that remembers the thread of each call and takes `seconds` per call."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self.threads: list[int] = []

    def __call__(self, inputs: Tensors) -> Tensors:
        self.threads.append(threading.get_ident())
        time.sleep(self.seconds)
        return super().__call__(inputs)


async def test_a_batch_expected_to_be_quick_runs_on_the_event_loop(make_batcher: MakeBatcher) -> None:
    run = Timed()
    batcher = make_batcher(run, max_batch_size=4, max_queue_delay_ms=1, inline_below_seconds=0.05)
    loop_thread = threading.get_ident()

    async def batch_of_four(first: int) -> None:
        sent = [request(first + i) for i in range(4)]
        for result, inputs in zip(await asyncio.gather(*(batcher.submit(r) for r in sent)), sent, strict=True):
            assert_doubled(result, inputs)

    await batch_of_four(0)  # nothing known yet: expected quick, so on the loop
    assert run.threads == [loop_thread]
    run.seconds = 0.08  # this call is slow (still on the loop: the last one said quick)...
    await batch_of_four(10)
    run.seconds = 0.0
    await batch_of_four(20)  # ...so the next is expected slow: in the pool
    await batch_of_four(30)  # the pool's call was quick again: back on the loop
    assert run.threads[1:] == [loop_thread, run.threads[2], loop_thread]
    assert run.threads[2] != loop_thread
    assert run.rows == [4, 4, 4, 4]


async def test_batches_run_in_the_pool_by_default(make_batcher: MakeBatcher) -> None:
    run = Timed()
    batcher = make_batcher(run, max_batch_size=2, max_queue_delay_ms=1)
    await asyncio.gather(batcher.submit(request(1)), batcher.submit(request(2)))
    assert run.rows == [2]
    assert run.threads[0] != threading.get_ident()


async def test_a_model_that_does_not_batch_answers_each_request_alone(make_batcher: MakeBatcher) -> None:
    calls: list[int] = []

    def summarise(inputs: Tensors) -> Tensors:
        x = inputs["x"]
        calls.append(x.shape[0])
        return {"summary": np.array([x.sum(), x.min(), x.max()])}

    batcher = make_batcher(summarise)
    sent = [request(1, rows=1), request(2, rows=2), request(3, rows=1), request(4, rows=3)]

    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in sent))

    assert calls == [7, 1, 2, 1, 3]
    for result, inputs in zip(results, sent, strict=True):
        np.testing.assert_array_equal(result["summary"], summarise(inputs)["summary"])
    assert not batcher.batching

    calls.clear()
    later = [request(5, rows=2), request(6, rows=1)]
    results = await asyncio.gather(*(batcher.submit(inputs) for inputs in later))

    assert sorted(calls) == [1, 2]
    for result, inputs in zip(results, later, strict=True):
        np.testing.assert_array_equal(result["summary"], summarise(inputs)["summary"])
    assert batcher.stats.batches == 7


async def test_a_model_error_reaches_every_caller_in_the_batch(make_batcher: MakeBatcher) -> None:
    failing = True
    doubler = Doubler()

    def run(inputs: Tensors) -> Tensors:
        if failing:
            raise ModelFailedError("out of memory")
        return doubler(inputs)

    batcher = make_batcher(run)

    outcomes = await asyncio.gather(*(batcher.submit(request(i)) for i in range(3)), return_exceptions=True)

    assert [type(outcome) for outcome in outcomes] == [ModelFailedError] * 3
    assert {str(outcome) for outcome in outcomes} == {"out of memory"}

    failing = False
    assert_doubled(await batcher.submit(request(9)), request(9))
    assert batcher.stats.batches == 2


async def test_a_caller_that_left_before_the_batch_formed_is_skipped(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_queue_delay_ms=60_000)
    sent = [request(i) for i in range(3)]
    tasks = [asyncio.create_task(batcher.submit(inputs)) for inputs in sent]
    await asyncio.sleep(0)

    tasks[1].cancel()
    await batcher.close()

    assert tasks[1].cancelled()
    assert_doubled(await tasks[0], sent[0])
    assert_doubled(await tasks[2], sent[2])
    assert run.rows == [2]


async def test_a_caller_that_left_during_the_model_call_does_not_break_the_batch(make_batcher: MakeBatcher) -> None:
    run = Gated()
    batcher = make_batcher(run, max_queue_delay_ms=0)
    sent = [request(i) for i in range(3)]
    tasks = [asyncio.create_task(batcher.submit(inputs)) for inputs in sent]
    assert await asyncio.to_thread(run.started.wait, 10)

    tasks[1].cancel()
    run.release.set()

    assert_doubled(await tasks[0], sent[0])
    assert_doubled(await tasks[2], sent[2])
    assert tasks[1].cancelled()
    assert run.rows == [3]
    assert_doubled(await batcher.submit(request(5)), request(5))


async def test_close_runs_the_requests_still_queued(make_batcher: MakeBatcher) -> None:
    run = Doubler()
    batcher = make_batcher(run, max_batch_size=4, max_queue_delay_ms=60_000)
    sent = [request(i) for i in range(6)]
    tasks = [asyncio.create_task(batcher.submit(inputs)) for inputs in sent]
    await asyncio.sleep(0)

    await batcher.close()

    assert all(task.done() for task in tasks)
    for task, inputs in zip(tasks, sent, strict=True):
        assert_doubled(task.result(), inputs)
    assert run.rows == [4, 2]
    with pytest.raises(RuntimeError, match="closed"):
        await batcher.submit(request(9))


async def test_inputs_that_disagree_on_rows_are_refused(make_batcher: MakeBatcher) -> None:
    batcher = make_batcher(Doubler())

    with pytest.raises(ValueError, match="row count"):
        await batcher.submit({"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="scalar"):
        await batcher.submit({"a": np.float32(1.0) * np.ones(())})


async def test_onnxruntime_batched_answers_match_row_by_row(make_batcher: MakeBatcher, tmp_path: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file(tmp_path / "tiny.onnx")), providers=["CPUExecutionProvider"])
    batch_rows: list[int] = []

    def run(inputs: Tensors) -> Tensors:
        batch_rows.append(inputs["x"].shape[0])
        return {"probs": session.run(["probs"], inputs)[0]}

    batcher = make_batcher(run, max_batch_size=8, max_queue_delay_ms=50)
    rows = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)

    results = await asyncio.gather(*(batcher.submit({"x": rows[i : i + 1]}) for i in range(32)))

    assert batch_rows == [8, 8, 8, 8]
    for i, result in enumerate(results):
        expected = session.run(["probs"], {"x": rows[i : i + 1]})[0]
        assert result["probs"].shape == (1, 3)
        np.testing.assert_allclose(result["probs"], expected, rtol=1e-6)

"""LiteRT (TensorFlow Lite): interpreters are not thread-safe, so each request borrows one from a small pool."""

from __future__ import annotations

import os
import queue
from pathlib import Path
from typing import Any

import numpy as np

from runtimes.tensors import Signature


def default_pool_size() -> int:
    return int(os.environ.get("MODELDECK_LITERT_POOL", "0")) or min(4, os.cpu_count() or 1)


class LiteRTRuntime:
    """Run a TFLite model through its serving signature (or its tensors), one interpreter per concurrent call.

    `signature` is the one the registry inspected, when the caller has it; running needs only the file.
    """

    def __init__(self, path: Path, signature: Signature | None = None, pool_size: int | None = None) -> None:
        self._signature = signature
        self._path = str(path)
        self._pool: queue.Queue[Any] = queue.Queue()
        for _ in range(pool_size or default_pool_size()):
            self._pool.put(self._interpreter())
        interpreter, runner = self._pool.queue[0]
        self.input_names = (
            list(runner.get_input_details())
            if runner is not None
            else [_plain(d["name"]) for d in interpreter.get_input_details()]
        )

    def _interpreter(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=self._path, num_threads=1)
        signatures = interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures), None)
        runner = interpreter.get_signature_runner(key) if key is not None else None
        return interpreter, runner

    @property
    def signature(self) -> Signature:
        """The signature it was loaded with (serving passes the registry's; parity loads files without one)."""
        if self._signature is None:
            raise AttributeError("this runtime was loaded without a signature")
        return self._signature

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Blocks while every interpreter is busy: a borrowed interpreter is used by exactly one thread.
        interpreter, runner = self._pool.get()
        try:
            if runner is not None:
                # The signature runner resizes inputs to the batch given and returns fresh arrays.
                return {name: np.asarray(value) for name, value in runner(**inputs).items()}
            return self._run_tensors(interpreter, inputs)
        finally:
            self._pool.put((interpreter, runner))

    @staticmethod
    def _run_tensors(interpreter: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        details = interpreter.get_input_details()
        by_name = {_plain(d["name"]): d for d in details}
        for name, detail in by_name.items():
            interpreter.resize_tensor_input(detail["index"], inputs[name].shape, strict=False)
        interpreter.allocate_tensors()
        for name, detail in by_name.items():
            interpreter.set_tensor(detail["index"], inputs[name])
        interpreter.invoke()
        # Copies: the interpreter reuses its buffers on the next call.
        return {
            _plain(d["name"]): np.array(interpreter.get_tensor(d["index"])) for d in interpreter.get_output_details()
        }


def _plain(name: str) -> str:
    return name.removeprefix("serving_default_").split(":")[0]


def load(path: Path, signature: Signature | None = None, pool_size: int | None = None) -> LiteRTRuntime:
    return LiteRTRuntime(path, signature, pool_size)

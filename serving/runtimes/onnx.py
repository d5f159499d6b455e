"""ONNX Runtime: one tuned session per model version; `InferenceSession.run` is thread-safe."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from registry.formats.base import Signature
from registry.formats.onnx import text_tensor


def default_threads() -> int:
    # Intra-op threads per session: concurrent requests already use several cores, so stay modest.
    return int(os.environ.get("MODELDECK_ORT_THREADS", "0")) or min(4, os.cpu_count() or 1)


class OnnxRuntime:
    """Serve an ONNX model with onnxruntime's CPU provider, graph optimisations on."""

    def __init__(self, path: Path, signature: Signature, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Intra-op threads that spin after each run steal the cores the event loop, the batcher and the other
        # requests need (measured in bench/serving.py: batched throughput nearly doubles without spinning).
        if os.environ.get("MODELDECK_ORT_SPIN", "0") != "1":
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Name the provider: this onnxruntime build also lists an Azure one (TOOLCHAIN G12).
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._output_names = [o.name for o in self._session.get_outputs()]
        self.signature = signature
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._text_inputs = tuple(i.name for i in self._session.get_inputs() if i.type == "tensor(string)")
        # The C++ session's own run: InferenceSession.run's Python wrapper re-checks the feed (WebGPU graph capture,
        # input names, OrtValue ownership) on every call, 8 µs of a 24 µs iris call here. A feed with exactly the
        # model's inputs skips it (a wrong dtype or shape still fails in C++ as InvalidArgument); any other feed goes
        # through the wrapper and gets its errors.
        native = getattr(self._session, "_sess", None)
        self._native_run = native.run if native is not None else None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._text_inputs:
            inputs = {**inputs, **{name: text_tensor(inputs[name]) for name in self._text_inputs if name in inputs}}
        if self._native_run is not None and inputs.keys() == self._input_names:
            values = self._native_run(self._output_names, inputs, None)
        else:
            values = self._session.run(self._output_names, inputs)
        return dict(zip(self._output_names, values, strict=True))


def load(path: Path, signature: Signature) -> OnnxRuntime:
    return OnnxRuntime(path, signature)

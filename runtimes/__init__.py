"""The runtime layer: one runner per runtime (onnxruntime, LiteRT) and the tensor types they take.

`runtime_load(format, path, signature)` gives a warmed, thread-safe Runtime. Serving, the registry's parity check,
benchmarks and load check all run models through these, so a model is judged by the code that will serve it.
This package sits below every Django app and imports none of them (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runtimes import litert, onnx
from runtimes.base import Runtime, warm
from runtimes.tensors import Signature

LOADERS: dict[str, Callable[[Path, Signature], Runtime]] = {"onnx": onnx.load, "tflite": litert.load}


def runtime_load(format_name: str, path: Path, signature: Signature) -> Runtime:
    """Load a model with the runtime for its format and warm it before it takes traffic."""
    try:
        loader = LOADERS[format_name]
    except KeyError:
        raise ValueError(f"no serving runtime for {format_name!r}; serve its ONNX or TFLite version") from None
    runtime = loader(path, signature)
    warm(runtime, signature)
    return runtime

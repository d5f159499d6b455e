"""Serving runtimes by model format: `runtime_load(format, path, signature)` gives a warmed, thread-safe Runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from registry.formats.base import Signature
from serving.runtimes import litert, onnx
from serving.runtimes.base import Runtime, warm

LOADERS: dict[str, Callable[[Path, Signature], Runtime]] = {"onnx": onnx.load, "tflite": litert.load}


def runtime_load(format_name: str, path: Path, signature: Signature) -> Runtime:
    """Load a model with the runtime for its format and warm it before it takes traffic."""
    try:
        loader = LOADERS[format_name]
    except KeyError:
        raise ValueError(f"no serving runtime for {format_name!r}; serve its ONNX or TFLite version") from None
    runtime = loader(path, signature)
    warm(runtime)
    return runtime

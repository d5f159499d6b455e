"""The one interface every serving runtime implements: load a model file, run named tensors, warm up."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from registry.formats.base import Signature

# Open Inference Protocol datatype -> numpy dtype, for the tensors the runtimes take and return.
DATATYPE_TO_NUMPY: dict[str, type[np.generic]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


class Runtime(Protocol):
    signature: Signature

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one (possibly batched) request; safe to call from many threads at once."""
        ...


def warm_inputs(signature: Signature, rows: int = 1) -> dict[str, np.ndarray]:
    """Zero tensors of the signature's shapes (dynamic dimensions as `rows` first, 1 elsewhere) to warm a model."""
    inputs = {}
    for spec in signature.inputs:
        shape = [rows if i == 0 and d == -1 else (1 if d == -1 else d) for i, d in enumerate(spec.shape)]
        dtype = DATATYPE_TO_NUMPY[spec.datatype]
        inputs[spec.name] = (
            np.zeros(shape, dtype=dtype) if dtype is not np.object_ else np.full(shape, b"", dtype=object)
        )
    return inputs


def warm(runtime: Runtime, runs: int = 3) -> None:
    """Run a model a few times before it takes traffic, so the first request does not pay for lazy set-up."""
    inputs = warm_inputs(runtime.signature)
    for _ in range(runs):
        runtime.run(inputs)

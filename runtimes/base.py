"""The one interface every runtime implements: load a model file, run named tensors, warm up."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from runtimes.tensors import DATATYPE_TO_NUMPY, Signature


class Runtime(Protocol):
    """A loaded model that runs named tensors; serving, parity, benchmarks and the load check all use these."""

    # The inputs the model takes, in its own order: parity picks them out of a sample that may hold more.
    input_names: list[str]

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


def warm(runtime: Runtime, signature: Signature, runs: int = 3) -> None:
    """Run a model a few times before it takes traffic, so the first request does not pay for lazy set-up."""
    inputs = warm_inputs(signature)
    for _ in range(runs):
        runtime.run(inputs)

"""The tensors every runtime takes and returns, and the signature that names them (Open Inference Protocol types).

Inspection (registry), parity, benchmarks and serving all describe a model with these, so they live in the runtime
layer, below every app that uses them; nothing here imports Django.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

# Open Inference Protocol tensor datatypes.
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
)

# Open Inference Protocol datatype -> numpy dtype, for the tensors runners and runtimes take and return.
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

NUMPY_TO_DATATYPE = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "object": "BYTES",
    "str": "BYTES",
    "bytes": "BYTES",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, its Open Inference Protocol datatype and its shape (-1 = dynamic)."""

    name: str
    datatype: str
    shape: list[int]

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise ValueError(f"unknown datatype {self.datatype!r}")


@dataclass(frozen=True)
class Signature:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @cached_property
    def input_checks(self) -> dict[str, tuple[TensorSpec, np.dtype[Any], tuple[tuple[int, int], ...]]]:
        """Each input by name: its spec, numpy dtype and fixed (axis, size) pairs (computed once; serving checks
        every request against it)."""
        return {
            spec.name: (
                spec,
                np.dtype(DATATYPE_TO_NUMPY[spec.datatype]),
                tuple((axis, size) for axis, size in enumerate(spec.shape) if size != -1),
            )
            for spec in self.inputs
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            inputs=[TensorSpec(**spec) for spec in data.get("inputs", [])],
            outputs=[TensorSpec(**spec) for spec in data.get("outputs", [])],
        )

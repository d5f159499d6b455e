"""The one interface every model format implements: sniff by content, inspect the signature.

Each format is one module in this package exposing a module-level object that satisfies `ModelFormat`.
Formats whose inspection needs TensorFlow or scikit-learn set `needs_worker = True`: the web process
only sniffs them, and a Celery worker inspects them. Heavy imports live inside `inspect`, never at
module import time, so the web process never imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.errors import ApplicationError

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


@dataclass(frozen=True)
class Inspection:
    """What inspecting a model file tells: its signature, the framework that made it, and extra facts."""

    signature: Signature
    framework: str  # e.g. "onnx", "tflite", "keras", "tensorflow", "sklearn"
    framework_version: str = ""  # e.g. the producer version, keras version, sklearn version
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"opset": 17, "producer": "tf2onnx"}

    def to_fields(self) -> dict[str, Any]:
        """The ModelVersion fields this inspection fills in."""
        return {
            "signature": self.signature.to_dict(),
            "framework": self.framework,
            "framework_version": self.framework_version[:64],
            "metadata": self.metadata,
        }


class ModelFileError(ApplicationError):
    """Raise when a model file is not what it claims, is corrupt, or is hostile; the message says why."""

    status_code = 422

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, detail)


class ModelFormat(Protocol):
    name: str  # stored in ModelVersion.format: "onnx", "tflite", "keras", "savedmodel", "sklearn", "pickle"
    label: str  # for people: "ONNX", "TensorFlow Lite", ...
    extensions: tuple[str, ...]  # lowercase, with the dot: (".onnx",)
    needs_worker: bool

    def sniff(self, path: Path) -> bool:
        """Tell from the bytes alone (never the name) whether the file is of this format; never raise."""
        ...

    def inspect(self, path: Path) -> Inspection:
        """Read the signature from the format's own metadata; raise ModelFileError for a bad file."""
        ...


QUANTIZATIONS = ("none", "int8", "float16")
TARGETS = ("onnx", "tflite")


@dataclass(frozen=True)
class Recipe:
    """How a converted version is made from its parent: the target format and the quantization."""

    target: str
    quantization: str = "none"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization {self.quantization!r}")

    @property
    def key(self) -> str:
        return f"{self.target}:{self.quantization}"

    def to_dict(self) -> dict[str, str]:
        return {"target": self.target, "quantization": self.quantization}


class ConversionError(ModelFileError):
    """Raise when a converter cannot convert a model; the message names the cause (an op, a layer), not a trace."""

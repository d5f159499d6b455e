"""The one interface every model format implements: sniff by content, inspect the signature.

Each format is one module in this package exposing a module-level object that satisfies `ModelFormat`.
Formats whose inspection needs TensorFlow or scikit-learn set `needs_worker = True`: the web process
only sniffs them, and a Celery worker inspects them. Heavy imports live inside `inspect`, never at
module import time, so the web process never imports TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from common.errors import ApplicationError
from runtimes.tensors import Signature, TensorSpec


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


def signature_differences(
    reference: Signature, candidate: Signature, *, sides: tuple[str, str] = ("expected", "found")
) -> list[dict[str, Any]]:
    """List how `candidate` breaks the contract of `reference`: inputs first, then outputs; [] when compatible.

    Callers build requests from the inputs and read answers by the output names, datatypes and shapes (Triton and
    KServe clients, TF Serving's `predictions`, MLflow's columns). Compatible means: the same input and output names
    and datatypes; each input's shape of the same rank, each dimension equal or, where the reference's is fixed,
    dynamic (-1: it accepts every request the reference accepts); each output's shape equal.

    Each difference is {"tensor": "input" | "output", "name", "problem": "missing" | "added" | "datatype" | "shape",
    <reference side>, <candidate side>}, the sides named by `sides` (("primary", "version") for releases). For a
    datatype problem the sides are datatypes, for a shape problem shapes; for missing and added the side that has the
    tensor is its {"datatype", "shape"} and the other is None. Tensors are matched by name, never by position.
    """
    return [
        *_compare("input", reference.inputs, candidate.inputs, sides),
        *_compare("output", reference.outputs, candidate.outputs, sides),
    ]


def _compare(
    role: str, reference: list[TensorSpec], candidate: list[TensorSpec], sides: tuple[str, str]
) -> list[dict[str, Any]]:
    old_side, new_side = sides
    found: list[dict[str, Any]] = []
    by_name = {spec.name: spec for spec in candidate}
    for spec in reference:
        other = by_name.get(spec.name)
        if other is None:
            found.append(
                {"tensor": role, "name": spec.name, "problem": "missing", old_side: _spec(spec), new_side: None}
            )
            continue
        if other.datatype != spec.datatype:
            found.append(
                {
                    "tensor": role,
                    "name": spec.name,
                    "problem": "datatype",
                    old_side: spec.datatype,
                    new_side: other.datatype,
                }
            )
        if not _shape_compatible(spec.shape, other.shape, widening=role == "input"):
            found.append(
                {
                    "tensor": role,
                    "name": spec.name,
                    "problem": "shape",
                    old_side: list(spec.shape),
                    new_side: list(other.shape),
                }
            )
    names = {spec.name for spec in reference}
    found.extend(
        {"tensor": role, "name": other.name, "problem": "added", old_side: None, new_side: _spec(other)}
        for other in candidate
        if other.name not in names
    )
    return found


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {"datatype": spec.datatype, "shape": list(spec.shape)}


def _shape_compatible(old: list[int], new: list[int], *, widening: bool) -> bool:
    if len(old) != len(new):
        return False
    # An input may accept more than before (a fixed dimension turned dynamic); an output must keep its shape.
    return all(o == n or (widening and n == -1) for o, n in zip(old, new, strict=True))


def tensor_text(value: Any) -> str:
    """One side of a difference in words: "FP32", "[-1, 4]", "FP32 [-1, 4]" or "—" (-1 is a dynamic dimension)."""
    if value is None:
        return "—"
    if isinstance(value, dict):
        return f"{value['datatype']} {tensor_text(value['shape'])}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def describe_differences(differences: list[dict[str, Any]], sides: tuple[str, str] = ("expected", "found")) -> str:
    """Say each signature difference in words, for messages: "output 'probs' is FP16 instead of FP32; ..."."""
    old_side, new_side = sides
    words = []
    for d in differences:
        tensor = f"{d['tensor']} '{d['name']}'"
        if d["problem"] == "missing":
            words.append(f"{tensor} ({tensor_text(d[old_side])}) is missing")
        elif d["problem"] == "added":
            words.append(f"{tensor} ({tensor_text(d[new_side])}) is added")
        else:
            words.append(f"{tensor} is {tensor_text(d[new_side])} instead of {tensor_text(d[old_side])}")
    return "; ".join(words)


# "ValueError: ...", "tensorflow.python.framework.errors_impl.InvalidArgumentError: ...": where a root cause starts.
_EXCEPTION_LINE = re.compile(r"^\s*(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception)\s*:\s*(.*)$")
# Lines that follow an error message in TensorFlow's reports but are not part of it.
_TRAILER = re.compile(
    r"^\s*(?:File [\"']|Call arguments received|Arguments received|Traceback \(most recent call last\))"
)


def error_summary(exc: BaseException, limit: int = 600) -> str:
    """The root cause of an exception as one paragraph for people, never the first line of a trace.

    Follows explicit causes (`raise ... from`) to the deepest one. TensorFlow reports errors raised inside traced
    code as "in user code: <trace> ValueError: <message>", so the last "SomethingError: message" in the text wins;
    otherwise the text's first paragraph is the message. The full trace belongs in logs, not here.
    """
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    if not lines:
        return type(exc).__name__
    starts = [i for i, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    if starts:
        first = _EXCEPTION_LINE.match(lines[starts[-1]])
        assert first is not None
        paragraph = [first.group(1)]
        following = lines[starts[-1] + 1 :]
    else:
        paragraph, following = [lines[0]], lines[1:]
    for line in following:
        if not line.strip() or _TRAILER.match(line):
            break
        paragraph.append(line)
    text = " ".join(" ".join(paragraph).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"

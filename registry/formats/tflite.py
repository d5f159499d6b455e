"""TensorFlow Lite models: one flatbuffer file, inspected in the web process with LiteRT (no TensorFlow)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from registry.formats.base import Inspection, ModelFileError, error_summary
from runtimes.tensors import NUMPY_TO_DATATYPE, Signature, TensorSpec

_IDENTIFIER = b"TFL3"
# Root table offset (4 bytes), file identifier (4 bytes), then at least the root table's vtable offset.
_MIN_BYTES = 12
_SIGNATURE_KEY = "serving_default"
_NAME_PREFIX = "serving_default_"


class TFLiteFormat:
    """TensorFlow Lite: sniffed from the flatbuffer file identifier, inspected through its signature runner."""

    name = "tflite"
    label = "TensorFlow Lite"
    extensions: tuple[str, ...] = (".tflite",)
    needs_worker = False

    def sniff(self, path: Path) -> bool:
        """Tell whether the file carries the TFLite flatbuffer identifier 'TFL3' at bytes 4-8."""
        try:
            with path.open("rb") as f:
                head = f.read(8)
        except OSError:
            return False
        return head[4:8] == _IDENTIFIER

    def inspect(self, path: Path) -> Inspection:
        """Read the inputs and outputs of the serving signature (or the first one, or the bare graph)."""
        _check_header(path)
        from ai_edge_litert.interpreter import Interpreter

        try:
            # The interpreter runs the flatbuffer verifier on construction; tensors are never allocated here.
            interpreter = Interpreter(model_path=str(path))
            signatures: dict[str, Any] = interpreter.get_signature_list()
            key = _SIGNATURE_KEY if _SIGNATURE_KEY in signatures else next(iter(signatures), None)
            if key is not None:
                runner = interpreter.get_signature_runner(key)
                input_details: dict[str, dict[str, Any]] = runner.get_input_details()
                output_details: dict[str, dict[str, Any]] = runner.get_output_details()
            else:
                input_details = {_plain_name(d["name"]): d for d in interpreter.get_input_details()}
                output_details = {_plain_name(d["name"]): d for d in interpreter.get_output_details()}
            inputs = [_tensor_spec(name, d, "input") for name, d in input_details.items()]
            outputs = [_tensor_spec(name, d, "output") for name, d in output_details.items()]
        except Exception as exc:
            # LiteRT's bindings report a corrupt model as ValueError, RuntimeError, TypeError or KeyError, by chance.
            raise ModelFileError(
                "invalid_tflite", f"The file is not a loadable TensorFlow Lite model: {error_summary(exc)}."
            ) from exc
        metadata: dict[str, Any] = {"signature_key": key}
        quantization = _quantization({**input_details, **output_details})
        if quantization:
            metadata["quantization"] = quantization
        return Inspection(
            signature=Signature(inputs=inputs, outputs=outputs),
            framework="tflite",
            metadata=metadata,
        )


def _check_header(path: Path) -> None:
    """Refuse files whose flatbuffer root offset points outside the file, before native code reads them."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
    if size < _MIN_BYTES or head[4:8] != _IDENTIFIER:
        raise ModelFileError("invalid_tflite", "The file is not a TensorFlow Lite model (no 'TFL3' identifier).")
    (root_offset,) = struct.unpack_from("<I", head)
    if not 8 <= root_offset <= size - 4:
        raise ModelFileError(
            "invalid_tflite",
            f"The TensorFlow Lite file is truncated or corrupt: its root table is at byte {root_offset} "
            f"of a {size}-byte file.",
        )


def _quantization(details: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Scale and zero point of each integer-quantized input and output: clients send round(x / scale + zero_point)
    and read (y - zero_point) * scale (a full-integer model's own tensors carry them; float tensors have none)."""
    found = {}
    for name, detail in details.items():
        scale, zero_point = detail.get("quantization", (0.0, 0))
        if scale:
            found[name] = {"scale": float(scale), "zero_point": int(zero_point)}
    return found


def _tensor_spec(name: str, details: dict[str, Any], role: str) -> TensorSpec:
    import numpy as np

    dtype = np.dtype(details["dtype"])
    datatype = "BYTES" if dtype.kind in "SUO" else NUMPY_TO_DATATYPE.get(dtype.name)
    if datatype is None:
        raise ModelFileError(
            "unsupported_datatype",
            f"The TensorFlow Lite {role} '{name}' has dtype {dtype.name}, which the Open Inference Protocol "
            "cannot carry.",
            {"tensor": name, "dtype": dtype.name},
        )
    # The converter writes batch 1 into "shape"; "shape_signature" keeps the dynamic dims as -1.
    dims = details.get("shape_signature")
    if dims is None:
        dims = details["shape"]
    shape = [int(d) if int(d) >= 0 else -1 for d in dims]
    return TensorSpec(name=name, datatype=datatype, shape=shape)


def _plain_name(name: str) -> str:
    name = name.removeprefix(_NAME_PREFIX)
    return name.removesuffix(":0")


FORMAT = TFLiteFormat()

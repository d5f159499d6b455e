"""TensorFlow Serving (and Google AI Platform) REST predict: row (`instances`) and columnar (`inputs`) formats."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from runtimes.tensors import Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.jsonio import json_dumps, json_loads
from serving.protocols.tensors import (
    input_spec,
    inputs_check,
    is_b64_object,
    json_body,
    names_text,
    tensor_from_data,
)

SIGNATURE_NAME = "serving_default"

# Open Inference Protocol datatype -> TensorFlow DataType name (metadata here, TensorProto dtypes over gRPC).
TF_DTYPES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BYTES": "DT_STRING",
}
_BYTES_SUFFIX = "_bytes"
_COMPACT = (",", ":")


def tfserving_request_parse(body: bytes, signature: Signature) -> tuple[dict[str, np.ndarray], str]:
    """Decode a predict request; return its tensors and its format, "row" (instances) or "columnar" (inputs)."""
    with json_body(body):
        return _tfserving_request_parse(body, signature)


def _tfserving_request_parse(body: bytes, signature: Signature) -> tuple[dict[str, np.ndarray], str]:
    try:
        document = json_loads(body)
    except RecursionError:
        raise ProtocolError("JSON Parse error: the request body nests too deeply") from None
    except ValueError as exc:
        raise ProtocolError(f"JSON Parse error: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError("JSON Parse error: the request body must be a JSON object")
    signature_name = document.get("signature_name")
    if signature_name is not None:
        if not isinstance(signature_name, str):
            raise ProtocolError("'signature_name' must be a string")
        tfserving_signature_check(signature_name)
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise ProtocolError("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if has_instances:
        inputs, style = tfserving_instances_parse(document["instances"], signature), "row"
    elif has_inputs:
        inputs, style = tfserving_inputs_parse(document["inputs"], signature), "columnar"
    else:
        raise ProtocolError("Missing 'inputs' or 'instances' key")
    inputs_check(signature, inputs)
    return inputs, style


def tfserving_signature_check(signature_name: str) -> None:
    """Refuse a signature other than the one every served model has (empty means that one)."""
    if signature_name not in ("", SIGNATURE_NAME):
        raise ProtocolError(
            f'Serving signature name: "{signature_name}" not found in signature def; '
            f'this model has only "{SIGNATURE_NAME}"'
        )


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def tfserving_instances_parse(instances: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Stack row-format instances (values, or objects keyed by input name) into one tensor per input."""
    if not isinstance(instances, list):
        raise ProtocolError("Expecting 'instances' to be a list/array")
    if not instances:
        raise ProtocolError("No values in 'instances' array")
    if not _is_named_object(instances[0]):
        if len(signature.inputs) > 1:
            raise ProtocolError(
                f"'instances' is a plain list, but the model has several inputs ({names_text(signature.inputs)}); "
                "send a list of objects keyed by input name"
            )
        # Objects among plain values are refused by tensor_from_data, naming the offending element.
        spec = signature.inputs[0]
        return {spec.name: tensor_from_data(spec, instances)}
    keys = instances[0].keys()
    for index, instance in enumerate(instances):
        if not _is_named_object(instance):
            raise ProtocolError(f"Expecting object but got {_json_type(instance)} at item {index} of 'instances'")
        if instance.keys() != keys:
            raise ProtocolError(
                f"item {index} of 'instances' has keys {_keys_text(instance)} but item 0 has "
                f"{_keys_text(instances[0])}; every instance must have the same keys"
            )
    return {
        name: tensor_from_data(input_spec(signature, name), [instance[name] for instance in instances]) for name in keys
    }


def tfserving_inputs_parse(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    """Read columnar `inputs`: an object keyed by input name, or a bare value when the model has one input."""
    if _is_named_object(inputs):
        return {name: tensor_from_data(input_spec(signature, name), value) for name, value in inputs.items()}
    if len(signature.inputs) > 1:
        raise ProtocolError(
            f"'inputs' is a plain value/list, but the model has several inputs ({names_text(signature.inputs)}); "
            "send an object keyed by input name"
        )
    spec = signature.inputs[0]
    return {spec.name: tensor_from_data(spec, inputs)}


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return "number"


def _keys_text(instance: dict[str, Any]) -> str:
    return "[" + ", ".join(instance) + "]"


def tfserving_response_encode(outputs: dict[str, np.ndarray], style: str) -> bytes:
    """Encode outputs as `{"predictions": ...}` for a row request or `{"outputs": ...}` for a columnar one."""
    values = {name: _jsonable(name, np.asarray(array)) for name, array in outputs.items()}
    if style == "columnar":
        if len(values) == 1:
            return _dumps({"outputs": next(iter(values.values()))}, outputs)
        return _dumps({"outputs": values}, outputs)
    if style != "row":
        raise ValueError(f"unknown TF Serving response style {style!r}")
    if len(values) == 1:
        return _dumps({"predictions": next(iter(values.values()))}, outputs)
    batch: tuple[str, int] | None = None
    for name, array in outputs.items():
        if np.ndim(array) == 0:
            raise ProtocolError(
                f"output '{name}' is a scalar and cannot be split into rows; "
                "send the request in the columnar format ('inputs') instead"
            )
        size = np.shape(array)[0]
        if batch is not None and size != batch[1]:
            raise ProtocolError(
                f"output '{name}' has batch size {size} but output '{batch[0]}' has {batch[1]}, so they cannot be "
                "split into rows; send the request in the columnar format ('inputs') instead"
            )
        batch = (name, size)
    rows = batch[1] if batch is not None else 0
    return _dumps(
        {"predictions": [{name: value[row] for name, value in values.items()} for row in range(rows)]}, outputs
    )


def _jsonable(name: str, array: np.ndarray) -> Any:
    """Nested lists of the array's values; string tensors as strings, or {"b64": ...} when named *_bytes."""
    if array.dtype.kind not in "OUS":
        return array.tolist()
    as_b64 = name.endswith(_BYTES_SUFFIX)
    converted = np.empty(array.size, dtype=object)
    converted[:] = [_string_value(value, as_b64) for value in array.ravel().tolist()]
    return converted.reshape(array.shape).tolist()


def _string_value(value: Any, as_b64: bool) -> Any:
    if not as_b64:
        if not isinstance(value, bytes):
            return str(value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass  # JSON cannot carry arbitrary bytes: fall back to the b64 form TF Serving clients understand
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return {"b64": base64.b64encode(raw).decode("ascii")}


def _dumps(document: dict[str, Any], outputs: dict[str, np.ndarray]) -> bytes:
    return json_dumps(document, (np.asarray(array) for array in outputs.values()))


def tfserving_status(versions: list[str]) -> dict[str, Any]:
    """Report every version as AVAILABLE, in TF Serving's model status shape."""
    return {
        "model_version_status": [
            {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for version in versions
        ]
    }


def tfserving_metadata(*, name: str, version: str, signature: Signature) -> dict[str, Any]:
    """Describe a model's serving_default SignatureDef in TF Serving's metadata shape."""
    inputs = {spec.name: _tensor_info(spec, f"serving_default_{spec.name}:0") for spec in signature.inputs}
    outputs = {
        spec.name: _tensor_info(spec, f"StatefulPartitionedCall:{position}")
        for position, spec in enumerate(signature.outputs)
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE_NAME: {
                        "inputs": inputs,
                        "outputs": outputs,
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def _tensor_info(spec: TensorSpec, tensor_name: str) -> dict[str, Any]:
    return {
        "dtype": TF_DTYPES[spec.datatype],
        "tensor_shape": {"dim": [{"size": str(dim), "name": ""} for dim in spec.shape], "unknown_rank": False},
        "name": tensor_name,
    }


def tfserving_error_body(message: str) -> bytes:
    """Encode an error the TF Serving way: `{"error": "..."}`."""
    return json.dumps({"error": message}).encode()

"""Open Inference Protocol (KServe V2 / Triton) over HTTP, with Triton's binary tensor data extension."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from runtimes.tensors import DATATYPE_TO_NUMPY, NUMPY_TO_DATATYPE, Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.jsonio import json_dumps, json_loads
from serving.protocols.tensors import (
    MAX_DIM,
    MAX_RANK,
    input_spec,
    inputs_check,
    json_body,
    json_booleans_possible,
    json_preview,
    names_text,
    shape_text,
    tensor_from_data,
)

PLATFORMS = {"onnx": "onnx_onnxv1", "tflite": "tflite_tflite"}

_LENGTH_PREFIX = struct.Struct("<I")
_COMPACT = (",", ":")


@dataclass
class V2Request:
    """A decoded inference request: its tensors, which outputs to return and which of them as binary data."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    binary_outputs: set[str]
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _BinaryPlan:
    """What a JSON header whose inputs are all binary fixed-size tensors decodes to, against one signature."""

    signature: Signature
    inputs: tuple[tuple[str, np.dtype[Any], np.dtype[Any], tuple[int, ...], int], ...]  # name, dtype, LE, shape, size
    size: int  # the binary data the header announces, in bytes
    id: str | None
    outputs: list[str]
    binary_outputs: set[str]
    parameters: dict[str, Any]


# A client sends the same JSON header for every request of one shape (tritonclient does): once a header has been
# decoded and checked against a signature, the next request with the same bytes only reads its tensors. Bounded; a
# flood of distinct headers only clears it.
_PLANS: dict[tuple[int, bytes], _BinaryPlan] = {}
_PLANS_MAX = 1024


def v2_request_parse(body: bytes, signature: Signature, header_length: int | None = None) -> V2Request:
    """Decode a JSON (or JSON header + binary tensor data) inference request and check it against the signature."""
    if header_length is None:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            document = _UNPARSED  # json_loads decides: NaN and big integers are accepted, errors named as `json` does
        else:
            request = _one_float_input(document, body, signature)
            if request is not None:
                return request
        with json_body(body):
            return _v2_request_parse(body, signature, header_length, document)[0]
    if not 0 <= header_length <= len(body):
        with json_body(body):
            return _v2_request_parse(body, signature, header_length)[0]
    header = body[:header_length]
    plan = _PLANS.get((id(signature), header))
    if plan is not None and plan.signature is signature and header_length + plan.size == len(body):
        return _binary_planned(plan, body, header_length)
    with json_body(header):
        request, all_binary = _v2_request_parse(body, signature, header_length)
    if all_binary:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[(id(signature), header)] = _plan(request, signature)
    return request


def _plan(request: V2Request, signature: Signature) -> _BinaryPlan:
    entries = tuple(
        (name, array.dtype, array.dtype.newbyteorder("<"), array.shape, array.nbytes)
        for name, array in request.inputs.items()
    )
    return _BinaryPlan(
        signature=signature,
        inputs=entries,
        size=sum(entry[4] for entry in entries),
        id=request.id,
        outputs=request.outputs,
        binary_outputs=request.binary_outputs,
        parameters=request.parameters,
    )


def _binary_planned(plan: _BinaryPlan, body: bytes, offset: int) -> V2Request:
    """Replay a plan: the same checks passed for these header bytes, so only the tensors are read (no copy)."""
    inputs = {}
    for name, dtype, little_endian, shape, size in plan.inputs:
        if size:
            array = np.frombuffer(body, dtype=little_endian, count=size // dtype.itemsize, offset=offset)
            inputs[name] = array.astype(dtype, copy=False).reshape(shape)
        else:
            inputs[name] = np.empty(shape, dtype=dtype)
        offset += size
    return V2Request(
        id=plan.id,
        inputs=inputs,
        outputs=plan.outputs,
        binary_outputs=plan.binary_outputs,
        parameters=plan.parameters,
    )


# The V2 JSON request nearly every client sends for a one-input model: `{"inputs": [{"name", "shape", "datatype",
# "data"}]}` with FP32 or FP64 numbers, optionally an "id". _one_float_input decodes it with a handful of checks, in
# a fraction of the general parser's time per request (bench/dataplane.py); anything else, or anything it is unsure
# of, goes the general way.
_COMMON_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data"})
_UNPARSED: Any = object()
_FP32_FP64 = (np.dtype(np.float32), np.dtype(np.float64))
_FP32_MAX = float(np.finfo(np.float32).max)


def _one_float_input(document: Any, body: bytes, signature: Signature) -> V2Request | None:
    """The request, when it is the common case and the general parser would accept it as exactly this; else None
    (the general parser then accepts or refuses it with its own messages).

    Every check below is one the general way makes too (_input_parse, tensor_from_data, inputs_check), only ordered
    so that a request that would fail any of them is handed over rather than refused here."""
    if type(document) is not dict or len(signature.inputs) != 1:
        return None
    request_id = document.get("id")
    if len(document) != (1 if request_id is None else 2) or (request_id is not None and type(request_id) is not str):
        return None
    raw_inputs = document.get("inputs")
    if type(raw_inputs) is not list or len(raw_inputs) != 1:
        return None
    item = raw_inputs[0]
    if type(item) is not dict or item.keys() != _COMMON_INPUT_KEYS:
        return None
    spec, dtype, fixed = signature.input_checks[signature.inputs[0].name]
    shape = item["shape"]
    if (
        item["name"] != spec.name
        or item["datatype"] != spec.datatype
        or dtype not in _FP32_FP64
        or type(shape) is not list
        or len(shape) != len(spec.shape)
        or len(shape) > MAX_RANK
    ):
        return None
    for dim in shape:  # loops, not all()/any() over generators: those cost more than the rest of these checks
        if type(dim) is not int or not 0 <= dim <= MAX_DIM:
            return None
    for axis, size in fixed:
        if shape[axis] != size:
            return None
    # numpy reads JSON true/false among numbers as 1/0: only a body without either word may skip looking for them.
    if json_booleans_possible(body):
        return None
    try:
        inferred = np.asarray(item["data"])
    except ValueError:
        return None  # ragged nesting
    if inferred.dtype.kind not in "iuf" or inferred.ndim > MAX_RANK or inferred.size != math.prod(shape):
        return None
    # A double beyond FP32's range would become infinity (numpy warning): the general way refuses it by name. Every
    # 64-bit integer fits, and orjson parses no NaN or infinity.
    if dtype == np.float32 and inferred.dtype.kind == "f" and inferred.size and np.abs(inferred).max() > _FP32_MAX:
        return None
    array = inferred.astype(dtype, copy=False)
    names = [output.name for output in signature.outputs]
    return V2Request(
        id=request_id, inputs={spec.name: array.reshape(shape)}, outputs=names, binary_outputs=set(), parameters={}
    )


def _v2_request_parse(
    body: bytes, signature: Signature, header_length: int | None, document: Any = _UNPARSED
) -> tuple[V2Request, bool]:
    """The request, and whether every input was fixed-size binary data (a plan can replay it). `document`: the JSON
    body as orjson parsed it already, if it did."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise ProtocolError(
            f"Inference-Header-Content-Length is {header_length} but the request body has {len(body)} bytes"
        )
    header_end = len(body) if header_length is None else header_length
    try:
        if document is _UNPARSED:
            document = json_loads(body if header_length is None else body[:header_length])
    except RecursionError:
        raise ProtocolError("the request body nests JSON too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are ValueErrors
        hint = ""
        if header_length is None and isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data":
            hint = "; a body with binary tensor data needs the Inference-Header-Content-Length header"
        raise ProtocolError(f"the request body is not valid JSON: {exc}{hint}") from None
    if not isinstance(document, dict):
        raise ProtocolError("the request body must be a JSON object")

    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, not {json_preview(request_id)}")
    parameters = _parameters(document, "the request")

    if "inputs" not in document:
        raise ProtocolError("the request has no 'inputs'")
    raw_inputs = document["inputs"]
    if not isinstance(raw_inputs, list):
        raise ProtocolError("'inputs' must be a list of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = header_end
    all_binary = True
    for index, item in enumerate(raw_inputs):
        start = offset
        name, array, offset = _input_parse(item, index, signature, body, offset, header_length, inputs)
        inputs[name] = array
        # Binary data moved the offset on by exactly the array's bytes; a JSON `data` input did not move it.
        all_binary = all_binary and array.dtype.kind != "O" and offset - start == array.nbytes and "data" not in item
    if header_length is not None and offset != len(body):
        raise ProtocolError(
            f"the body has {len(body) - header_end} bytes after the JSON header but the inputs' "
            f"parameters.binary_data_size add up to {offset - header_end}"
        )

    outputs, binary_outputs = _outputs_parse(document, parameters, signature)
    inputs_check(signature, inputs)
    request = V2Request(
        id=request_id, inputs=inputs, outputs=outputs, binary_outputs=binary_outputs, parameters=parameters
    )
    return request, all_binary


def _parameters(holder: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = holder.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ProtocolError(f"'parameters' of {where} must be an object")
    return parameters


def _input_parse(
    item: Any,
    index: int,
    signature: Signature,
    body: bytes,
    offset: int,
    header_length: int | None,
    seen: dict[str, np.ndarray],
) -> tuple[str, np.ndarray, int]:
    """Decode one entry of `inputs`; return its name, its array and where the next binary input starts."""
    if not isinstance(item, dict):
        raise ProtocolError(f"inputs[{index}] must be an object")
    if "name" not in item:
        raise ProtocolError(f"inputs[{index}] has no 'name'")
    name = item["name"]
    if not isinstance(name, str):
        raise ProtocolError(f"inputs[{index}] has a 'name' that is not a string: {json_preview(name)}")
    if name in seen:
        raise ProtocolError(f"input '{name}' appears more than once")
    spec = input_spec(signature, name)

    if "datatype" not in item:
        raise ProtocolError(f"input '{name}' has no 'datatype'")
    v2_input_datatype_check(spec, item["datatype"])

    if "shape" not in item:
        raise ProtocolError(f"input '{name}' has no 'shape'")
    shape = item["shape"]
    v2_input_shape_check(name, shape)

    parameters = _parameters(item, f"input '{name}'")
    v2_input_parameters_check(name, parameters)
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if "data" in item:
            raise ProtocolError(f"input '{name}' has both 'data' and parameters.binary_data_size; send one of them")
        if header_length is None:
            raise ProtocolError(
                f"input '{name}' has parameters.binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        if type(size) is not int or size < 0:
            raise ProtocolError(
                f"input '{name}' has parameters.binary_data_size {json_preview(size)}; "
                "it must be a non-negative integer"
            )
        if offset + size > len(body):
            raise ProtocolError(
                f"input '{name}' has parameters.binary_data_size {size} but only {len(body) - offset} "
                "bytes of binary data are left in the body"
            )
        return name, _binary_tensor(spec, shape, body, offset, size), offset + size
    if "data" not in item:
        raise ProtocolError(f"input '{name}' has no 'data' (nor parameters.binary_data_size)")
    return name, tensor_from_data(spec, item["data"], shape), offset


def v2_input_datatype_check(spec: TensorSpec, datatype: Any) -> None:
    """Refuse an input whose declared datatype is not the model's (the same message over HTTP and gRPC)."""
    if datatype != spec.datatype:
        shown = datatype if isinstance(datatype, str) else json_preview(datatype)
        raise ProtocolError(f"input '{spec.name}' has datatype {shown} but the model expects {spec.datatype}")


def v2_input_shape_check(name: str, shape: Any) -> None:
    """Refuse a declared shape that is not a list of non-negative integers numpy can describe."""
    if not isinstance(shape, list) or not all(type(dim) is int and dim >= 0 for dim in shape):
        raise ProtocolError(
            f"input '{name}' has an invalid shape {json_preview(shape)}; it must be a list of non-negative integers"
        )
    if len(shape) > MAX_RANK or any(dim > MAX_DIM for dim in shape):
        # numpy cannot even describe such an array ("array is too big"), empty or not: refuse it by its shape.
        raise ProtocolError(
            f"input '{name}' has shape {json_preview(shape)}; a tensor has at most {MAX_RANK} dimensions of at most "
            f"{MAX_DIM} each"
        )


def v2_input_parameters_check(name: str, parameters: dict[str, Any]) -> None:
    """Refuse an input's parameters that ask for what this server does not do."""
    if "shared_memory_region" in parameters:
        raise ProtocolError(
            f"input '{name}' asks for shared memory (parameters.shared_memory_region), which this server "
            "does not support; send the data in the request"
        )


def _binary_tensor(spec: TensorSpec, shape: list[int], body: bytes, offset: int, size: int) -> np.ndarray:
    """Read one input's raw little-endian row-major bytes (length-prefixed elements for BYTES)."""
    count = math.prod(shape)
    native = np.dtype(DATATYPE_TO_NUMPY[spec.datatype])
    if native.kind == "O":
        return _binary_bytes_tensor(spec, shape, count, body, offset, size)
    expected = count * native.itemsize
    if size != expected:
        raise ProtocolError(
            f"input '{spec.name}' has shape {shape_text(shape)} of {spec.datatype} ({expected} bytes) "
            f"but parameters.binary_data_size is {size}"
        )
    if count == 0:
        return np.empty(shape, dtype=native)
    # A read-only view on the request body: no copy on the hot path.
    array = np.frombuffer(body, dtype=native.newbyteorder("<"), count=count, offset=offset)
    return array.astype(native, copy=False).reshape(shape)


def _binary_bytes_tensor(
    spec: TensorSpec, shape: list[int], count: int, body: bytes, offset: int, size: int
) -> np.ndarray:
    return v2_bytes_elements(spec, shape, count, body, offset, offset + size, "binary data", " in its binary_data_size")


def v2_bytes_elements(
    spec: TensorSpec, shape: list[int], count: int, data: bytes, start: int, end: int, source: str, left: str = ""
) -> np.ndarray:
    """The BYTES elements of `data[start:end]`, each prefixed by its 4-byte little-endian length (the binary
    extension over HTTP, `raw_input_contents` over gRPC); `source` names where they came from in the messages."""
    position = start
    elements: list[bytes] = []
    while position < end:
        if position + 4 > end:
            raise ProtocolError(
                f"the {source} of BYTES input '{spec.name}' is cut short: element {len(elements)} has no "
                "complete 4-byte length prefix"
            )
        (length,) = _LENGTH_PREFIX.unpack_from(data, position)
        position += 4
        if position + length > end:
            raise ProtocolError(
                f"the {source} of BYTES input '{spec.name}' is cut short: element {len(elements)} says "
                f"{length} bytes but only {end - position} are left{left}"
            )
        elements.append(data[position : position + length])
        position += length
    if len(elements) != count:
        raise ProtocolError(
            f"input '{spec.name}' has shape {shape_text(shape)} ({count} elements) "
            f"but its {source} holds {len(elements)} elements"
        )
    array = np.empty(count, dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _outputs_parse(
    document: dict[str, Any], parameters: dict[str, Any], signature: Signature
) -> tuple[list[str], set[str]]:
    """Return the requested outputs (all, in signature order, when none are named) and those to send as binary."""
    default_binary = parameters.get("binary_data_output", False)
    if type(default_binary) is not bool:
        raise ProtocolError(f"parameters.binary_data_output must be true or false, not {json_preview(default_binary)}")
    raw_outputs = document.get("outputs")
    if raw_outputs is None or raw_outputs == []:
        names = [spec.name for spec in signature.outputs]
        return names, set(names) if default_binary else set()
    if not isinstance(raw_outputs, list):
        raise ProtocolError("'outputs' must be a list of requested outputs")
    known = {spec.name for spec in signature.outputs}
    names = []
    binary: set[str] = set()
    for index, item in enumerate(raw_outputs):
        if not isinstance(item, dict):
            raise ProtocolError(f"outputs[{index}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise ProtocolError(f"outputs[{index}] has no 'name'")
        v2_output_name_check(signature, known, name, names)
        output_parameters = _parameters(item, f"output '{name}'")
        v2_output_parameters_check(name, output_parameters)
        wants_binary = output_parameters.get("binary_data", default_binary)
        if type(wants_binary) is not bool:
            raise ProtocolError(
                f"parameters.binary_data of output '{name}' must be true or false, not {json_preview(wants_binary)}"
            )
        names.append(name)
        if wants_binary:
            binary.add(name)
    return names, binary


def v2_output_name_check(signature: Signature, known: set[str], name: str, chosen: list[str]) -> None:
    """Refuse a requested output the model does not have (`known`: its output names), or one asked twice."""
    if name not in known:
        raise ProtocolError(f"unexpected output '{name}'; the model's outputs are: {names_text(signature.outputs)}")
    if name in chosen:
        raise ProtocolError(f"output '{name}' is requested more than once")


def v2_output_parameters_check(name: str, parameters: dict[str, Any]) -> None:
    """Refuse a requested output's parameters that ask for what this server does not do."""
    if "classification" in parameters:
        raise ProtocolError(
            f"output '{name}' asks for classification (parameters.classification), which this server does not support"
        )
    if "shared_memory_region" in parameters:
        raise ProtocolError(
            f"output '{name}' asks for shared memory (parameters.shared_memory_region), "
            "which this server does not support"
        )


def v2_response_encode(
    *, model_name: str, model_version: str, request: V2Request, outputs: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """Encode the requested outputs as a JSON response, or a JSON header + binary data when any output is binary."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name in request.outputs:
        if name not in outputs:
            raise ProtocolError(f"the model returned no output '{name}'", status=500)
        array = np.asarray(outputs[name])
        datatype = v2_output_datatype(name, array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if name in request.binary_outputs:
            chunk = v2_binary_output(array, datatype)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _json_output(name, array, datatype)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = entries
    # Only the outputs written as JSON can hold a NaN that orjson would turn into null; binary ones are raw bytes.
    in_json = (np.asarray(outputs[name]) for name in request.outputs if name not in request.binary_outputs)
    header = json_dumps(response, in_json)
    if not chunks:  # no output asked for as binary data
        return header, {"content-type": "application/json"}
    return b"".join([header, *chunks]), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


# Keyed by dtype itself: `dtype.name` is a slow Python-level property, and this runs per output per request.
_DATATYPE_OF_DTYPE = {np.dtype(t): name for name, t in DATATYPE_TO_NUMPY.items() if name != "BYTES"}


def v2_output_datatype(name: str, array: np.ndarray) -> str:
    """The V2 datatype of an output array (a 500 for a numpy dtype V2 cannot carry)."""
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _DATATYPE_OF_DTYPE.get(array.dtype) or NUMPY_TO_DATATYPE.get(array.dtype.name)
    if datatype is None:
        raise ProtocolError(f"output '{name}' has numpy dtype {array.dtype}, which V2 cannot carry", status=500)
    return datatype


def v2_binary_output(array: np.ndarray, datatype: str) -> bytes | memoryview:
    """An output's raw bytes: little-endian, row-major; BYTES elements each after a 4-byte length."""
    if datatype == "BYTES":
        parts = []
        for value in array.ravel().tolist():
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH_PREFIX.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    contiguous = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    # A flat uint8 view: len() is the byte count and b"".join copies it once, straight into the body.
    return contiguous.reshape(-1).view(np.uint8).data


def _json_output(name: str, array: np.ndarray, datatype: str) -> list[Any]:
    if datatype != "BYTES":
        return list(array.ravel().tolist())
    values = []
    for value in array.ravel().tolist():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError(
                    f"output '{name}' holds bytes that are not valid UTF-8, which JSON cannot carry; "
                    "request it as binary data (parameters.binary_data: true)"
                ) from None
        values.append(value if isinstance(value, str) else str(value))
    return values


def v2_model_metadata(*, name: str, versions: list[str], platform: str, signature: Signature) -> dict[str, Any]:
    """Describe a model the V2 way: name, versions, platform and its input and output tensors."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": PLATFORMS.get(platform, platform),
        "inputs": [_tensor_metadata(spec) for spec in signature.inputs],
        "outputs": [_tensor_metadata(spec) for spec in signature.outputs],
    }


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def v2_error_body(message: str) -> bytes:
    """Encode an error the V2 way: `{"error": "..."}`."""
    return json.dumps({"error": message}).encode()

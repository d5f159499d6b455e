"""TF Serving tensors over gRPC: a `PredictRequest`'s TensorProtos decoded and checked against a signature, outputs
encoded as TensorProtos.

The checks after decoding are the REST codec's own (serving.protocols.tfserving and .tensors), so a shape, a missing
input or a signature name is refused with the same words over both transports. What REST has no counterpart for (a
TensorProto's dtype, `tensor_content`, the typed `*_val` fields, `output_filter`) has messages of its own here, in the
words of the V2 gRPC codec (serving.grpc.v2_tensors) where the two say the same thing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from runtimes.tensors import DATATYPE_TO_NUMPY, NUMPY_TO_DATATYPE, Signature, TensorSpec
from serving.grpc.generated.tensorflow.core.framework import tensor_pb2, types_pb2
from serving.grpc.generated.tensorflow_serving.apis import predict_pb2
from serving.protocols.errors import ProtocolError
from serving.protocols.tensors import input_spec, inputs_check, names_text, shape_text
from serving.protocols.tfserving import SIGNATURE_NAME, TF_DTYPES, tfserving_signature_check
from serving.protocols.v2 import v2_input_shape_check

# The TensorProto field each datatype's elements travel in when there is no tensor_content (TensorFlow's own
# choice, tensor.cc's ProtoHelper): the small integers share int_val, FP16 travels as its bits in half_val.
VALUE_FIELDS = {
    "BOOL": "bool_val",
    "INT8": "int_val",
    "INT16": "int_val",
    "INT32": "int_val",
    "INT64": "int64_val",
    "UINT8": "int_val",
    "UINT16": "int_val",
    "UINT32": "uint32_val",
    "UINT64": "uint64_val",
    "FP16": "half_val",
    "FP32": "float_val",
    "FP64": "double_val",
    "BYTES": "string_val",
}
# The numpy dtype each field holds exactly, before narrowing to the input's own.
_FIELD_DTYPES: dict[str, type[np.generic]] = {
    "bool_val": np.bool_,
    "int_val": np.int32,
    "int64_val": np.int64,
    "uint32_val": np.uint32,
    "uint64_val": np.uint64,
    "half_val": np.int32,
    "float_val": np.float32,
    "double_val": np.float64,
}
# The DataType enum number of each datatype.
TF_DTYPE_NUMBERS = {datatype: types_pb2.DataType.Value(name) for datatype, name in TF_DTYPES.items()}
# Every field that can carry a tensor's elements: one set besides the datatype's own is a mistake, not ignored.
_ELEMENT_FIELDS = frozenset(
    {*VALUE_FIELDS.values(), "tensor_content", "scomplex_val", "dcomplex_val", "float8_val"},
)


def dtype_name(number: int) -> str:
    """A DataType as TensorFlow writes it ("DT_FLOAT"); a number this proto does not know as itself."""
    try:
        return types_pb2.DataType.Name(number)
    except ValueError:
        return f"DataType {number}"


def predict_request_decode(
    message: predict_pb2.PredictRequest, signature: Signature
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode a PredictRequest's inputs and check them against the signature; return them and the outputs to answer
    (the `output_filter`, in the order asked, or every output of the signature)."""
    tfserving_signature_check(message.model_spec.signature_name)
    sent = message.inputs
    for name in sorted(sent):
        input_spec(signature, name)  # an unknown name first, before any tensor is decoded
    inputs = {spec.name: tensor_decode(spec, sent[spec.name]) for spec in signature.inputs if spec.name in sent}
    inputs_check(signature, inputs)
    return inputs, output_filter_check(signature, list(message.output_filter))


def output_filter_check(signature: Signature, output_filter: list[str]) -> list[str]:
    """The outputs a request asks for: each one the model has, none twice; none named means all of them."""
    if not output_filter:
        return [spec.name for spec in signature.outputs]
    known = {spec.name for spec in signature.outputs}
    chosen: list[str] = []
    for name in output_filter:
        if name not in known:
            raise ProtocolError(f"unexpected output '{name}'; the model's outputs are: {names_text(signature.outputs)}")
        if name in chosen:
            raise ProtocolError(f"output '{name}' is requested more than once")
        chosen.append(name)
    return chosen


def tensor_decode(spec: TensorSpec, tensor: tensor_pb2.TensorProto) -> np.ndarray:
    """One input TensorProto as an array of the spec's dtype: from `tensor_content` (raw little-endian, row-major)
    or from the typed field of its dtype, where one value fills the whole shape (TensorFlow's rule for a constant)."""
    expected = TF_DTYPES[spec.datatype]
    if tensor.dtype != TF_DTYPE_NUMBERS[spec.datatype]:
        raise ProtocolError(
            f"input '{spec.name}' has dtype {dtype_name(tensor.dtype)} but the model expects {expected}"
        )
    if tensor.tensor_shape.unknown_rank:
        raise ProtocolError(f"input '{spec.name}' has tensor_shape.unknown_rank set; send the tensor's dims")
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    v2_input_shape_check(spec.name, shape)
    field = VALUE_FIELDS[spec.datatype]
    content = tensor.tensor_content
    allowed = {field, "tensor_content"} if field != "string_val" else {field}
    elsewhere = sorted(
        descriptor.name
        for descriptor, _ in tensor.ListFields()
        if descriptor.name in _ELEMENT_FIELDS and descriptor.name not in allowed
    )
    if elsewhere or (content and getattr(tensor, field)):
        where = f"{field} or tensor_content" if "tensor_content" in allowed else field
        extra = elsewhere or [field, "tensor_content"]
        raise ProtocolError(
            f"input '{spec.name}' is {expected}, whose elements go in {where}, but it has {', '.join(extra)}"
        )
    count = math.prod(shape)
    if content:
        return _content_tensor(spec, shape, count, content)
    return _values_tensor(spec, shape, count, field, getattr(tensor, field))


def _content_tensor(spec: TensorSpec, shape: list[int], count: int, content: bytes) -> np.ndarray:
    native = np.dtype(DATATYPE_TO_NUMPY[spec.datatype])
    expected = count * native.itemsize
    if len(content) != expected:
        raise ProtocolError(
            f"input '{spec.name}' has shape {shape_text(shape)} of {TF_DTYPES[spec.datatype]} ({expected} bytes) "
            f"but its tensor_content has {len(content)} bytes"
        )
    # A read-only view on the message's bytes: no copy on a little-endian machine.
    return np.frombuffer(content, dtype=native.newbyteorder("<"), count=count).astype(native, copy=False).reshape(shape)


def _values_tensor(spec: TensorSpec, shape: list[int], count: int, field: str, values: Any) -> np.ndarray:
    given = len(values)
    if given != count and not (given == 1 and count > 0):
        raise ProtocolError(
            f"input '{spec.name}' has shape {shape_text(shape)} ({count} elements) but its {field} holds {given} "
            "elements (one value fills the shape; otherwise one per element)"
        )
    native = np.dtype(DATATYPE_TO_NUMPY[spec.datatype])
    if field == "string_val":
        flat = np.empty(given, dtype=object)
        flat[:] = list(values)
    elif field == "half_val":
        # Each int32 holds the 16 bits of one FP16 value.
        flat = np.array(values, dtype=np.int32).astype(np.uint16).view(np.float16)
    else:
        wide = np.array(values, dtype=_FIELD_DTYPES[field])
        if wide.dtype != native and native.kind in "iu" and given:
            info = np.iinfo(native)
            low, high = int(wide.min()), int(wide.max())
            if low < info.min or high > info.max:
                value = low if low < info.min else high
                raise ProtocolError(
                    f"input '{spec.name}' expects {spec.datatype} integers in [{info.min}, {info.max}] but got {value}"
                )
        flat = wide.astype(native, copy=False)
    if given == count:
        return flat.reshape(shape)
    return np.full(shape, flat[0], dtype=native)


def predict_response_encode(
    *, name: str, version: int, outputs: dict[str, np.ndarray], names: list[str]
) -> predict_pb2.PredictResponse:
    """The outputs asked for as TensorProtos (`tensor_content`, or `string_val` for strings), and the model spec that
    answered: the endpoint, the version that ran, the signature."""
    response = predict_pb2.PredictResponse()
    spec = response.model_spec
    spec.name = name
    spec.version.value = version
    spec.signature_name = SIGNATURE_NAME
    for output in names:
        if output not in outputs:
            raise ProtocolError(f"the model returned no output '{output}'", status=500)
        tensor_encode(output, np.asarray(outputs[output]), response.outputs[output])
    return response


def tensor_encode(name: str, array: np.ndarray, tensor: tensor_pb2.TensorProto) -> None:
    """Fill `tensor` with an output array."""
    datatype = NUMPY_TO_DATATYPE.get(array.dtype.name) or ("BYTES" if array.dtype.kind in "OSU" else None)
    if datatype is None:
        raise ProtocolError(f"output '{name}' has numpy dtype {array.dtype}, which TF Serving cannot carry", status=500)
    tensor.dtype = TF_DTYPE_NUMBERS[datatype]
    dims = tensor.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    if datatype == "BYTES":
        tensor.string_val.extend(
            value if isinstance(value, bytes) else str(value).encode("utf-8") for value in array.ravel().tolist()
        )
        return
    little = array.dtype.newbyteorder("<")
    tensor.tensor_content = np.ascontiguousarray(array, dtype=little).tobytes()

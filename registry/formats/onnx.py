"""ONNX models: a single protobuf file, inspected in the web process with the `onnx` package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.formats.base import Inspection, ModelFileError, error_summary
from runtimes.onnx import zipmap_outputs
from runtimes.tensors import Signature, TensorSpec

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, ModelProto, TensorProto, ValueInfoProto

# TensorProto.DataType names -> Open Inference Protocol datatypes.
ELEM_TYPE_TO_DATATYPE = {
    "FLOAT": "FP32",
    "UINT8": "UINT8",
    "INT8": "INT8",
    "UINT16": "UINT16",
    "INT16": "INT16",
    "INT32": "INT32",
    "INT64": "INT64",
    "STRING": "BYTES",
    "BOOL": "BOOL",
    "FLOAT16": "FP16",
    "DOUBLE": "FP64",
    "UINT32": "UINT32",
    "UINT64": "UINT64",
}

# ModelProto fields that can follow ir_version (field 1), as (field number, wire type).
_MODEL_FIELDS = {(2, 2), (3, 2), (4, 2), (5, 0), (6, 2), (7, 2), (8, 2), (14, 2), (20, 2), (25, 2), (26, 2)}
_MAX_IR_VERSION = 20
_HEADER_BYTES = 32
# Inspection metadata saying the file must be rewritten before it can be served (its tensor version is served).
ZIPMAP_REWRITE = "zipmap_to_tensor"


class OnnxFormat:
    """ONNX: sniffed from the protobuf header, inspected from the graph's declared inputs and outputs."""

    name = "onnx"
    label = "ONNX"
    extensions: tuple[str, ...] = (".onnx",)
    needs_worker = False

    def sniff(self, path: Path) -> bool:
        """Tell whether the file starts like a serialized ModelProto: ir_version first, then a known field."""
        try:
            with path.open("rb") as f:
                head = f.read(_HEADER_BYTES)
        except OSError:
            return False
        # Serializers write fields in number order, so a ModelProto opens with field 1 (ir_version) as a varint.
        if not head.startswith(b"\x08"):
            return False
        ir_version, at = _varint(head, 1)
        if ir_version is None or not 1 <= ir_version <= _MAX_IR_VERSION:
            return False
        tag, _ = _varint(head, at)
        return tag is not None and (tag >> 3, tag & 7) in _MODEL_FIELDS

    def inspect(self, path: Path) -> Inspection:
        """Read inputs, outputs, opset and producer from the model proto, refusing external data."""
        import onnx
        from google.protobuf.message import DecodeError

        try:
            model = onnx.load(str(path), load_external_data=False)
        except (DecodeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(
                "invalid_onnx", f"The file is not a readable ONNX model: {error_summary(exc)}."
            ) from exc
        _refuse_external_data(model)
        try:
            onnx.checker.check_model(model, full_check=False)
        except (onnx.checker.ValidationError, ValueError) as exc:
            raise ModelFileError("invalid_onnx", f"The ONNX model is not valid: {error_summary(exc)}.") from exc

        graph = model.graph
        initializers = {init.name for init in graph.initializer}
        inputs = [_tensor_spec(vi, "input") for vi in graph.input if vi.name not in initializers]
        zipmaps = zipmap_outputs(model)
        # A ZipMap output (skl2onnx's default for classifiers) is described as the tensor it is served as.
        outputs = [
            TensorSpec(vi.name, "FP32", [-1, len(zipmaps[vi.name][1])])
            if vi.name in zipmaps
            else _tensor_spec(vi, "output")
            for vi in graph.output
        ]
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        metadata: dict[str, Any] = {"opset": opset, "ir_version": model.ir_version, "producer": model.producer_name}
        if zipmaps:
            metadata["serving_rewrite"] = ZIPMAP_REWRITE
            metadata["zipmap_classes"] = {name: classes for name, (_, classes) in zipmaps.items()}
        return Inspection(
            signature=Signature(inputs=inputs, outputs=outputs),
            framework="onnx",
            framework_version=model.producer_version,
            metadata=metadata,
        )


def zipmap_to_tensor(model: ModelProto) -> ModelProto:
    """Serve each ZipMap output as the FP32 [N, classes] tensor that feeds it, under the same output name.

    The ZipMap node becomes an Identity of its input; nothing else in the graph changes, so the numbers are the
    model's own. Returns a new model; the one given is left as it is.
    """
    from onnx import ModelProto, TensorProto, helper

    rewritten = ModelProto()
    rewritten.CopyFrom(model)
    zipmaps = zipmap_outputs(rewritten)
    graph = rewritten.graph
    for index, node in enumerate(graph.node):
        if node.op_type == "ZipMap" and node.output[0] in zipmaps:
            graph.node[index].CopyFrom(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
    for index, value_info in enumerate(graph.output):
        if value_info.name in zipmaps:
            classes = len(zipmaps[value_info.name][1])
            graph.output[index].CopyFrom(
                helper.make_tensor_value_info(value_info.name, TensorProto.FLOAT, [None, classes])
            )
    return rewritten


def _refuse_external_data(model: ModelProto) -> None:
    from onnx import TensorProto

    for tensor in _all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            location = entries.get("location", "")
            raise ModelFileError(
                "onnx_external_data",
                f"The ONNX tensor '{tensor.name}' keeps its data in an external file '{location}'. "
                "A single-file upload cannot carry external data, and ModelDeck never reads locations outside "
                "the model file: save the model with all tensors inside it (onnx.save(model, path, "
                "save_as_external_data=False); from torch, torch.onnx.export(..., external_data=False)).",
                {"tensor": tensor.name, "location": location},
            )


def _all_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Yield every tensor in the model: initializers, constants and attributes, in subgraphs and functions too."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            for attribute in node.attribute:
                yield from _attribute_tensors(attribute)


def _graph_tensors(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            yield from _attribute_tensors(attribute)


def _attribute_tensors(attribute: AttributeProto) -> Iterator[TensorProto]:
    if attribute.HasField("t"):
        yield attribute.t
    yield from attribute.tensors
    if attribute.HasField("sparse_tensor"):
        yield attribute.sparse_tensor.values
        yield attribute.sparse_tensor.indices
    for sparse in attribute.sparse_tensors:
        yield sparse.values
        yield sparse.indices
    if attribute.HasField("g"):
        yield from _graph_tensors(attribute.g)
    for graph in attribute.graphs:
        yield from _graph_tensors(graph)


def _tensor_spec(value_info: ValueInfoProto, role: str) -> TensorSpec:
    from onnx import TensorProto

    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        raise ModelFileError(
            "unsupported_datatype",
            f"The ONNX {role} '{value_info.name}' is a {kind or 'value of unknown type'}, not a tensor; "
            "only tensors can be served (for scikit-learn classifiers convert with zipmap disabled).",
            {"tensor": value_info.name, "kind": kind},
        )
    tensor_type = value_info.type.tensor_type
    elem_name = TensorProto.DataType.Name(tensor_type.elem_type)
    datatype = ELEM_TYPE_TO_DATATYPE.get(elem_name)
    if datatype is None:
        raise ModelFileError(
            "unsupported_datatype",
            f"The ONNX {role} '{value_info.name}' has element type {elem_name}, "
            "which the Open Inference Protocol cannot carry.",
            {"tensor": value_info.name, "elem_type": elem_name},
        )
    shape = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else -1 for dim in tensor_type.shape.dim]
    return TensorSpec(name=value_info.name, datatype=datatype, shape=shape)


def _varint(data: bytes, at: int) -> tuple[int | None, int]:
    """Decode a protobuf varint at data[at:], returning (value, next offset) or (None, at) when it runs out."""
    value = 0
    for shift, index in enumerate(range(at, min(len(data), at + 10))):
        byte = data[index]
        value |= (byte & 0x7F) << (7 * shift)
        if not byte & 0x80:
            return value, index + 1
    return None, at


FORMAT = OnnxFormat()

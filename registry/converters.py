"""Convert a model file to another format or quantization: plain functions that a worker job calls.

The web process imports this module to list what is supported, so TensorFlow, tf2onnx, skl2onnx and the onnxruntime
quantizer are imported inside the functions that use them, never at module import time.
"""

from __future__ import annotations

import heapq
import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.formats import keras as keras_format
from registry.formats import onnx as onnx_format
from registry.formats import pickled as pickled_format
from registry.formats import savedmodel as savedmodel_format
from registry.formats import sklearn as sklearn_format
from registry.formats import tflite as tflite_format
from registry.formats.base import (
    ConversionError,
    Inspection,
    ModelFileError,
    ModelFormat,
    Recipe,
    error_summary,
    signature_differences,
)
from registry.load_check import runtime_load_check
from runtimes.tensors import Signature

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto

logger = logging.getLogger(__name__)

# tf2onnx 1.17 tops out at opset 18; 17 is what onnxruntime 1.32 and the serving runtimes are tested with.
OPSET = 17

_TENSORFLOW_RECIPES = (
    Recipe("onnx"),
    Recipe("tflite"),
    Recipe("tflite", "int8"),
    Recipe("tflite", "float16"),
)

SUPPORTED: dict[str, tuple[Recipe, ...]] = {
    "keras": _TENSORFLOW_RECIPES,
    "savedmodel": _TENSORFLOW_RECIPES,
    "sklearn": (Recipe("onnx"),),
    # Loading a pickle runs its code, so the job must only convert pickles of teams that opted in to trusting them.
    "pickle": (Recipe("onnx"),),
    "onnx": (Recipe("onnx", "int8"), Recipe("onnx", "float16")),
    "tflite": (),
}

_TARGET_FORMATS: dict[str, ModelFormat] = {"onnx": onnx_format.FORMAT, "tflite": tflite_format.FORMAT}
_SOURCE_LABELS = {
    "keras": "Keras",
    "savedmodel": "TensorFlow SavedModel",
    "sklearn": "scikit-learn (skops)",
    "pickle": "pickle / joblib",
    "onnx": "ONNX",
    "tflite": "TensorFlow Lite",
}
_TARGET_LABELS = {"onnx": "ONNX", "tflite": "TensorFlow Lite"}
_QUANTIZATION_LABELS = {"none": "", "int8": " (int8)", "float16": " (float16)"}
_DATATYPE_TO_TF = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BYTES": "string",
}
# The TFLite converter lists the ops it has no built-in kernel for on lines like "TF Select ops: MatrixDeterminant".
_TFLITE_UNSUPPORTED_OPS = re.compile(r"^(?:TF Select|Flex|Custom) ops: (.+)$", re.MULTILINE)
_CONVERTER_ERROR_LINE = re.compile(r"error: (.+)")
_STANDARD_ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def supported_recipes(source_format: str, metadata: dict[str, Any] | None = None) -> tuple[Recipe, ...]:
    """What ModelDeck can make from a model of this format (and inspection metadata)."""
    if source_format == "onnx" and (metadata or {}).get("serving_rewrite") == onnx_format.ZIPMAP_REWRITE:
        # Its only conversion is the served form; quantize that one, which serves tensors.
        return (Recipe("onnx"),)
    return SUPPORTED.get(source_format, ())


def conversion_supported(source_format: str, recipe: Recipe, metadata: dict[str, Any] | None = None) -> bool:
    """Tell whether ModelDeck can make the recipe's target from a model of the source format."""
    return recipe in supported_recipes(source_format, metadata)


def describe_recipe(recipe: Recipe) -> str:
    """Name a recipe for people: "ONNX", "TensorFlow Lite (int8)"."""
    return f"{_TARGET_LABELS[recipe.target]}{_QUANTIZATION_LABELS[recipe.quantization]}"


def convert(
    source_format: str,
    path: Path,
    recipe: Recipe,
    out_dir: Path,
    signature: Signature,
    metadata: dict[str, Any] | None = None,
) -> Conversion:
    """Convert the model at path into out_dir as the recipe says, check the result loads, and say what changed.

    Everything a converter writes stays under out_dir. The result keeps the source's signature (float16 and int8
    versions are cast back to the source's datatypes at their edges); what a conversion cannot keep is returned in
    `signature_changes`, never silently.
    """
    if not conversion_supported(source_format, recipe, metadata):
        supported = supported_recipes(source_format, metadata)
        offered = ", ".join(describe_recipe(r) for r in supported) or "nothing"
        raise ConversionError(
            "unsupported_conversion",
            f"ModelDeck cannot convert {_SOURCE_LABELS.get(source_format, source_format)} models to "
            f"{describe_recipe(recipe)}; from this format it can make: {offered}.",
            {"source": source_format, "recipe": recipe.to_dict(), "supported": [r.key for r in supported]},
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if recipe.quantization == "none" else f"-{recipe.quantization}"
    dest = out_dir / f"model{suffix}.{recipe.target}"
    rewrites: list[str] = []
    if source_format in ("keras", "savedmodel"):
        if recipe.target == "onnx":
            _tensorflow_to_onnx(source_format, path, signature, dest)
        else:
            _tensorflow_to_tflite(source_format, path, recipe.quantization, dest)
    elif source_format in ("sklearn", "pickle"):
        _sklearn_to_onnx(source_format, path, dest)
    elif recipe.quantization == "none":
        rewrites.append(_onnx_tensor_outputs(path, dest))
    else:
        rewrites.extend(_quantize_onnx(path, recipe.quantization, dest, out_dir))
    inspection = _check_result(dest, recipe, signature)
    return Conversion(
        path=dest,
        inspection=inspection,
        signature_changes=signature_differences(signature, inspection.signature),
        rewrites=[rewrite for rewrite in rewrites if rewrite],
    )


@dataclass(frozen=True)
class Conversion:
    """A converted file, its inspection, how its signature differs from the source's, and edits made to it."""

    path: Path
    inspection: Inspection
    signature_changes: list[dict[str, Any]]
    rewrites: list[str]  # e.g. "output 'probabilities' cast back to FP32", for the parity report and the lineage


def _tensorflow_to_onnx(source_format: str, path: Path, signature: Signature, dest: Path) -> None:
    import tensorflow as tf

    specs = [
        tf.TensorSpec([None if dim < 0 else dim for dim in spec.shape], _DATATYPE_TO_TF[spec.datatype], name=spec.name)
        for spec in signature.inputs
    ]
    input_names = [spec.name for spec in signature.inputs]
    output_names = [spec.name for spec in signature.outputs]
    with tempfile.TemporaryDirectory(prefix="modeldeck-convert-") as tmp:
        if source_format == "keras":
            model = keras_format.load_model(path)

            def call(*args: Any) -> dict[str, Any]:
                feed = keras_format.model_arguments(model, dict(zip(input_names, args, strict=True)))
                return _named(output_names, tf.nest.flatten(model(feed, training=False)))

        else:
            try:
                loaded = tf.saved_model.load(str(savedmodel_format.extract_model(path, Path(tmp))))
            except ModelFileError:
                raise
            except Exception as exc:
                # It loaded when the version was inspected, so this is a damaged artifact, not a converter limit.
                raise ModelFileError(
                    "invalid_savedmodel", f"The SavedModel could not be loaded: {error_summary(exc)}."
                ) from exc
            function = loaded.signatures[savedmodel_format.SIGNATURE_KEY]

            def call(*args: Any) -> dict[str, Any]:
                outputs = function(**dict(zip(input_names, args, strict=True)))
                return {name: outputs[name] for name in output_names}

        import tf2onnx

        # A dict return value names the ONNX outputs; the TensorSpec names name its inputs.
        with _converter_errors("tf2onnx"):
            model_proto, _ = tf2onnx.convert.from_function(
                tf.function(call, input_signature=specs), input_signature=specs, opset=OPSET
            )
    unsupported = sorted(_unknown_ops(model_proto))
    if unsupported:
        # tf2onnx only logs ops it has no mapping for and leaves them in the graph as TensorFlow ops.
        raise ConversionError(
            "conversion_failed",
            f"tf2onnx cannot convert the TensorFlow op{'s' if len(unsupported) > 1 else ''} "
            f"{', '.join(unsupported)} to ONNX opset {OPSET}.",
            {"tool": "tf2onnx", "unsupported_ops": unsupported},
        )
    dest.write_bytes(model_proto.SerializeToString())


def _named(names: list[str], values: list[Any]) -> dict[str, Any]:
    if len(names) != len(values):
        raise ConversionError(
            "conversion_failed",
            f"The model returns {len(values)} outputs but its signature lists {len(names)}.",
            {"outputs": names},
        )
    return dict(zip(names, values, strict=True))


def _unknown_ops(model: ModelProto) -> set[str]:
    """Return the op types in the model (subgraphs included) that no standard ONNX domain defines."""
    import onnx

    return {
        node.op_type
        for node in _nodes(model.graph)
        if node.domain in _STANDARD_ONNX_DOMAINS and not onnx.defs.has(node.op_type, node.domain)
    }


def _nodes(graph: GraphProto) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def _tensorflow_to_tflite(source_format: str, path: Path, quantization: str, dest: Path) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="modeldeck-convert-") as tmp:
        if source_format == "keras":
            converter = tf.lite.TFLiteConverter.from_keras_model(keras_format.load_model(path))
        else:
            model_dir = savedmodel_format.extract_model(path, Path(tmp))
            converter = tf.lite.TFLiteConverter.from_saved_model(
                str(model_dir), signature_keys=[savedmodel_format.SIGNATURE_KEY]
            )
        if quantization in ("int8", "float16"):
            # Dynamic-range quantization: int8 weights, float activations, float inputs and outputs.
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        with _converter_errors("TFLite"):
            dest.write_bytes(converter.convert())


def _sklearn_to_onnx(source_format: str, path: Path, dest: Path) -> None:
    if source_format == "pickle":
        estimator = pickled_format.load_estimator(path)
    else:
        estimator = sklearn_format.load_estimator(path)
    # Describing it first refuses what the platform cannot serve (unfitted, multi-output) with the usual message.
    inspection = sklearn_format.estimator_inspection(estimator)
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    from sklearn.base import is_classifier

    tensor_types = {"FP32": FloatTensorType, "INT64": Int64TensorType, "BYTES": StringTensorType}
    # One FP32 [N, features] input, or one [N, 1] input per column of a DataFrame-fitted model.
    initial_types = [
        (spec.name, tensor_types[spec.datatype]([None, *spec.shape[1:]])) for spec in inspection.signature.inputs
    ]

    # Without zipmap the probabilities come back as one FP32 tensor instead of a sequence of maps.
    options = {id(sklearn_format.final_step(estimator)): {"zipmap": False}} if is_classifier(estimator) else None
    with _converter_errors("skl2onnx"), _skl2onnx_tree_leaves_as_ints():
        model_proto = convert_sklearn(
            estimator,
            initial_types=initial_types,
            options=options,
            target_opset=OPSET,
        )
    dest.write_bytes(model_proto.SerializeToString())


@contextmanager
def _skl2onnx_tree_leaves_as_ints() -> Iterator[None]:
    """Work around skl2onnx 1.20 failing on every HistGradientBoosting model (TOOLCHAIN G14).

    Its HistGradientBoosting tree walker gives leaves `nodes_missing_value_tracks_true=False` (a Python bool), and
    onnx's attribute builder refuses a bool among ints ("Expected an int, got a boolean"). The flag means the same as
    0/1, so it is passed on as an int; split nodes already pass numpy integers. Not reported upstream as far as we
    found (skl2onnx's own tests run older scikit-learn releases).
    """
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original


def _onnx_tensor_outputs(path: Path, dest: Path) -> str:
    """Write the served form of an ONNX model whose outputs include ZipMap sequences (the file itself is kept)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = sorted(onnx_format.zipmap_outputs(model))
    dest.write_bytes(onnx_format.zipmap_to_tensor(model).SerializeToString())
    listed = ", ".join(f"'{name}'" for name in names)
    return f"ZipMap removed: {listed} served as an FP32 [N, classes] tensor of the same probabilities, in class order"


def _quantize_onnx(path: Path, quantization: str, dest: Path, work_dir: Path) -> list[str]:
    """Quantize an ONNX model, then cast any input or output whose datatype changed back to the source's."""
    import onnx

    source = onnx.load(str(path), load_external_data=False)
    expected = {vi.name: vi.type.tensor_type.elem_type for vi in [*source.graph.input, *source.graph.output]}
    normalized = work_dir / "source.onnx"
    # skl2onnx may list the default opset twice; the quantizer then finds no ai.onnx domain (TOOLCHAIN G15,
    # microsoft/onnxruntime#15563, open).
    normalized.write_bytes(_opsets_deduplicated(source).SerializeToString())
    if quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = work_dir / "prepared.onnx"
        quantize_from = normalized
        try:
            # Symbolic shape inference saves a file in the process's working directory when it cannot infer every
            # shape (sym_shape_infer_temp.onnx, TOOLCHAIN G15); ONNX's own shape inference is enough for the
            # dynamic quantization of MatMul/Gemm weights done here.
            quant_pre_process(str(normalized), str(prepared), skip_symbolic_shape=True)
            quantize_from = prepared
        except Exception as exc:  # noqa: BLE001
            # Pre-processing (shape inference, folding) only improves the result; quantizing works without it.
            logger.warning("ONNX quantization pre-processing failed, quantizing without it: %s", error_summary(exc))
        with _converter_errors("onnxruntime quantization"):
            quantize_dynamic(str(quantize_from), str(dest), weight_type=QuantType.QInt8)
        converted = onnx.load(str(dest), load_external_data=False)
    else:
        # onnxruntime's own copy of the float16 converter (onnxruntime.transformers): onnxconverter-common 1.16's
        # left models onnxruntime refuses to load (a Cast's output typed FP16 while it casts to FP32:
        # microsoft/onnxconverter-common#320, fix PR #326 unmerged; FP16 results of ops it keeps in FP32).
        from onnxruntime.transformers import float16

        model = onnx.load(str(normalized), load_external_data=False)
        loops = sorted({node.op_type for node in model.graph.node if node.op_type in ("Loop", "Scan")})
        if loops:
            raise ConversionError(
                "conversion_failed",
                f"The float16 converter cannot convert a graph with {' or '.join(loops)} bodies (a recurrent layer "
                "exported as a loop, such as a Keras GRU): it casts values across the loop's boundary and makes a "
                "graph onnxruntime refuses. Serve the float32 version, or quantize it to int8.",
                {"tool": "onnxruntime float16", "ops": loops},
            )
        # Exporters annotate intermediate tensors (tf2onnx, torch); the converter rewrites the ops but not always
        # those annotations, and onnxruntime then refuses the model for a type that no longer matches. The types of
        # intermediate tensors are inferred anyway.
        del model.graph.value_info[:]
        with _converter_errors("onnxruntime float16"):
            # keep_io_types leaves inputs and outputs FP32, so clients send and receive what they did before; it
            # misses outputs made after a block of ops it keeps in FP32 (ai.onnx.ml), so the edges are checked below.
            blocked_ops = _float16_block_list(model, float16.DEFAULT_OP_BLOCK_LIST)
            converted = float16.convert_float_to_float16(
                model,
                keep_io_types=True,
                op_block_list=blocked_ops,
                node_block_list=_nodes_after(model.graph, set(blocked_ops)),
            )
    rewrites = _cast_edges_back(converted, expected)
    # The converter appends the casts it adds at the end of the node list; ONNX wants producers before consumers
    # (microsoft/onnxconverter-common#208, the same code in both converters).
    _sort_topologically(converted.graph)
    dest.write_bytes(converted.SerializeToString())
    return rewrites


def _float16_block_list(model: ModelProto, default: list[str]) -> list[str]:
    """Ops to keep in FP32: the converter's own list, every ai.onnx.ml op, and TfIdfVectorizer (FP32 only)."""
    ml_ops = {node.op_type for node in _nodes(model.graph) if node.domain == "ai.onnx.ml"}
    return sorted({*default, *ml_ops, "TfIdfVectorizer"})


def _nodes_after(graph: GraphProto, blocked_ops: set[str]) -> list[str]:
    """Name every node that reads, directly or not, what a kept-FP32 op makes: those stay FP32 too.

    The converter casts the inputs of a kept op to FP32 but not its outputs back to FP16, so the node after it (the
    Identity that ends skl2onnx's classifiers, the Concat of a ColumnTransformer) would mix FP32 and FP16, which
    onnxruntime refuses. Unnamed nodes are named first: the converter keeps nodes by name.
    """
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"modeldeck_node_{index}"
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    kept = [node for node in graph.node if node.op_type in blocked_ops]
    after: set[str] = set()
    while kept:
        node = kept.pop()
        for output in node.output:
            for reader in readers.get(output, []):
                if reader.name not in after:
                    after.add(reader.name)
                    kept.append(reader)
    return sorted(after)


def _sort_topologically(graph: GraphProto) -> None:
    """Order the graph's nodes so each comes after the nodes whose outputs it reads, keeping the order otherwise.

    A node's needs include the outer values its subgraphs (Loop, If, Scan bodies) read.
    """
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    # Kahn's algorithm: each node waits for the values it still lacks; producing a value wakes its readers.
    missing = {index: _node_needs(node) - available for index, node in enumerate(graph.node)}
    waiting: dict[str, list[int]] = {}
    for index, needs in missing.items():
        for name in needs:
            waiting.setdefault(name, []).append(index)
    ready = [index for index, needs in missing.items() if not needs]
    heapq.heapify(ready)  # the smallest index first: nodes already in order keep it
    ordered = []
    while ready:
        index = heapq.heappop(ready)
        node = graph.node[index]
        ordered.append(node)
        for name in node.output:
            for reader in waiting.pop(name, []):
                missing[reader].discard(name)
                if not missing[reader]:
                    heapq.heappush(ready, reader)
    if len(ordered) != len(graph.node):
        return  # a cycle or a value from nowhere: leave the graph as it is, the checker will say what is wrong
    nodes = [type(node)() for node in ordered]
    for copy, node in zip(nodes, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _node_needs(node: Any) -> set[str]:
    needs = set(node.input)
    for attribute in node.attribute:
        for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            inner = {value.name for value in subgraph.input} | {init.name for init in subgraph.initializer}
            for inner_node in subgraph.node:
                needs |= _node_needs(inner_node) - inner
                inner |= set(inner_node.output)
    return needs


def _opsets_deduplicated(model: ModelProto) -> ModelProto:
    """Keep one opset import per domain (the highest version), as the ONNX spec requires."""
    from onnx import ModelProto, helper

    versions: dict[str, int] = {}
    for opset in model.opset_import:
        domain = "" if opset.domain == "ai.onnx" else opset.domain
        versions[domain] = max(versions.get(domain, 0), opset.version)
    fixed = ModelProto()
    fixed.CopyFrom(model)
    del fixed.opset_import[:]
    fixed.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in versions.items())
    return fixed


def _cast_edges_back(model: ModelProto, expected: dict[str, int]) -> list[str]:
    """Give every graph input and output its source datatype again, with a Cast at the edge; say what was cast."""
    from onnx import TensorProto, helper

    graph = model.graph
    rewrites = []
    producers = {output: node for node in graph.node for output in node.output}
    for value_info in graph.output:
        want = expected.get(value_info.name)
        tensor_type = value_info.type.tensor_type
        if want is None or not value_info.type.HasField("tensor_type") or tensor_type.elem_type == want:
            continue
        was = TensorProto.DataType.Name(tensor_type.elem_type)
        producer = producers.get(value_info.name)
        if producer is not None and producer.op_type == "Cast":
            # The converter's own cast to the narrow type: make it cast to the source's type instead.
            for attribute in producer.attribute:
                if attribute.name == "to":
                    attribute.i = want
        else:
            inner = f"{value_info.name}__converted"
            for node in graph.node:
                node.output[:] = [inner if out == value_info.name else out for out in node.output]
                node.input[:] = [inner if name == value_info.name else name for name in node.input]
            graph.node.append(helper.make_node("Cast", [inner], [value_info.name], to=want))
        tensor_type.elem_type = want
        rewrites.append(f"output '{value_info.name}' cast back from {was} to {TensorProto.DataType.Name(want)}")
    for value_info in graph.input:
        want = expected.get(value_info.name)
        tensor_type = value_info.type.tensor_type
        if want is None or not value_info.type.HasField("tensor_type") or tensor_type.elem_type == want:
            continue
        narrow = tensor_type.elem_type
        inner = f"{value_info.name}__converted"
        for node in graph.node:
            node.input[:] = [inner if name == value_info.name else name for name in node.input]
        graph.node.insert(0, helper.make_node("Cast", [value_info.name], [inner], to=narrow))
        tensor_type.elem_type = want
        rewrites.append(
            f"input '{value_info.name}' accepted as {TensorProto.DataType.Name(want)} again and cast to "
            f"{TensorProto.DataType.Name(narrow)} inside"
        )
    return rewrites


@contextmanager
def _converter_errors(tool: str) -> Iterator[None]:
    """Turn whatever a converter raises into a conversion_failed error with a short cause, never a trace."""
    try:
        yield
    except ModelFileError:
        raise
    except Exception as exc:
        raise _conversion_failed(tool, exc) from exc


def _conversion_failed(tool: str, exc: BaseException) -> ConversionError:
    text = str(exc)
    ops = sorted({op.strip() for line in _TFLITE_UNSUPPORTED_OPS.findall(text) for op in line.split(",")})
    if ops:
        return ConversionError(
            "conversion_failed",
            f"TensorFlow Lite has no built-in kernel for the op{'s' if len(ops) > 1 else ''} {', '.join(ops)}, "
            "and ModelDeck's LiteRT runtime does not include TensorFlow (Flex) ops.",
            {"tool": tool, "unsupported_ops": ops},
        )
    if "'tf.TensorList" in text:
        return ConversionError(
            "conversion_failed",
            "TensorFlow Lite cannot convert the loop of a recurrent layer (LSTM, GRU, SimpleRNN) whose batch size is "
            "dynamic: it needs TensorFlow (Flex) ops for it, which ModelDeck's LiteRT runtime does not include. The "
            "ONNX version serves this model; for a TensorFlow Lite version, build the recurrent layers with "
            "unroll=True (a fixed sequence length) and upload the model again.",
            {"tool": tool, "unsupported_ops": sorted(set(re.findall(r"'(tf\.TensorList\w+)'", text)))},
        )
    if "only supports string and int64 categories" in text:
        return ConversionError(
            "conversion_failed",
            f"The skl2onnx converter failed: {error_summary(exc)}. ModelDeck gives a scikit-learn model one FP32 "
            "input tensor, so an encoder fitted on numbers has float categories, which skl2onnx cannot encode. "
            "Encode those columns as integers or strings before they reach the model, or export the pipeline "
            "yourself with skl2onnx (one input per column, strings as StringTensorType) and upload the ONNX file.",
            {"tool": tool},
        )
    error_line = _CONVERTER_ERROR_LINE.search(text)
    if error_line:
        # MLIR prefixes each error with its location, loc(callsite(fused[...] at ...)): the message follows it.
        line = error_line.group(1).strip()
        cause = (line.rsplit(")): ", 1)[-1] if line.startswith("loc(") else line)[:400].rstrip(".")
    else:
        cause = error_summary(exc)
    return ConversionError("conversion_failed", f"The {tool} converter failed: {cause}.", {"tool": tool})


def _check_result(dest: Path, recipe: Recipe, signature: Signature) -> Inspection:
    """Inspect the converted file with its format's own inspector, check its serving runtime loads and runs it, and
    check it kept the source's names."""
    try:
        inspection = _TARGET_FORMATS[recipe.target].inspect(dest)
        # What the checker passes onnxruntime may still refuse: load and warm it as serving will.
        runtime_load_check(format_name=recipe.target, path=dest, signature=inspection.signature)
    except ModelFileError as exc:
        raise ConversionError(
            "conversion_failed",
            f"The converted {describe_recipe(recipe)} model does not load: {exc.message}",
            {"reason": exc.code},
        ) from exc
    _check_names("input", [s.name for s in signature.inputs], [s.name for s in inspection.signature.inputs])
    # The TFLite converter names outputs itself (output_0, ... or the SavedModel's keys); parity matches by position
    # when those differ. The ONNX outputs are named here, so a difference there is a bug worth stopping on.
    if recipe.target == "onnx":
        _check_names("output", [s.name for s in signature.outputs], [s.name for s in inspection.signature.outputs])
    return inspection


def _check_names(role: str, source: list[str], converted: list[str]) -> None:
    if sorted(source) != sorted(converted):
        raise ConversionError(
            "conversion_failed",
            f"The converted model's {role}s are named {converted}, but the source model's are {source}; clients "
            "would have to change their requests.",
            {"source": source, "converted": converted},
        )

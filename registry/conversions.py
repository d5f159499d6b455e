"""Convert a model file to another format or quantization: plain functions that a worker job calls.

The web process imports this module to list what is supported, so TensorFlow, tf2onnx, skl2onnx and the onnxruntime
quantizer are imported inside the functions that use them, never at module import time.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.formats import keras as keras_format
from registry.formats import onnx as onnx_format
from registry.formats import pickled as pickled_format
from registry.formats import savedmodel as savedmodel_format
from registry.formats import sklearn as sklearn_format
from registry.formats import tflite as tflite_format
from registry.formats.base import ConversionError, ModelFileError, ModelFormat, Recipe, Signature

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


def conversion_supported(source_format: str, recipe: Recipe) -> bool:
    """Tell whether ModelDeck can make the recipe's target from a model of the source format."""
    return recipe in SUPPORTED.get(source_format, ())


def describe_recipe(recipe: Recipe) -> str:
    """Name a recipe for people: "ONNX", "TensorFlow Lite (int8)"."""
    return f"{_TARGET_LABELS[recipe.target]}{_QUANTIZATION_LABELS[recipe.quantization]}"


def convert(source_format: str, path: Path, recipe: Recipe, out_dir: Path, signature: Signature) -> Path:
    """Convert the model at path into out_dir as the recipe says, check the result loads, and return its path."""
    if not conversion_supported(source_format, recipe):
        supported = SUPPORTED.get(source_format, ())
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
    if source_format in ("keras", "savedmodel"):
        if recipe.target == "onnx":
            _tensorflow_to_onnx(source_format, path, signature, dest)
        else:
            _tensorflow_to_tflite(source_format, path, recipe.quantization, dest)
    elif source_format in ("sklearn", "pickle"):
        _sklearn_to_onnx(source_format, path, dest)
    else:
        _quantize_onnx(path, recipe.quantization, dest)
    _check_result(dest, recipe, signature)
    return dest


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
                    "invalid_savedmodel", f"The SavedModel could not be loaded: {_short(exc)}."
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
    n_features = inspection.signature.inputs[0].shape[1]
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier

    # Without zipmap the probabilities come back as one FP32 tensor instead of a sequence of maps.
    options = {id(_final_step(estimator)): {"zipmap": False}} if is_classifier(estimator) else None
    with _converter_errors("skl2onnx"):
        model_proto = convert_sklearn(
            estimator,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            options=options,
            target_opset=OPSET,
        )
    dest.write_bytes(model_proto.SerializeToString())


def _final_step(estimator: Any) -> Any:
    steps = getattr(estimator, "steps", None)
    # skl2onnx looks options up by the id of the classifier that makes the outputs, the last step of a pipeline.
    return _final_step(steps[-1][1]) if steps else estimator


def _quantize_onnx(path: Path, quantization: str, dest: Path) -> None:
    if quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory(prefix="modeldeck-convert-") as tmp:
            source = path
            prepared = Path(tmp) / "prepared.onnx"
            try:
                quant_pre_process(str(path), str(prepared))
                source = prepared
            except Exception as exc:  # noqa: BLE001
                # Pre-processing (shape inference, folding) only improves the result; quantizing works without it.
                logger.warning("ONNX quantization pre-processing failed, quantizing without it: %s", _short(exc))
            with _converter_errors("onnxruntime quantization"):
                quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8)
    else:
        import onnx
        from onnxconverter_common import float16

        with _converter_errors("onnxconverter-common float16"):
            model = onnx.load(str(path), load_external_data=False)
            # keep_io_types leaves inputs and outputs FP32, so clients send and receive what they did before.
            dest.write_bytes(float16.convert_float_to_float16(model, keep_io_types=True).SerializeToString())


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
    error_line = _CONVERTER_ERROR_LINE.search(text)
    cause = error_line.group(1).strip()[:300] if error_line else _short(exc)
    return ConversionError("conversion_failed", f"The {tool} converter failed: {cause}", {"tool": tool})


def _check_result(dest: Path, recipe: Recipe, signature: Signature) -> None:
    """Inspect the converted file with its format's own inspector and check it kept the source's names."""
    try:
        inspection = _TARGET_FORMATS[recipe.target].inspect(dest)
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


def _check_names(role: str, source: list[str], converted: list[str]) -> None:
    if sorted(source) != sorted(converted):
        raise ConversionError(
            "conversion_failed",
            f"The converted model's {role}s are named {converted}, but the source model's are {source}; clients "
            "would have to change their requests.",
            {"source": source, "converted": converted},
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]

"""TensorFlow without Keras (a tf.Module SavedModel), and TFLite files as the LiteRT converter guide makes them."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tests.zoo.catalog import Built, ZooModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROWS = 5


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def tf_module(folder: Path) -> Built:
    """tf.Module with variables and a tf.function serving signature, saved with tf.saved_model.save."""
    import tensorflow as tf

    class Scorer(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(1)
            self.w = tf.Variable(rng.normal(size=(4, 2)).astype(np.float32))
            self.b = tf.Variable(rng.normal(size=(2,)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
        def __call__(self, features: Any) -> dict[str, Any]:
            logits = tf.matmul(features, self.w) + self.b
            return {"scores": tf.nn.sigmoid(logits), "logits": logits}

    module = Scorer()
    tf.saved_model.save(module, str(folder / "scorer"), signatures={"serving_default": module.__call__})
    path = folder / "scorer.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted((folder / "scorer").rglob("*")):
            zf.write(file, f"scorer/{file.relative_to(folder / 'scorer')}")
    x = _rng().normal(size=(ROWS, 4)).astype(np.float32)
    answer = module(tf.constant(x))
    return Built(path, {"features": x}, {name: np.asarray(value) for name, value in answer.items()})


def _keras_mlp() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input(shape=(4,), name="features"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _calibration() -> np.ndarray:
    return _rng().normal(size=(64, 4)).astype(np.float32)


def _tflite(folder: Path, filename: str, quantize: str) -> Built:
    """Convert the Keras MLP with TFLiteConverter as the post-training quantization guide does; answer with LiteRT."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(_keras_mlp())
    if quantize != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize in ("int8", "uint8"):

        def representative() -> Iterator[list[np.ndarray]]:
            for row in _calibration():
                yield [row[None, :]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        kind = tf.int8 if quantize == "int8" else tf.uint8
        converter.inference_input_type = kind
        converter.inference_output_type = kind
    path = folder / filename
    path.write_bytes(converter.convert())
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    ((input_name, detail),) = runner.get_input_details().items()
    x = _rng().normal(size=(ROWS, 4)).astype(np.float32)
    if quantize in ("int8", "uint8"):
        # A full-integer model takes quantized values: x / scale + zero_point, as the guide's client code does.
        scale, zero_point = detail["quantization"]
        info = np.iinfo(detail["dtype"])
        x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])
    outputs = runner(**{input_name: x})
    return Built(path, {input_name: x}, {name: np.asarray(value) for name, value in outputs.items()})


def tflite_float32(folder: Path) -> Built:
    return _tflite(folder, "mlp.tflite", "float32")


def tflite_float16(folder: Path) -> Built:
    return _tflite(folder, "mlp_float16.tflite", "float16")


def tflite_dynamic_range(folder: Path) -> Built:
    return _tflite(folder, "mlp_dynamic.tflite", "dynamic")


def tflite_int8(folder: Path) -> Built:
    return _tflite(folder, "mlp_int8.tflite", "int8")


def tflite_uint8(folder: Path) -> Built:
    return _tflite(folder, "mlp_uint8.tflite", "uint8")


QUANTIZED_NOTE = (
    "inputs and outputs are {kind}: send round(x / scale + zero_point) with the input's scale and zero point from "
    "the version's metadata ('quantization'), read outputs as (y - zero_point) * scale"
)
MODELS = [
    ZooModel(
        "tf-module-savedmodel",
        "tensorflow",
        "tf.Module with tf.Variable weights and a @tf.function signature, tf.saved_model.save(signatures=...)",
        "scorer.zip",
        tf_module,
        served=("onnx", "tflite"),
    ),
    ZooModel(
        "tflite-float32",
        "tflite",
        "TFLiteConverter.from_keras_model(model).convert()",
        "mlp.tflite",
        tflite_float32,
        served=("tflite",),
    ),
    ZooModel(
        "tflite-float16",
        "tflite",
        "converter.optimizations = [Optimize.DEFAULT]; target_spec.supported_types = [tf.float16]",
        "mlp_float16.tflite",
        tflite_float16,
        served=("tflite",),
    ),
    ZooModel(
        "tflite-dynamic-range",
        "tflite",
        "converter.optimizations = [Optimize.DEFAULT] (dynamic-range int8 weights)",
        "mlp_dynamic.tflite",
        tflite_dynamic_range,
        served=("tflite",),
    ),
    ZooModel(
        "tflite-full-int8",
        "tflite",
        "representative_dataset, TFLITE_BUILTINS_INT8, inference_input/output_type = tf.int8",
        "mlp_int8.tflite",
        tflite_int8,
        served=("tflite",),
        atol=0,
        rtol=0,
        notes=QUANTIZED_NOTE.format(kind="INT8"),
    ),
    ZooModel(
        "tflite-full-uint8",
        "tflite",
        "representative_dataset, TFLITE_BUILTINS_INT8, inference_input/output_type = tf.uint8",
        "mlp_uint8.tflite",
        tflite_uint8,
        served=("tflite",),
        atol=0,
        rtol=0,
        notes=QUANTIZED_NOTE.format(kind="UINT8"),
    ),
]

"""Tiny seeded model files for tests, and hostile archives; TensorFlow and scikit-learn are imported per builder."""

from __future__ import annotations

import json
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 4
CLASSES = 3


def onnx_file(path: Path, features: int = FEATURES, classes: int = CLASSES, seed: int = 0) -> Path:
    """Write a softmax(x @ W + b) ONNX model: input "x" FP32 [N, features], output "probs" FP32 [N, classes]."""
    path.write_bytes(_onnx_model(features, classes, seed).SerializeToString())
    return path


def onnx_with_external_data(path: Path, location: str = "../../etc/passwd") -> Path:
    """Write an ONNX model whose weight claims to live in an external file at `location`."""
    from onnx import TensorProto

    model = _onnx_model(FEATURES, CLASSES, seed=0)
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(FEATURES * CLASSES * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    # SerializeToString, not onnx.save: onnx.save would try to write the external data itself.
    path.write_bytes(model.SerializeToString())
    return path


def _onnx_model(features: int, classes: int, seed: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(size=(features, classes)).astype(np.float32), name="W")
    bias = numpy_helper.from_array(rng.normal(size=(classes,)).astype(np.float32), name="B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["logits_raw"]),
            helper.make_node("Add", ["logits_raw", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ],
        "tiny_softmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])],
        initializer=[weight, bias],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="modeldeck-tests", producer_version="1.0"
    )
    model.ir_version = 8  # onnxruntime 1.32 runs IR 8; helper.make_model would stamp the newest
    return model


def onnx_failing_past_one_row(path: Path, seed: int = 0) -> Path:
    """Write the tiny softmax model with a Reshape to one row first: it loads and answers one row (as the load check
    and warm-up call it), and fails at run time (onnxruntime RUNTIME_EXCEPTION: a 500) on any request of two rows.
    A version that answers badly, for rollouts and rollback rules to catch."""
    from onnx import helper, numpy_helper

    model = _onnx_model(FEATURES, CLASSES, seed)
    shape = numpy_helper.from_array(np.array([1, FEATURES], dtype=np.int64), name="one_row")
    model.graph.initializer.append(shape)
    model.graph.node.insert(0, helper.make_node("Reshape", ["x", "one_row"], ["x_one"]))
    model.graph.node[1].input[0] = "x_one"  # MatMul reads the reshaped rows
    path.write_bytes(model.SerializeToString())
    return path


def onnx_with_unknown_op(path: Path, domain: str = "com.example.tenant") -> Path:
    """Write an ONNX model x[N, 4] -> y[N, 4] through an op of a custom domain: onnx.checker passes it (it cannot
    know the domain's ops), and no runtime has the op, so it never loads."""
    from onnx import TensorProto, checker, helper

    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain=domain)],
        "unknown_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", FEATURES])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    model.ir_version = 8
    checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def onnx_needing_memory(path: Path, megabytes: int) -> Path:
    """Write a tiny ONNX model x[N, 4] -> y[N, 4] that fills a tensor of `megabytes` MB on every run (adding its sum
    to x), so loading and warming it needs that much memory."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [megabytes * 250_000])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph(
        [
            helper.make_node("ConstantOfShape", ["shape"], ["big"], value=one),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
            helper.make_node("Add", ["x", "total"], ["y"]),
        ],
        "needs_memory",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", FEATURES])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@contextmanager
def _quiet_keras_save() -> Iterator[None]:
    # Keras 3.15's convert_to_numpy trips numpy 2.4's __array__(copy=...) deprecation on every save; not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        yield


def keras_model(seed: int = 0) -> Any:
    """Build a seeded 4 -> 8 (relu) -> 3 (softmax) Keras model with input "x"."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,), name="x")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    return keras.Model(inputs, outputs)


def keras_two_io_model(seed: int = 0) -> Any:
    """Build a seeded Keras model with inputs "features" [N, 4] and "extra" [N, 6], and two outputs.

    The outputs are class probabilities [N, 3] and a value [N, 1]. The 64 -> 32 layer has 2048 weights, above the
    1024 under which TFLite's dynamic-range quantization leaves a tensor in float, so int8 really quantizes it.
    """
    import keras

    keras.utils.set_random_seed(seed)
    features = keras.Input((FEATURES,), name="features")
    extra = keras.Input((6,), name="extra")
    hidden = keras.layers.Concatenate()([features, extra])
    hidden = keras.layers.Dense(64, activation="relu")(hidden)
    hidden = keras.layers.Dense(32, activation="relu")(hidden)
    probabilities = keras.layers.Dense(CLASSES, activation="softmax")(hidden)
    value = keras.layers.Dense(1)(hidden)
    return keras.Model([features, extra], [probabilities, value])


@cache
def _digamma_layer() -> Any:
    import keras

    @keras.saving.register_keras_serializable(package="modeldeck_tests")
    class Digamma(keras.layers.Layer):
        """Apply the digamma function, which neither tf2onnx nor TFLite's built-in ops can convert."""

        def call(self, inputs: Any) -> Any:
            import tensorflow as tf

            return tf.math.digamma(inputs)

    return Digamma


def keras_unconvertible_model() -> Any:
    """Build a Keras model with a registered custom layer that calls tf.math.digamma (safe mode loads it)."""
    import keras

    inputs = keras.Input((FEATURES,), name="x")
    outputs = _digamma_layer()()(keras.layers.Dense(CLASSES)(inputs))
    return keras.Model(inputs, outputs)


def keras_file(path: Path, model: Any = None) -> Path:
    """Save a Keras 3 model to path (a .keras zip, whatever path's name)."""
    model = model if model is not None else keras_model()
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "model.keras"  # Keras picks the container from the name
        with _quiet_keras_save():
            model.save(named)
        shutil.copyfile(named, path)
    return path


def keras_h5_file(path: Path, model: Any = None) -> Path:
    """Save a Keras model in the legacy HDF5 format to path."""
    model = model if model is not None else keras_model()
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "model.h5"
        with _quiet_keras_save():
            model.save(named)
        shutil.copyfile(named, path)
    return path


def keras_weights_file(path: Path, model: Any = None) -> Path:
    """Save only a Keras model's weights (an HDF5 file with no model config in it) to path."""
    model = model if model is not None else keras_model()
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "model.weights.h5"  # Keras insists on this suffix for weights
        with _quiet_keras_save():
            model.save_weights(named)
        shutil.copyfile(named, path)
    return path


def keras_lambda_file(path: Path, h5: bool = False) -> Path:
    """Save a Keras model with a Python lambda inside a Lambda layer (what safe mode refuses)."""
    import keras

    inputs = keras.Input((FEATURES,), name="x")
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, outputs)
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / ("model.h5" if h5 else "model.keras")
        with _quiet_keras_save():
            model.save(named)
        shutil.copyfile(named, path)
    return path


def tflite_file(path: Path, model: Any = None) -> Path:
    """Convert a Keras model to TensorFlow Lite and write it to path."""
    import tensorflow as tf

    model = model if model is not None else keras_model()
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def tflite_without_signatures(src: Path, dst: Path) -> Path:
    """Copy a TFLite model without its signature defs (as older converters wrote them)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    model.signatureDefs = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
    return dst


def savedmodel_zip(path: Path, model: Any = None, folder: str = "exported") -> Path:
    """Export a Keras model as a SavedModel and zip it under one top-level folder."""
    model = model if model is not None else keras_model()
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / folder
        model.export(str(export_dir), verbose=False)
        _zip_folder(export_dir, path, arcroot=folder)
    return path


def savedmodel_zip_without_serving_default(path: Path) -> Path:
    """Save a tf.Module whose only signature is named "predict", zipped at the archive's top."""
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="x")])
        def predict(self, x: Any) -> Any:
            return {"y": x * 2.0}

    module = Doubler()
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={"predict": module.predict})
        _zip_folder(Path(tmp), path, arcroot="")
    return path


def _zip_folder(folder: Path, path: Path, arcroot: str) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            relative = file.relative_to(folder).as_posix()
            arcname = f"{arcroot}/{relative}" if arcroot else relative
            zf.write(file, arcname + ("/" if file.is_dir() else ""))


def training_data(seed: int = 0, rows: int = 60) -> tuple[Any, Any]:
    """Return seeded features [rows, 4] and integer labels in 0..2."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    return x, y


def sklearn_estimator(kind: str = "logreg", seed: int = 0) -> Any:
    """Fit a small estimator on seeded data: "logreg", "forest" (classifiers) or "regressor"."""
    x, y = training_data(seed)
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=200).fit(x, y)
    if kind == "forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=3, max_depth=3, random_state=seed).fit(x, y)
    if kind == "regressor":
        from sklearn.linear_model import LinearRegression

        return LinearRegression().fit(x, x[:, 0] * 2.0 + 1.0)
    raise ValueError(f"unknown kind {kind!r}")


def sklearn_pipeline(seed: int = 0) -> Any:
    """Fit a StandardScaler + LogisticRegression pipeline on seeded data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = training_data(seed)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(x, y)


def skops_pipeline_file(path: Path, seed: int = 0) -> Path:
    """Dump a fitted StandardScaler + LogisticRegression pipeline with skops."""
    import skops.io as sio

    sio.dump(sklearn_pipeline(seed), path)
    return path


def skops_file(path: Path, kind: str = "logreg", seed: int = 0) -> Path:
    """Dump a fitted estimator with skops."""
    import skops.io as sio

    sio.dump(sklearn_estimator(kind, seed), path)
    return path


def double(x: Any) -> Any:
    """Double the input (a user function, which skops lists as untrusted)."""
    return x * 2


def skops_with_custom_function(path: Path) -> Path:
    """Dump a fitted pipeline whose FunctionTransformer calls a function from this module."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x, y = training_data()
    sio.dump(make_pipeline(FunctionTransformer(double), LogisticRegression()).fit(x, y), path)
    return path


def skops_calling(path: Path, module: str, name: str, argument: str) -> Path:
    """Write a skops file that asks the loader to call module.name(argument): the shape of a code-execution exploit."""
    string = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "is_json": True}
    schema = {
        "__class__": name,
        "__module__": module,
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [{**string, "content": json.dumps(argument), "__id__": 2}],
            "__id__": 3,
        },
        "__id__": 1,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("schema.json", json.dumps(schema))
    return path


def pickle_file(path: Path, compress: bool | str = False) -> Path:
    """Dump a fitted LogisticRegression with joblib; compress True (zlib) or a joblib method name ("gzip", ...)."""
    import joblib

    level: Any = 3 if compress is True else ((compress, 3) if compress else 0)
    joblib.dump(sklearn_estimator("logreg"), path, compress=level)
    return path


def zip_with_member(path: Path, name: str, data: bytes = b"x") -> Path:
    """Write a zip with one member of the given name (any name, '../evil' included)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), data)
    return path


def zip_with_symlink(path: Path, name: str = "link", target: str = "/etc/passwd") -> Path:
    """Write a zip whose one member is a Unix symbolic link to target."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode bits in external_attr mean what they say
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, target)
    return path


def zip_bomb(path: Path, megabytes: int) -> Path:
    """Write a zip with one deflated member of `megabytes` MiB of zeros."""
    chunk = bytes(1024 * 1024)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w", force_zip64=True) as f:
        for _ in range(megabytes):
            f.write(chunk)
    return path


def zip_many_members(path: Path, n: int) -> Path:
    """Write a zip with n empty members."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"m{i}.txt", b"")
    return path


def zip_with_understated_size(path: Path, real_bytes: int, claimed_bytes: int) -> Path:
    """Write a stored zip member of real_bytes whose central directory claims claimed_bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("data.bin", bytes(real_bytes))
        # Written into the central directory on close, after the member's data and local header are on disk.
        zf.infolist()[0].file_size = claimed_bytes
    return path


def truncated(src: Path, dst: Path) -> Path:
    """Copy the first half of src to dst."""
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def random_bytes(path: Path, size: int = 4096, seed: int = 0) -> Path:
    """Write seeded random bytes."""
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path

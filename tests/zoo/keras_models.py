"""Keras models as keras.io's guides make them: Sequential, Functional, subclassed; saved as .keras, .h5, export()."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tests.zoo.catalog import Built, ZooModel

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROWS = 5


def _keras() -> Any:
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _save(model: Any, path: Path) -> None:
    # Keras 3.15's convert_to_numpy trips numpy 2.4's __array__(copy=...) deprecation on save; not ours to fix.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        model.save(path)


def _answer(path: Path, *arrays: np.ndarray) -> Built:
    """Load the saved file as a user would and record its own predictions on the arrays (one per input, in order).

    Inputs are named as the reloaded model names them (a Sequential's input is `input_layer` once saved, whatever
    it was called in memory); outputs are output_0, output_1, ... in the order of model.outputs.
    """
    import keras

    model = keras.saving.load_model(path)
    names = [tensor.name for tensor in model.inputs]
    features = arrays[0] if len(arrays) == 1 else dict(zip(names, arrays, strict=True))
    outputs = keras.tree.flatten(model.predict(features, verbose=0))
    return Built(
        path,
        dict(zip(names, arrays, strict=True)),
        {f"output_{i}": np.asarray(out) for i, out in enumerate(outputs)},
    )


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _sequential_mlp() -> Any:
    keras = _keras()
    return keras.Sequential(
        [
            keras.Input(shape=(4,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def sequential_mlp(folder: Path) -> Built:
    model = _sequential_mlp()
    path = folder / "mlp.keras"
    _save(model, path)
    return _answer(path, _rng().normal(size=(ROWS, 4)).astype(np.float32))


def legacy_h5(folder: Path) -> Built:
    model = _sequential_mlp()
    path = folder / "mlp.h5"
    _save(model, path)
    return _answer(path, _rng().normal(size=(ROWS, 4)).astype(np.float32))


def sequential_cnn(folder: Path) -> Built:
    keras = _keras()
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    # A short fit moves BatchNormalization's moving statistics off their defaults, so inference mode matters.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = _rng().normal(size=(32, 8, 8, 1)).astype(np.float32)
    model.fit(x, _rng().integers(0, 3, size=32), epochs=2, batch_size=8, verbose=0)
    path = folder / "cnn.keras"
    _save(model, path)
    return _answer(path, x[:ROWS])


def _recurrent(folder: Path, layer: str, unroll: bool = False) -> Built:
    keras = _keras()
    model = keras.Sequential(
        [
            keras.Input(shape=(6, 3)),
            getattr(keras.layers, layer)(8, unroll=unroll),
            keras.layers.Dense(2),
        ]
    )
    path = folder / f"{layer.lower()}{'_unrolled' if unroll else ''}.keras"
    _save(model, path)
    return _answer(path, _rng().normal(size=(ROWS, 6, 3)).astype(np.float32))


def lstm(folder: Path) -> Built:
    return _recurrent(folder, "LSTM")


def gru(folder: Path) -> Built:
    return _recurrent(folder, "GRU")


def lstm_unrolled(folder: Path) -> Built:
    return _recurrent(folder, "LSTM", unroll=True)


def embedding(folder: Path) -> Built:
    keras = _keras()
    model = keras.Sequential(
        [
            keras.Input(shape=(7,), dtype="int32"),
            keras.layers.Embedding(input_dim=10, output_dim=4),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    path = folder / "text.keras"
    _save(model, path)
    return _answer(path, _rng().integers(0, 10, size=(ROWS, 7)).astype(np.int32))


def _functional() -> Any:
    keras = _keras()
    numeric = keras.Input(shape=(4,), name="numeric")
    history = keras.Input(shape=(3,), name="history")
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([numeric, history]))
    price = keras.layers.Dense(1, name="price")(hidden)
    category = keras.layers.Dense(3, activation="softmax", name="category")(hidden)
    return keras.Model(inputs=[numeric, history], outputs=[price, category])


def functional_multi_io(folder: Path) -> Built:
    model = _functional()
    path = folder / "multi.keras"
    _save(model, path)
    rng = _rng()
    return _answer(path, rng.normal(size=(ROWS, 4)).astype(np.float32), rng.normal(size=(ROWS, 3)).astype(np.float32))


def _subclassed() -> Any:
    keras = _keras()

    base: Any = keras.Model

    class Classifier(base):  # the keras.io "subclassing" guide's shape
        def __init__(self) -> None:
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, inputs: Any) -> Any:
            return self.out(self.hidden(inputs))

    model = Classifier()
    model(np.zeros((1, 4), dtype=np.float32))  # builds the weights
    return model


def subclassed_keras(folder: Path) -> Built:
    model = _subclassed()
    path = folder / "subclassed.keras"
    _save(model, path)
    x = _rng().normal(size=(ROWS, 4)).astype(np.float32)
    return Built(path, {"x": x}, {"output_0": np.asarray(model(x))})


def _zip_folder(folder: Path, path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            zf.write(file, f"exported/{file.relative_to(folder)}")


def _exported(model: Any, folder: Path, filename: str) -> Built:
    """model.export(dir), zipped; named as the SavedModel's serving signature names them."""
    import tensorflow as tf

    model.export(folder / "exported", verbose=False)
    path = folder / filename
    _zip_folder(folder / "exported", path)
    function = tf.saved_model.load(str(folder / "exported")).signatures["serving_default"]
    (input_name,) = function.structured_input_signature[1]
    (output_name,) = function.structured_outputs
    x = _rng().normal(size=(ROWS, 4)).astype(np.float32)
    return Built(path, {input_name: x}, {output_name: np.asarray(model(x))})


def subclassed_export(folder: Path) -> Built:
    """What the refusal of a subclassed .keras tells users to do: model.export(dir), zipped."""
    return _exported(_subclassed(), folder, "subclassed_savedmodel.zip")


def exported_savedmodel(folder: Path) -> Built:
    return _exported(_sequential_mlp(), folder, "mlp_savedmodel.zip")


BOTH = ("onnx", "tflite")
MODELS = [
    ZooModel(
        "keras-sequential-mlp",
        "keras",
        "keras.Sequential([Input((4,)), Dense(16, relu), Dense(3, softmax)]), model.save('mlp.keras')",
        "mlp.keras",
        sequential_mlp,
        served=BOTH,
    ),
    ZooModel(
        "keras-sequential-cnn",
        "keras",
        "Sequential Conv2D, BatchNormalization, MaxPooling2D, Dropout, Dense; fit; .keras",
        "cnn.keras",
        sequential_cnn,
        served=BOTH,
    ),
    ZooModel(
        "keras-lstm",
        "keras",
        "Sequential LSTM(8) over [N, 6, 3], Dense(2); .keras",
        "lstm.keras",
        lstm,
        served=("onnx",),
        failed_conversions=(("tflite", "unroll=True"),),
        notes="TFLite needs Flex ops for the recurrent loop: served as ONNX; unroll=True makes a TFLite version",
    ),
    ZooModel(
        "keras-lstm-unrolled",
        "keras",
        "Sequential LSTM(8, unroll=True) over [N, 6, 3], Dense(2); .keras",
        "lstm_unrolled.keras",
        lstm_unrolled,
        served=BOTH,
    ),
    ZooModel(
        "keras-gru",
        "keras",
        "Sequential GRU(8) over [N, 6, 3], Dense(2); .keras",
        "gru.keras",
        gru,
        served=("onnx",),
        failed_conversions=(("tflite", "unroll=True"),),
        failed_quantizations=(("float16", "Loop bodies"),),
    ),
    ZooModel(
        "keras-embedding",
        "keras",
        "Sequential Embedding(10, 4) over int32 token ids, GlobalAveragePooling1D, Dense; .keras",
        "text.keras",
        embedding,
        served=BOTH,
    ),
    ZooModel(
        "keras-functional-multi-io",
        "keras",
        "Functional: named inputs 'numeric' and 'history', outputs 'price' and 'category'; .keras",
        "multi.keras",
        functional_multi_io,
        served=BOTH,
        notes="outputs are served as output_0, output_1 in model.outputs order",
    ),
    ZooModel(
        "keras-subclassed",
        "keras",
        "subclassed keras.Model (keras.io subclassing guide), model.save('subclassed.keras')",
        "subclassed.keras",
        subclassed_keras,
        served=(),
        refused="model.export",
    ),
    ZooModel(
        "keras-subclassed-export",
        "tensorflow",
        "the same subclassed model, model.export(dir) (SavedModel), zipped",
        "subclassed_savedmodel.zip",
        subclassed_export,
        served=BOTH,
    ),
    ZooModel(
        "keras-legacy-h5", "keras", "the Sequential MLP, model.save('mlp.h5') (legacy HDF5)", "mlp.h5", legacy_h5, BOTH
    ),
    ZooModel(
        "keras-export-savedmodel",
        "tensorflow",
        "the Sequential MLP, model.export(dir) (SavedModel, serving_default), zipped",
        "mlp_savedmodel.zip",
        exported_savedmodel,
        served=BOTH,
    ),
]

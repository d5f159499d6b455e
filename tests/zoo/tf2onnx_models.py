"""ONNX files made by the tf2onnx command line from a Keras SavedModel, the converter's documented route."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.zoo.catalog import Built, ZooModel

CONVERT_TIMEOUT_S = 300


def build_keras_mlp_cli(folder: Path) -> Built:
    """A Keras Sequential MLP saved with `model.export` (SavedModel), then `python -m tf2onnx.convert` at opset 17."""
    import keras
    import onnx

    # Keras names an unnamed Input after how many tensors the process has made ("keras_tensor_N"), and the SavedModel
    # signature, so the ONNX input, takes that name: start from a clean session so every build names it alike.
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    )
    saved_model = folder / "saved_model"
    model.export(str(saved_model), verbose=False)
    path = folder / "mlp.onnx"
    command = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved_model)]
    command += ["--output", str(path), "--opset", "17"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, check=False)
    if done.returncode != 0:
        pytest.fail(f"tf2onnx.convert exited {done.returncode}:\n{done.stderr[-4000:]}", pytrace=False)

    # The CLI names the tensors after the SavedModel signature: read them from the file, as a user would.
    graph = onnx.load(str(path)).graph
    (input_name,) = [i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    (output_name,) = [o.name for o in graph.output]
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    return Built(path=path, inputs={input_name: x}, outputs={output_name: np.asarray(model.predict(x, verbose=0))})


MODELS: list[ZooModel] = [
    ZooModel(
        name="tf2onnx-cli-keras-mlp",
        framework="onnx",
        recipe="Keras Sequential MLP, model.export(dir), python -m tf2onnx.convert --saved-model dir --opset 17",
        filename="mlp.onnx",
        build=build_keras_mlp_cli,
        served=("onnx",),
    ),
]

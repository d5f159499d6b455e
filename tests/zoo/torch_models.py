"""ONNX files made by `torch.onnx.export`, with the TorchScript and the dynamo exporters, as torch's docs make them.

torch is no dependency of the project: `make .venv-torch/.done` installs it (CPU build) with onnxscript into
.venv-torch, and each builder runs tests/zoo/torch_export.py there, so the test process never imports torch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.zoo.catalog import Built, ZooModel

ROOT = Path(__file__).resolve().parents[2]
TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"
EXPORT_SCRIPT = Path(__file__).with_name("torch_export.py")
EXPORT_TIMEOUT_S = 300
# The export script and the pins .venv-torch was made with (its stamp) are part of every cached build's key.
CACHE_SOURCES = (EXPORT_SCRIPT, ROOT / ".venv-torch" / ".done")


def torch_export(kind: str, filename: str) -> Callable[[Path], Built]:
    """A builder that exports the model `kind` of torch_export.py to `filename` and reads back torch's answers."""

    def build(folder: Path) -> Built:
        if not TORCH_PYTHON.exists():
            pytest.fail(
                f"{TORCH_PYTHON.relative_to(ROOT)} is missing: the torch models of the zoo are exported there. "
                "Run `make .venv-torch/.done` (a CPU torch with onnxscript, about 1 GB).",
                pytrace=False,
            )
        path = folder / filename
        answers = folder / "torch-answers.npz"
        command = [str(TORCH_PYTHON), str(EXPORT_SCRIPT), kind, str(path), str(answers)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False)
        if done.returncode != 0:
            pytest.fail(f"{EXPORT_SCRIPT.name} {kind} exited {done.returncode}:\n{done.stderr[-4000:]}", pytrace=False)
        with np.load(answers, allow_pickle=False) as npz:
            inputs = {key[3:]: npz[key] for key in npz.files if key.startswith("in:")}
            outputs = {key[4:]: npz[key] for key in npz.files if key.startswith("out:")}
        return Built(path=path, inputs=inputs, outputs=outputs)

    return build


MODELS: list[ZooModel] = [
    ZooModel(
        name="torch-mlp-torchscript-op17",
        framework="torch",
        recipe="nn.Sequential MLP, torch.onnx.export(dynamo=False, opset_version=17, dynamic_axes batch)",
        filename="mlp.onnx",
        build=torch_export("mlp-torchscript-op17", "mlp.onnx"),
    ),
    ZooModel(
        name="torch-mlp-dynamo-op21",
        framework="torch",
        recipe="nn.Sequential MLP, torch.onnx.export(dynamo=True, opset_version=21, external_data=False) to a path",
        filename="mlp.onnx",
        build=torch_export("mlp-dynamo-op21", "mlp.onnx"),
    ),
    ZooModel(
        name="torch-cnn-dynamo",
        framework="torch",
        recipe="Conv2d-BatchNorm2d-MaxPool-Linear CNN, torch.onnx.export(dynamo=True) (opset 20), ONNXProgram.save",
        filename="cnn.onnx",
        build=torch_export("cnn-dynamo", "cnn.onnx"),
    ),
    ZooModel(
        name="torch-cnn-dynamo-external-data",
        framework="torch",
        recipe="the same CNN, torch.onnx.export(model, args, 'cnn.onnx', dynamo=True): weights go to cnn.onnx.data",
        filename="cnn.onnx",
        build=torch_export("cnn-dynamo-external-data", "cnn.onnx"),
        refused="keeps its data in an external file",
        notes="export with external_data=False (or save the ONNXProgram) to keep the weights inside the file",
    ),
    ZooModel(
        name="torch-tokens-dynamo-op18",
        framework="torch",
        recipe="nn.Embedding, mean, nn.Linear on int64 input_ids, torch.onnx.export(dynamo=True, opset_version=18)",
        filename="tokens.onnx",
        build=torch_export("tokens-dynamo-op18", "tokens.onnx"),
        notes="input_ids: int64 token ids below 32, [batch, seq] with both dimensions dynamic",
    ),
    ZooModel(
        name="torch-tokens-torchscript-op17",
        framework="torch",
        recipe="nn.Embedding, mean, nn.Linear on int64 input_ids, torch.onnx.export(dynamo=False, opset_version=17)",
        filename="tokens.onnx",
        build=torch_export("tokens-torchscript-op17", "tokens.onnx"),
        notes="input_ids: int64 token ids below 32, [batch, seq] with both dimensions dynamic",
    ),
]

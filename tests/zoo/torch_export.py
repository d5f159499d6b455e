"""Export one torch model of the zoo with `torch.onnx.export`, the way torch's docs do; run under .venv-torch only.

    .venv-torch/bin/python tests/zoo/torch_export.py KIND MODEL_PATH ANSWERS_PATH

writes the ONNX file to MODEL_PATH and, to ANSWERS_PATH (.npz), a batch of inputs (`in:NAME`) and torch's own outputs
on them (`out:NAME`). The test process never imports torch: tests/zoo/torch_models.py runs this script.
"""

# mypy: ignore-errors
# (torch is installed in .venv-torch only, so the project's mypy cannot follow these imports.)

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

VOCAB = 32
BATCH = 3
SEQ = 5


def mlp() -> nn.Module:
    """The Linear-ReLU-Linear MLP of torch's tutorials: 4 features in, 3 logits out."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


def cnn() -> nn.Module:
    """A small image classifier (3x8x8 in, 4 classes) whose BatchNorm holds statistics from a few training batches."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, kernel_size=3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    )
    # Running statistics as training leaves them, so eval()'s BatchNorm is not the identity it is when fresh.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 8, 8) * 2 + 0.5)
    return model.eval()


class TokenClassifier(nn.Module):
    """Token ids in, logits out: an embedding, a mean over the sequence, a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8)
        self.classifier = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embedding(input_ids).mean(dim=1))


def tokens() -> nn.Module:
    torch.manual_seed(0)
    return TokenClassifier().eval()


def token_ids(batch: int, seq: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, seq), dtype=torch.int64)


def export_mlp_torchscript_op17(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model, x = mlp(), torch.randn(BATCH, 4)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    return model, {"x": x}


def export_mlp_dynamo_op21(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model, x = mlp(), torch.randn(BATCH, 4)
    torch.onnx.export(
        model,
        (torch.randn(2, 4),),
        str(path),
        dynamo=True,
        opset_version=21,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        # The default (True) moves every tensor over 256 bytes to PATH.data, which a single-file upload cannot carry.
        external_data=False,
    )
    return model, {"x": x}


def export_cnn_dynamo(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    # torch's "export a simple model to ONNX" tutorial: export, then `ONNXProgram.save` (weights inside the file).
    model, image = cnn(), torch.randn(BATCH, 3, 8, 8)
    onnx_program = torch.onnx.export(
        model,
        (torch.randn(2, 3, 8, 8),),
        dynamo=True,
        input_names=["image"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    onnx_program.save(str(path))
    return model, {"image": image}


def export_cnn_dynamo_external_data(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    # torch.onnx's own first example: export straight to a path, external_data left at its default (True).
    model, image = cnn(), torch.randn(BATCH, 3, 8, 8)
    torch.onnx.export(model, (image,), str(path), input_names=["image"], output_names=["logits"], dynamo=True)
    return model, {"image": image}


def export_tokens_dynamo_op18(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model, ids = tokens(), token_ids(BATCH, SEQ)
    onnx_program = torch.onnx.export(
        model,
        (token_ids(2, 7),),
        dynamo=True,
        opset_version=18,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")},),
    )
    onnx_program.save(str(path))
    return model, {"input_ids": ids}


def export_tokens_torchscript_op17(path: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    model, ids = tokens(), token_ids(BATCH, SEQ)
    torch.onnx.export(
        model,
        (token_ids(2, 7),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input_ids"],
        output_names=["logits"],
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
    )
    return model, {"input_ids": ids}


EXPORTS: dict[str, Callable[[Path], tuple[nn.Module, dict[str, torch.Tensor]]]] = {
    "mlp-torchscript-op17": export_mlp_torchscript_op17,
    "mlp-dynamo-op21": export_mlp_dynamo_op21,
    "cnn-dynamo": export_cnn_dynamo,
    "cnn-dynamo-external-data": export_cnn_dynamo_external_data,
    "tokens-dynamo-op18": export_tokens_dynamo_op18,
    "tokens-torchscript-op17": export_tokens_torchscript_op17,
}


def main(kind: str, model_path: Path, answers_path: Path) -> None:
    torch.use_deterministic_algorithms(True)
    model, inputs = EXPORTS[kind](model_path)
    with torch.no_grad():
        logits = model(*inputs.values())
    arrays = {f"in:{name}": tensor.numpy() for name, tensor in inputs.items()}
    arrays["out:logits"] = logits.numpy()
    np.savez(answers_path, **arrays)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in EXPORTS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(EXPORTS)}}} MODEL_PATH ANSWERS_PATH")
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))

"""`modeldeck example iris`: write a small model and a sample input to try ModelDeck with, with no download."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from modeldeck.commands.arguments import CommandAdd, json_flag
from modeldeck.commands.context import Context
from modeldeck.errors import UsageError
from modeldeck.output import Result

# scikit-learn's LogisticRegression fitted on Fisher's iris data (sepal length/width, petal length/width in cm),
# rounded to two decimals: 97 % of the 150 flowers classified right. Classes: setosa, versicolor, virginica.
IRIS_WEIGHTS = [[-0.42, 0.53, -0.11], [0.97, -0.32, -0.65], [-2.52, -0.2, 2.72], [-1.08, -0.94, 2.03]]
IRIS_BIAS = [9.84, 2.22, -12.07]
# One flower of each class, as the upload's sample (kept with the version, used by parity and drift).
IRIS_SAMPLE = {"x": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.7, 3.0, 5.2, 2.3]]}


def register(add: CommandAdd) -> None:
    example = add("example", example_run, "write an example model and its sample input (no server, no download)")
    example.add_argument("name", choices=["iris"], help="iris: an ONNX iris classifier, x FP32 [N, 4] -> probs [N, 3]")
    example.add_argument("--dir", default=".", metavar="DIR", help="where to write the files (default: here)")
    example.add_argument("--force", action="store_true", help="overwrite files that exist")
    json_flag(example)


def iris_onnx() -> bytes:
    """The iris classifier as an ONNX model: probs = softmax(x · W + b)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.asarray(IRIS_WEIGHTS, dtype=np.float32), "W")
    bias = numpy_helper.from_array(np.asarray(IRIS_BIAS, dtype=np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["z0"]),
        helper.make_node("Add", ["z0", "b"], ["z"]),
        helper.make_node("Softmax", ["z"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "iris",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    model.producer_name = "modeldeck example"
    return bytes(model.SerializeToString())


def example_run(ctx: Context) -> Result:
    folder = Path(ctx.args.dir)
    files = {folder / "iris.onnx": iris_onnx(), folder / "sample.json": json.dumps(IRIS_SAMPLE).encode() + b"\n"}
    existing = [str(path) for path in files if path.exists()]
    if existing and not ctx.args.force:
        raise UsageError(f"{', '.join(existing)} exists already; pass --force to overwrite", code="file_exists")
    folder.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        path.write_bytes(content)
    model, sample = (str(path) for path in files)
    document: dict[str, Any] = {
        "model": model,
        "sample": sample,
        "signature": {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "probs", "datatype": "FP32", "shape": [-1, 3]}],
        },
    }

    def render(console: Console) -> None:
        console.print(f"Wrote {model} (x FP32 [N, 4] -> probs FP32 [N, 3]) and {sample} (3 rows).")
        console.print(f"Next: modeldeck push {model} --model demo/iris --sample {sample}")

    return Result(document, render)

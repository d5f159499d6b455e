"""Files as the frameworks' own tutorials make them: skl2onnx defaults, HistGradientBoosting, Keras Sequential."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from registry.converters import convert, supported_recipes
from registry.formats import FORMATS
from registry.formats.base import Recipe
from registry.services.parity import load_runner, parity_report
from registry.synthetic_inputs import synthesize_inputs
from tests.registry import model_files


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def skl2onnx_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`to_onnx(clf, X[:1])` exactly as skl2onnx's tutorial writes it: ZipMap on, the default opset."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    path = tmp_path_factory.mktemp("zipmap") / "logreg.onnx"
    path.write_bytes(to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1]).SerializeToString())
    return path


@pytest.fixture(scope="module")
def skl2onnx_tensor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The skl2onnx export with zipmap off, which lists the default opset import twice (TOOLCHAIN G15)."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    x, y = _iris()
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
    path = tmp_path_factory.mktemp("tensor") / "forest.onnx"
    path.write_bytes(to_onnx(forest, x[:1], options={"zipmap": False}).SerializeToString())
    return path


def _parity(source_format: str, source: Path, recipe: Recipe, converted: Path) -> dict:
    signature = FORMATS[source_format].inspect(source).signature
    return parity_report(
        parent=load_runner(source_format, source),
        child=load_runner(recipe.target, converted),
        parent_signature=signature,
        child_signature=FORMATS[recipe.target].inspect(converted).signature,
        recipe=recipe,
        inputs=synthesize_inputs(signature, rows=64),
        input_source="synthetic",
    )


def test_a_zipmap_export_is_described_as_the_tensor_it_is_served_as(skl2onnx_default: Path) -> None:
    inspection = FORMATS["onnx"].inspect(skl2onnx_default)
    assert inspection.signature.to_dict()["outputs"] == [
        {"name": "output_label", "datatype": "INT64", "shape": [-1]},
        {"name": "output_probability", "datatype": "FP32", "shape": [-1, 3]},
    ]
    assert inspection.metadata["serving_rewrite"] == "zipmap_to_tensor"
    assert inspection.metadata["zipmap_classes"] == {"output_probability": ["0", "1", "2"]}
    # Its one conversion is the served form: quantizing a ZipMap file would make another unservable file.
    assert supported_recipes("onnx", inspection.metadata) == (Recipe("onnx"),)


def test_the_served_form_of_a_zipmap_export_answers_its_probabilities_as_a_tensor(
    skl2onnx_default: Path, tmp_path: Path
) -> None:
    before = skl2onnx_default.read_bytes()
    metadata = FORMATS["onnx"].inspect(skl2onnx_default).metadata
    signature = FORMATS["onnx"].inspect(skl2onnx_default).signature
    conversion = convert("onnx", skl2onnx_default, Recipe("onnx"), tmp_path / "out", signature, metadata)

    assert skl2onnx_default.read_bytes() == before  # the user's file is never touched
    assert conversion.inspection.signature == signature
    assert conversion.signature_changes == []
    assert conversion.rewrites == [
        "ZipMap removed: 'output_probability' served as an FP32 [N, classes] tensor of the same probabilities, "
        "in class order"
    ]
    x, _ = _iris()
    original = ort.InferenceSession(str(skl2onnx_default), providers=["CPUExecutionProvider"])
    served = ort.InferenceSession(str(conversion.path), providers=["CPUExecutionProvider"])
    labels, maps = original.run(None, {"X": x})
    served_labels, probabilities = served.run(None, {"X": x})
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (150, 3)
    np.testing.assert_array_equal(served_labels, labels)
    np.testing.assert_array_equal(probabilities, np.asarray([[row[c] for c in range(3)] for row in maps]))
    report = _parity("onnx", skl2onnx_default, Recipe("onnx"), conversion.path)
    assert report["passed"] is True, report["reason"]
    assert report["matched_by"] == "name"


@pytest.mark.parametrize("quantization", ["int8", "float16"])
def test_quantizing_a_skl2onnx_export_keeps_its_contract_and_the_working_directory_clean(
    skl2onnx_tensor: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quantization: str
) -> None:
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    signature = FORMATS["onnx"].inspect(skl2onnx_tensor).signature
    recipe = Recipe("onnx", quantization)
    conversion = convert("onnx", skl2onnx_tensor, recipe, tmp_path / "out", signature)

    assert list(workdir.iterdir()) == []  # nothing written beside the process (sym_shape_infer_temp.onnx was)
    assert conversion.inspection.signature == signature  # probabilities still FP32, label still INT64
    assert conversion.signature_changes == []
    report = _parity("onnx", skl2onnx_tensor, recipe, conversion.path)
    assert report["passed"] is True, report["reason"]


def test_float16_of_a_skl2onnx_classifier_still_answers_fp32(tmp_path: Path) -> None:
    """onnxconverter-common served this model's probabilities as FP16; the ai.onnx.ml ops now stay FP32 whole."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = _iris()
    path = tmp_path / "logreg.onnx"
    model = to_onnx(LogisticRegression(max_iter=500).fit(x, y), x[:1], options={"zipmap": False})
    path.write_bytes(model.SerializeToString())
    signature = FORMATS["onnx"].inspect(path).signature
    conversion = convert("onnx", path, Recipe("onnx", "float16"), tmp_path / "out", signature)
    assert conversion.inspection.signature == signature
    session = ort.InferenceSession(str(conversion.path), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {"X": x})
    assert probabilities.dtype == np.float32
    assert labels.dtype == np.int64


def test_an_edge_a_converter_narrowed_is_cast_back_to_the_sources_datatype() -> None:
    from onnx import TensorProto, helper

    from registry.converters import _cast_edges_back

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
            helper.make_node("Relu", ["x16"], ["hidden"]),
            helper.make_node("Cast", ["hidden"], ["y"], to=TensorProto.FLOAT16),
            helper.make_node("Relu", ["x16"], ["z"]),
        ],
        "narrowed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [None, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT16, [None, 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT16, [None, 4]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    expected: dict[str, int] = {"x": TensorProto.FLOAT, "y": TensorProto.FLOAT, "z": TensorProto.FLOAT}
    assert _cast_edges_back(model, expected) == [
        "output 'y' cast back from FLOAT16 to FLOAT",
        "output 'z' cast back from FLOAT16 to FLOAT",
        "input 'x' accepted as FLOAT again and cast to FLOAT16 inside",
    ]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.array([[-1.0, 0.5, 2.0, -3.0]], dtype=np.float32)
    y, z = session.run(None, {"x": x})
    assert y.dtype == z.dtype == np.float32
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_hist_gradient_boosting_converts_despite_skl2onnx_g14(tmp_path: Path, kind: str) -> None:
    import skops.io as sio
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x, y = _iris()
    estimator = (
        HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(x, y)
        if kind == "classifier"
        else HistGradientBoostingRegressor(max_iter=10, random_state=0).fit(x[:, 1:], x[:, 0])
    )
    path = tmp_path / "hgb.skops"
    sio.dump(estimator, path)
    signature = FORMATS["sklearn"].inspect(path).signature
    conversion = convert("sklearn", path, Recipe("onnx"), tmp_path / "out", signature)
    assert conversion.signature_changes == []
    report = _parity("sklearn", path, Recipe("onnx"), conversion.path)
    assert report["passed"] is True, report["reason"]
    # The workaround is scoped to the conversion: skl2onnx's own function is back in place afterwards.
    from skl2onnx.common import tree_ensemble

    assert tree_ensemble.add_node.__module__ == "skl2onnx.common.tree_ensemble"


@pytest.mark.parametrize("container", ["keras", "h5"])
@pytest.mark.parametrize("target", ["onnx", "tflite"])
def test_a_plain_sequential_model_converts_and_keeps_parity(tmp_path: Path, container: str, target: str) -> None:
    """keras.Sequential reloaded from a file raises on `model.input` (TOOLCHAIN G13); `model.inputs` works."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    )
    path = (model_files.keras_file if container == "keras" else model_files.keras_h5_file)(tmp_path / "m", model)
    signature = FORMATS["keras"].inspect(path).signature
    conversion = convert("keras", path, Recipe(target), tmp_path / "out", signature)
    assert conversion.signature_changes == []
    report = _parity("keras", path, Recipe(target), conversion.path)
    assert report["passed"] is True, report["reason"]


def test_nodes_are_sorted_so_each_follows_what_it_reads_subgraphs_included() -> None:
    from onnx import TensorProto, checker, helper

    from registry.converters import _sort_topologically

    # The If reads "doubled" inside its branches only: it must still come after the node that makes it.
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["doubled"], ["then_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [None, 2])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Neg", ["doubled"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [None, 2])],
    )
    nodes = [
        helper.make_node("If", ["flag"], ["y"], then_branch=then_branch, else_branch=else_branch, name="if"),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="sum"),
        helper.make_node("Greater", ["total", "zero"], ["flag"], name="greater"),
        helper.make_node("Add", ["x", "x"], ["doubled"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsorted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])],
        initializer=[helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    _sort_topologically(graph)
    assert [node.name for node in graph.node] == ["sum", "greater", "add", "if"]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model, full_check=True)
    x = np.array([[1.0, -3.0]], dtype=np.float32)
    (y,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(y, -2 * x)  # the sum is negative: the else branch negates the doubled input

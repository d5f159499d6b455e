"""The runtimes: the same answers as the libraries used directly, any batch size, many threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from registry.formats import FORMATS
from runtimes import LOADERS, runtime_load
from runtimes.base import warm_inputs
from runtimes.onnx import OnnxRuntime
from tests.registry import model_files


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("runtimes")
    return {"onnx": model_files.onnx_file(folder / "m.onnx"), "tflite": model_files.tflite_file(folder / "m.tflite")}


def reference(format_name: str, path: Path, x: np.ndarray) -> np.ndarray:
    """What the library itself answers, with no ModelDeck code in between."""
    if format_name == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, {"x": x})[0])
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    return np.asarray(next(iter(runner(x=x).values())))


@pytest.mark.parametrize("format_name", ["onnx", "tflite"])
def test_matches_the_library_at_every_batch_size(models: dict[str, Path], format_name: str) -> None:
    path = models[format_name]
    signature = FORMATS[format_name].inspect(path).signature
    runtime = runtime_load(format_name, path, signature)
    output = signature.outputs[0].name
    rng = np.random.default_rng(0)
    for batch in (1, 3, 32, 7):
        x = rng.normal(size=(batch, 4)).astype(np.float32)
        got = runtime.run({"x": x})
        assert list(got) == [o.name for o in signature.outputs]
        np.testing.assert_allclose(got[output], reference(format_name, path, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("format_name", ["onnx", "tflite"])
def test_concurrent_requests_get_their_own_answers(models: dict[str, Path], format_name: str) -> None:
    path = models[format_name]
    signature = FORMATS[format_name].inspect(path).signature
    runtime = runtime_load(format_name, path, signature)
    output = signature.outputs[0].name
    rng = np.random.default_rng(1)
    requests = [rng.normal(size=(int(rng.integers(1, 9)), 4)).astype(np.float32) for _ in range(200)]
    expected = [reference(format_name, path, x) for x in requests[:20]]

    def call(x: np.ndarray) -> np.ndarray:
        return runtime.run({"x": x})[output]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(call, requests))
    for x, answer in zip(requests, answers, strict=True):
        assert answer.shape == (x.shape[0], 3)
    for want, answer in zip(expected, answers[:20], strict=True):
        np.testing.assert_allclose(answer, want, rtol=1e-6, atol=1e-7)


def test_warm_inputs_follow_the_signature(models: dict[str, Path]) -> None:
    signature = FORMATS["onnx"].inspect(models["onnx"]).signature
    inputs = warm_inputs(signature, rows=2)
    assert {name: (a.shape, a.dtype) for name, a in inputs.items()} == {"x": ((2, 4), np.dtype(np.float32))}


def test_formats_without_a_runtime_are_refused(models: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="serve its ONNX or TFLite version"):
        runtime_load("keras", models["onnx"], FORMATS["onnx"].inspect(models["onnx"]).signature)


def test_a_tflite_file_without_signatures_runs_through_its_tensors(models: dict[str, Path], tmp_path: Path) -> None:
    path = model_files.tflite_without_signatures(models["tflite"], tmp_path / "nosig.tflite")
    signature = FORMATS["tflite"].inspect(path).signature
    runtime = runtime_load("tflite", path, signature)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    got = runtime.run({"x": x})
    assert list(got) == [signature.outputs[0].name]
    np.testing.assert_allclose(
        got[signature.outputs[0].name], reference("tflite", models["tflite"], x), rtol=1e-6, atol=1e-7
    )


@pytest.mark.parametrize(
    ("feed", "error", "says"),
    [
        ({"x": np.zeros((1, 4), np.float64)}, "InvalidArgument", "Unexpected input data type"),
        ({"x": np.zeros((1, 5), np.float32)}, "InvalidArgument", "Got invalid dimensions"),
        ({"x": np.zeros((1, 4), np.float32), "y": np.zeros(1)}, "InvalidArgument", "Invalid input name: y"),
        ({}, "ValueError", "Required inputs \\(\\['x'\\]\\) are missing"),
    ],
)
def test_a_feed_the_onnx_model_cannot_take_is_refused_as_the_callers_fault(
    models: dict[str, Path], feed: dict[str, np.ndarray], error: str, says: str
) -> None:
    # The data plane answers 400 for onnxruntime's InvalidArgument and for ValueError (serving/views.py
    # `_runtime_error`), 500 for anything else.
    runtime = runtime_load("onnx", models["onnx"], FORMATS["onnx"].inspect(models["onnx"]).signature)
    with pytest.raises(Exception, match=says) as caught:
        runtime.run(feed)
    assert type(caught.value).__name__ == error


def _string_lookup_model(path: Path) -> Path:
    """An ONNX LabelEncoder from city names to ids: it only finds a city given as text."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node(
                "LabelEncoder",
                ["city"],
                ["id"],
                domain="ai.onnx.ml",
                keys_strings=["Paris", "Zürich"],
                values_int64s=[1, 2],
                default_int64=-1,
            )
        ],
        "lookup",
        [helper.make_tensor_value_info("city", TensorProto.STRING, [None, 1])],
        [helper.make_tensor_value_info("id", TensorProto.INT64, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_string_inputs_sent_as_bytes_reach_onnxruntime_as_text(tmp_path: Path) -> None:
    """onnxruntime reads a bytes element as "b'Paris'": binary V2 requests carry BYTES as bytes, so they are decoded."""
    path = _string_lookup_model(tmp_path / "lookup.onnx")
    runtime = runtime_load("onnx", path, FORMATS["onnx"].inspect(path).signature)
    as_bytes = np.array([[b"Paris"], ["Zürich".encode()], [b"Oslo"]], dtype=object)
    as_text = np.array([["Paris"], ["Zürich"], ["Oslo"]], dtype=object)
    for city in (as_bytes, as_text):
        np.testing.assert_array_equal(runtime.run({"city": city})["id"], [[1], [2], [-1]])
    with pytest.raises(ValueError, match="not UTF-8 text"):
        runtime.run({"city": np.array([[b"\xff"]], dtype=object)})


@pytest.mark.parametrize("format_name", ["onnx", "tflite"])
def test_a_runtime_loaded_without_a_signature_names_its_inputs(models: dict[str, Path], format_name: str) -> None:
    """Parity loads files it has no signature for: the runtime still says which inputs to pick, and runs them."""
    loader = LOADERS[format_name]
    runtime = loader(models[format_name])  # type: ignore[call-arg]
    assert runtime.input_names == ["x"]
    with pytest.raises(AttributeError, match="without a signature"):
        _ = runtime.signature  # type: ignore[attr-defined]
    x = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    np.testing.assert_allclose(
        next(iter(runtime.run({"x": x}).values())), reference(format_name, models[format_name], x), rtol=1e-6
    )


def test_zipmap_outputs_come_back_as_the_served_probability_tensor(tmp_path: Path) -> None:
    """skl2onnx's default export answers a list of {class: probability} maps; the runtime gives [N, classes]."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.array(["setosa", "versicolor", "virginica"])[rng.integers(0, 3, size=30)]
    clf = LogisticRegression(max_iter=200).fit(x, y)
    path = tmp_path / "zipmap.onnx"
    path.write_bytes(to_onnx(clf, x[:1]).SerializeToString())
    outputs = OnnxRuntime(path).run({"X": x[:5]})
    probabilities = outputs["output_probability"]
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (5, 3)
    np.testing.assert_allclose(probabilities, clf.predict_proba(x[:5]), rtol=1e-4, atol=1e-5)
    assert list(outputs["output_label"]) == list(clf.predict(x[:5]))

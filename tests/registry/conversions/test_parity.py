"""Parity reports: how outputs are matched and judged, synthetic and sample inputs, and the runners' edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from registry.formats.base import ConversionError, Recipe
from registry.services.parity import TOLERANCES, load_runner, parity_report, sample_inputs
from registry.synthetic_inputs import synthesize_inputs
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files

NONE, INT8, FLOAT16 = Recipe("onnx"), Recipe("onnx", "int8"), Recipe("onnx", "float16")
TINY = Signature(
    inputs=[TensorSpec("x", "FP32", [-1, 4])],
    outputs=[TensorSpec("probs", "FP32", [-1, 3])],
)


class FixedRunner:
    """A runner that answers the same outputs whatever the inputs, or raises the error it was given."""

    def __init__(self, outputs: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.outputs = {name: np.asarray(value) for name, value in (outputs or {}).items()}
        self.error = error

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.error is not None:
            raise self.error
        return self.outputs


def _signature(*outputs: tuple[str, str, list[int]]) -> Signature:
    return Signature(inputs=TINY.inputs, outputs=[TensorSpec(*output) for output in outputs])


def _report(
    parent: Any,
    child: Any,
    recipe: Recipe = NONE,
    *,
    parent_signature: Signature = TINY,
    child_signature: Signature = TINY,
) -> dict[str, Any]:
    report = parity_report(
        parent=parent,
        child=child,
        parent_signature=parent_signature,
        child_signature=child_signature,
        recipe=recipe,
        inputs={"x": np.zeros((4, 4), np.float32)},
        input_source="synthetic",
    )
    json.dumps(report, allow_nan=False)  # never NaN or infinity, whatever the outputs held
    return report


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    return model_files.onnx_file(folder / "seed0.onnx", seed=0), model_files.onnx_file(folder / "seed1.onnx", seed=1)


def test_a_model_with_other_weights_fails_parity_with_the_numbers(onnx_models: tuple[Path, Path]) -> None:
    seed0, seed1 = onnx_models
    report = parity_report(
        parent=load_runner("onnx", seed0),
        child=load_runner("onnx", seed1),
        parent_signature=TINY,
        child_signature=TINY,
        recipe=NONE,
        inputs=synthesize_inputs(TINY, seed=0),
        input_source="synthetic",
    )
    assert report["passed"] is False
    (output,) = report["outputs"]
    assert output["passed"] is False
    assert output["max_abs_diff"] > 0.1
    assert report["reason"].startswith(
        "Failed (1 input, 16 synthetic rows, none tolerance): 'probs' differs by at most"
    )
    assert f"{output['max_abs_diff']:.2g}" in report["reason"]
    assert "above" in report["reason"]


def test_a_model_with_other_weights_fails_even_the_int8_tolerance(onnx_models: tuple[Path, Path]) -> None:
    seed0, seed1 = onnx_models
    report = parity_report(
        parent=load_runner("onnx", seed0),
        child=load_runner("onnx", seed1),
        parent_signature=TINY,
        child_signature=TINY,
        recipe=INT8,
        inputs=synthesize_inputs(TINY, seed=0, rows=64),
        input_source="synthetic",
    )
    assert report["passed"] is False
    assert report["outputs"][0]["top1_agreement"] < 0.95
    assert "top-1 class agrees on" in report["reason"]
    assert report["tolerance"] == TOLERANCES["int8"].to_dict()


def test_the_same_model_passes_with_zero_difference(onnx_models: tuple[Path, Path]) -> None:
    runner = load_runner("onnx", onnx_models[0])
    inputs = synthesize_inputs(TINY, seed=3, rows=5)
    report = parity_report(
        parent=runner,
        child=runner,
        parent_signature=TINY,
        child_signature=TINY,
        recipe=NONE,
        inputs=inputs,
        input_source="sample",
    )
    assert report == {
        "passed": True,
        "reason": report["reason"],
        "input_source": "sample",
        "rows": 5,
        "recipe": {"target": "onnx", "quantization": "none"},
        "tolerance": {
            "quantization": "none",
            "max_abs": 1e-4,
            "max_rel": 1e-4,
            "mean_rel": None,
            "top1_agreement": None,
            "label_agreement": 0.99,
        },
        "matched_by": "name",
        "outputs": [
            {
                "parent": "probs",
                "child": "probs",
                "max_abs_diff": 0.0,
                "mean_abs_diff": 0.0,
                "top1_agreement": 1.0,
                "agreement": None,
                "passed": True,
            }
        ],
    }
    assert report["reason"].startswith("Passed (1 input, 5 sample rows, none tolerance): 'probs' differs by at most 0")


def test_outputs_with_other_names_are_matched_by_position_and_the_report_says_so() -> None:
    probs = [[0.2, 0.8], [0.6, 0.4]]
    report = _report(
        FixedRunner({"probs": probs}),
        FixedRunner({"output_0": probs}),
        child_signature=_signature(("output_0", "FP32", [-1, 2])),
        parent_signature=_signature(("probs", "FP32", [-1, 2])),
    )
    assert report["passed"] is True
    assert report["matched_by"] == "position"
    assert (report["outputs"][0]["parent"], report["outputs"][0]["child"]) == ("probs", "output_0")
    assert "matched by position" in report["reason"]


def test_outputs_that_match_neither_by_name_nor_by_count_fail() -> None:
    report = _report(
        FixedRunner({"probs": [[1.0]]}),
        FixedRunner({"a": [[1.0]], "b": [[1.0]]}),
        child_signature=_signature(("a", "FP32", [-1, 1]), ("b", "FP32", [-1, 1])),
    )
    assert report["passed"] is False
    assert report["outputs"] == []
    assert "cannot be matched" in report["reason"]


def test_nan_in_the_child_fails_and_the_report_holds_no_nan() -> None:
    report = _report(
        FixedRunner({"probs": [[0.5, 0.5], [0.1, 0.9]]}), FixedRunner({"probs": [[np.nan, 0.5], [0.1, 0.9]]})
    )
    assert report["passed"] is False
    assert report["outputs"][0]["max_abs_diff"] is None
    assert "1 NaN or infinite values" in report["reason"]


def test_nan_in_the_same_places_in_both_is_agreement() -> None:
    outputs = {"probs": [[np.nan, 1.0], [2.0, np.inf]]}
    report = _report(FixedRunner(outputs), FixedRunner(outputs))
    assert report["passed"] is True
    assert report["outputs"][0]["max_abs_diff"] == 0.0


def test_a_shape_change_fails() -> None:
    report = _report(FixedRunner({"probs": [[0.5, 0.5]]}), FixedRunner({"probs": [0.5, 0.5]}))
    assert report["passed"] is False
    assert "has shape [2] in the converted model, [1, 2] in the source" in report["reason"]


@pytest.mark.parametrize("role", ["source", "converted"])
def test_a_model_that_cannot_run_fails_with_the_cause(role: str) -> None:
    # onnxruntime's own wording: the cause spans three lines; a trace after a blank line is not part of it.
    broken = FixedRunner(
        error=RuntimeError(
            "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: x for the following "
            "indices\n index: 1 Got: 5 Expected: 4\n Please fix either the inputs/the model.\n\n"
            'Traceback (most recent call last):\n  File "run.py", line 3, in run'
        )
    )
    working = FixedRunner({"probs": [[1.0]]})
    report = _report(broken if role == "source" else working, working if role == "source" else broken)
    assert report["passed"] is False
    assert report["reason"] == (
        f"The {role} model failed to run on the synthetic inputs: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "
        "Got invalid dimensions for input: x for the following indices index: 1 Got: 5 Expected: 4 Please fix "
        "either the inputs/the model."
    )


def test_a_runner_missing_an_output_of_its_signature_fails() -> None:
    report = _report(FixedRunner({"probs": [[1.0]]}), FixedRunner({"other": [[1.0]]}))
    assert report["passed"] is False
    assert report["reason"] == "The converted model did not return its output 'probs' (it returned ['other'])."


@pytest.mark.parametrize(
    ("recipe", "child_labels", "passed"),
    [
        (NONE, [*range(99), 0], True),
        (NONE, [*range(98), 0, 0], False),
        (INT8, [*range(95), 0, 0, 0, 0, 0], True),
        (INT8, [*range(94), 0, 0, 0, 0, 0, 0], False),
    ],
)
def test_integer_labels_are_judged_by_agreement(recipe: Recipe, child_labels: list[int], passed: bool) -> None:
    signature = _signature(("label", "INT64", [-1]))
    report = _report(
        FixedRunner({"label": np.arange(100, dtype=np.int64)}),
        FixedRunner({"label": np.asarray(child_labels, dtype=np.int64)}),
        recipe,
        parent_signature=signature,
        child_signature=signature,
    )
    (output,) = report["outputs"]
    assert output["max_abs_diff"] is None
    assert output["agreement"] == pytest.approx(
        sum(a == b for a, b in zip(range(100), child_labels, strict=True)) / 100
    )
    assert report["passed"] is passed


def test_string_labels_agree_whether_bytes_or_str() -> None:
    signature = _signature(("label", "BYTES", [-1]))
    report = _report(
        FixedRunner({"label": np.asarray(["cat", "dog"])}),
        FixedRunner({"label": np.asarray([b"cat", "dog"], dtype=object)}),
        parent_signature=signature,
        child_signature=signature,
    )
    assert report["passed"] is True
    assert report["outputs"][0]["agreement"] == 1.0


def test_large_regression_values_get_a_relative_tolerance() -> None:
    parent = np.asarray([[1.0e6], [2.0e6]], np.float32)
    signature = _signature(("variable", "FP32", [-1, 1]))
    # Allowed: 1e-4 + 1e-4 * 2e6 = 200.
    for offset, passed in ((50, True), (500, False)):
        report = _report(
            FixedRunner({"variable": parent}),
            FixedRunner({"variable": parent + offset}),
            parent_signature=signature,
            child_signature=signature,
        )
        assert report["passed"] is passed


def test_float16_allows_a_hundredth() -> None:
    probs = np.asarray([[0.2, 0.8], [0.6, 0.4]], np.float32)
    assert _report(FixedRunner({"probs": probs}), FixedRunner({"probs": probs + 0.009}), FLOAT16)["passed"] is True
    assert _report(FixedRunner({"probs": probs}), FixedRunner({"probs": probs + 0.009}), NONE)["passed"] is False


def test_int8_scores_that_are_not_probabilities_are_judged_by_drift_only() -> None:
    # Logits whose argmax flips in one row of two, with a mean drift of 1% of their size.
    parent = np.asarray([[10.0, 10.1], [5.0, 1.0]], np.float32)
    child = np.asarray([[10.1, 10.0], [5.0, 1.0]], np.float32)
    report = _report(FixedRunner({"probs": parent}), FixedRunner({"probs": child}), INT8)
    assert report["outputs"][0]["top1_agreement"] == 0.5
    assert report["passed"] is True


def test_synthetic_inputs_are_seeded_and_fit_the_signature() -> None:
    signature = Signature(
        inputs=[
            TensorSpec("image", "FP32", [-1, -1, -1, 3]),
            TensorSpec("tokens", "INT64", [-1, 5]),
            TensorSpec("mask", "BOOL", [-1, 5]),
            TensorSpec("scale", "FP16", []),
        ],
        outputs=[],
    )
    first = synthesize_inputs(signature, seed=7, rows=3)
    again = synthesize_inputs(signature, seed=7, rows=3)
    other = synthesize_inputs(signature, seed=8, rows=3)
    assert {name: (a.shape, a.dtype.name) for name, a in first.items()} == {
        "image": ((3, 8, 8, 3), "float32"),
        "tokens": ((3, 5), "int64"),
        "mask": ((3, 5), "bool"),
        "scale": ((), "float16"),
    }
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["image"], other["image"])
    assert first["tokens"].min() >= 0
    assert first["tokens"].max() < 10


def test_synthetic_inputs_refuse_strings() -> None:
    signature = Signature(inputs=[TensorSpec("text", "BYTES", [-1])], outputs=[])
    with pytest.raises(ConversionError) as caught:
        synthesize_inputs(signature)
    assert caught.value.code == "parity_unsupported_input"
    assert caught.value.detail == {"input": "text"}


TWO_INPUTS = Signature(
    inputs=[TensorSpec("x", "FP32", [-1, 2]), TensorSpec("ids", "INT32", [-1])],
    outputs=[],
)


def _assert_sample(inputs: dict[str, np.ndarray]) -> None:
    assert sorted(inputs) == ["ids", "x"]
    assert inputs["x"].dtype == np.float32
    assert inputs["ids"].dtype == np.int32
    np.testing.assert_array_equal(inputs["x"], [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(inputs["ids"], [7, 8])


def test_a_npz_sample_is_read_and_cast(tmp_path: Path) -> None:
    path = tmp_path / "sample"
    with path.open("wb") as f:
        np.savez(f, x=np.asarray([[1, 2], [3, 4]], np.float64), ids=np.asarray([7, 8], np.int64))
    _assert_sample(sample_inputs(path, TWO_INPUTS))


def test_a_named_json_sample_is_read_and_cast(tmp_path: Path) -> None:
    path = tmp_path / "sample"
    path.write_text(json.dumps({"x": [[1, 2], [3, 4]], "ids": [7, 8]}))
    _assert_sample(sample_inputs(path, TWO_INPUTS))


def test_an_open_inference_protocol_sample_is_read_and_cast(tmp_path: Path) -> None:
    path = tmp_path / "sample"
    path.write_text(
        json.dumps(
            {
                "inputs": [
                    {"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                    {"name": "ids", "shape": [2], "datatype": "INT64", "data": [7, 8]},
                ]
            }
        )
    )
    _assert_sample(sample_inputs(path, TWO_INPUTS))


def test_a_sample_that_does_not_fit_the_signature_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sample"
    path.write_text(json.dumps({"x": [[1, 2, 3]], "ids": [7]}))
    with pytest.raises(ConversionError) as caught:
        sample_inputs(path, TWO_INPUTS)
    assert caught.value.code == "parity_sample_mismatch"
    assert caught.value.message == "Sample input 'x' has shape [1, 3]; the model expects [-1, 2] (-1 = any)."


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01 not json", b'["a", "list"]', b'{"x": [[1, 2], [3]], "ids": [7]}', b'{"inputs": [{"name": "x"}]}'],
)
def test_an_unreadable_sample_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "sample"
    path.write_bytes(content)
    with pytest.raises(ConversionError) as caught:
        sample_inputs(path, TWO_INPUTS)
    assert caught.value.code == "parity_invalid_sample"


def test_a_npz_sample_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sample"
    with path.open("wb") as f:
        np.savez(f, x=np.asarray([{"a": 1}, None], dtype=object), ids=np.asarray([7, 8]))
    with pytest.raises(ConversionError) as caught:
        sample_inputs(path, TWO_INPUTS)
    assert caught.value.code == "parity_invalid_sample"


def test_an_unknown_format_has_no_runner(tmp_path: Path) -> None:
    with pytest.raises(ConversionError) as caught:
        load_runner("pytorch", tmp_path / "model")
    assert caught.value.code == "parity_unsupported_format"


def test_a_tflite_model_without_signatures_runs_any_batch(tmp_path: Path) -> None:
    # Older converters wrote no signature defs; the runner then resizes the bare graph's inputs itself.
    with_signatures = model_files.tflite_file(tmp_path / "m.tflite")
    bare = model_files.tflite_without_signatures(with_signatures, tmp_path / "bare.tflite")
    inputs = synthesize_inputs(TINY, seed=1, rows=5)
    expected = load_runner("tflite", with_signatures).run(inputs)
    outputs = load_runner("tflite", bare).run(inputs)
    assert list(expected) == ["output_0"]
    assert list(outputs) == ["StatefulPartitionedCall_1"]
    np.testing.assert_array_equal(outputs["StatefulPartitionedCall_1"], expected["output_0"])
    assert outputs["StatefulPartitionedCall_1"].shape == (5, 3)

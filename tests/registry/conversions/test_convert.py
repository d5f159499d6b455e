"""Every supported conversion path: convert a tiny seeded model, inspect the result, and check parity with it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry.converters import SUPPORTED, conversion_supported, convert
from registry.formats import FORMATS
from registry.formats.base import ConversionError, ModelFileError, Recipe
from registry.services.parity import Runner, load_runner, parity_report
from registry.synthetic_inputs import synthesize_inputs
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files


def _spec(name: str, shape: list[int], datatype: str = "FP32") -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape)


FEATURES, EXTRA = _spec("features", [-1, 4]), _spec("extra", [-1, 6])
OUTPUT_0, OUTPUT_1 = _spec("output_0", [-1, 3]), _spec("output_1", [-1, 1])
TWO_IO_ONNX = Signature(inputs=[FEATURES, EXTRA], outputs=[OUTPUT_0, OUTPUT_1])
# The TFLite converter lists signature inputs by name; the outputs keep the Keras order.
TWO_IO_TFLITE = Signature(inputs=[EXTRA, FEATURES], outputs=[OUTPUT_0, OUTPUT_1])
SINGLE_IO_ONNX = Signature(inputs=[_spec("x", [-1, 4])], outputs=[OUTPUT_0])
CLASSIFIER_ONNX = Signature(
    inputs=[_spec("input", [-1, 4])],
    outputs=[_spec("label", [-1], "INT64"), _spec("probabilities", [-1, 3])],
)
REGRESSOR_ONNX = Signature(inputs=[_spec("input", [-1, 4])], outputs=[_spec("variable", [-1, 1])])
TINY_ONNX = Signature(inputs=[_spec("x", [-1, 4])], outputs=[_spec("probs", [-1, 3])])

TO_ONNX, TO_ONNX_INT8, TO_ONNX_FLOAT16 = Recipe("onnx"), Recipe("onnx", "int8"), Recipe("onnx", "float16")
TO_TFLITE, TO_TFLITE_INT8, TO_TFLITE_FLOAT16 = Recipe("tflite"), Recipe("tflite", "int8"), Recipe("tflite", "float16")

# (source case, recipe, the converted model's signature)
CASES = [
    ("keras", TO_ONNX, TWO_IO_ONNX),
    ("keras", TO_TFLITE, TWO_IO_TFLITE),
    ("keras", TO_TFLITE_INT8, TWO_IO_TFLITE),
    ("keras", TO_TFLITE_FLOAT16, TWO_IO_TFLITE),
    ("keras-h5", TO_ONNX, SINGLE_IO_ONNX),
    ("savedmodel", TO_ONNX, TWO_IO_ONNX),
    ("savedmodel", TO_TFLITE, TWO_IO_TFLITE),
    ("savedmodel", TO_TFLITE_INT8, TWO_IO_TFLITE),
    ("savedmodel", TO_TFLITE_FLOAT16, TWO_IO_TFLITE),
    ("sklearn-logreg", TO_ONNX, CLASSIFIER_ONNX),
    ("sklearn-forest", TO_ONNX, CLASSIFIER_ONNX),
    ("sklearn-pipeline", TO_ONNX, CLASSIFIER_ONNX),
    ("sklearn-regressor", TO_ONNX, REGRESSOR_ONNX),
    ("pickle", TO_ONNX, CLASSIFIER_ONNX),
    ("onnx", TO_ONNX_INT8, TINY_ONNX),
    ("onnx", TO_ONNX_FLOAT16, TINY_ONNX),
]


def _format(case: str) -> str:
    return {"keras-h5": "keras"}.get(case, case.split("-")[0])


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sources")
    two_io = model_files.keras_two_io_model()
    return {
        "keras": model_files.keras_file(folder / "keras", two_io),
        "keras-h5": model_files.keras_h5_file(folder / "keras-h5"),
        "savedmodel": model_files.savedmodel_zip(folder / "savedmodel", two_io),
        "sklearn-logreg": model_files.skops_file(folder / "logreg", "logreg"),
        "sklearn-forest": model_files.skops_file(folder / "forest", "forest"),
        "sklearn-pipeline": model_files.skops_pipeline_file(folder / "pipeline"),
        "sklearn-regressor": model_files.skops_file(folder / "regressor", "regressor"),
        "pickle": model_files.pickle_file(folder / "pickle"),
        "onnx": model_files.onnx_file(folder / "onnx"),
    }


@pytest.fixture(scope="module")
def parents(sources: dict[str, Path]) -> dict[str, tuple[Signature, Runner]]:
    """Inspect and load each source once: Keras and SavedModel loads are the slow part."""
    return {
        case: (FORMATS[_format(case)].inspect(path).signature, load_runner(_format(case), path))
        for case, path in sources.items()
    }


def test_the_cases_cover_every_supported_path() -> None:
    covered = {(_format(case), recipe) for case, recipe, _ in CASES}
    assert covered == {(source, recipe) for source, recipes in SUPPORTED.items() for recipe in recipes}


def _by_name(signature: Signature) -> Signature:
    return Signature(
        inputs=sorted(signature.inputs, key=lambda s: s.name), outputs=sorted(signature.outputs, key=lambda s: s.name)
    )


@pytest.mark.parametrize(("case", "recipe", "expected"), CASES, ids=[f"{c}->{r.key}" for c, r, _ in CASES])
def test_a_supported_path_converts_and_keeps_parity(
    tmp_path: Path,
    sources: dict[str, Path],
    parents: dict[str, tuple[Signature, Runner]],
    case: str,
    recipe: Recipe,
    expected: Signature,
) -> None:
    source_format = _format(case)
    parent_signature, parent = parents[case]
    conversion = convert(source_format, sources[case], recipe, tmp_path / "out", parent_signature)
    converted = conversion.path

    assert converted.parent == tmp_path / "out"
    assert conversion.inspection == FORMATS[recipe.target].inspect(converted)
    assert converted.suffix == f".{recipe.target}"
    signature = FORMATS[recipe.target].inspect(converted).signature
    if source_format == "savedmodel" and recipe.target == "onnx":
        # A loaded SavedModel lists its signature's inputs in hash order, and the ONNX inputs follow that order.
        assert _by_name(signature) == _by_name(expected)
    else:
        assert signature == expected
    report = parity_report(
        parent=parent,
        child=load_runner(recipe.target, converted),
        parent_signature=parent_signature,
        child_signature=signature,
        recipe=recipe,
        inputs=synthesize_inputs(parent_signature, seed=0, rows=32),
        input_source="synthetic",
    )
    json.dumps(report, allow_nan=False)  # what the job stores must be plain JSON
    assert report["passed"] is True, report["reason"]
    assert report["reason"].startswith("Passed")
    assert report["matched_by"] == "name"
    assert report["rows"] == 32
    assert report["recipe"] == recipe.to_dict()
    assert [(o["parent"], o["child"]) for o in report["outputs"]] == [
        (spec.name, spec.name) for spec in parent_signature.outputs
    ]
    for output in report["outputs"]:
        _assert_sane(output, recipe)


def _assert_sane(output: dict[str, Any], recipe: Recipe) -> None:
    if output["agreement"] is not None:
        assert output["agreement"] == 1.0
        assert output["max_abs_diff"] is None
        return
    if output["top1_agreement"] is not None:
        assert output["top1_agreement"] == 1.0
    if recipe.quantization == "none":
        assert output["max_abs_diff"] < 1e-5
    elif recipe.quantization == "float16":
        # Non-zero: the weights really were rounded to float16.
        assert 0 < output["max_abs_diff"] < 2e-3
    else:
        assert 0 < output["mean_abs_diff"] < 5e-3
        assert output["max_abs_diff"] < 2e-2


def test_int8_tflite_is_smaller_than_float_tflite(tmp_path: Path, sources: dict[str, Path], parents: Any) -> None:
    signature = parents["keras"][0]
    float32 = convert("keras", sources["keras"], TO_TFLITE, tmp_path / "f32", signature).path
    int8 = convert("keras", sources["keras"], TO_TFLITE_INT8, tmp_path / "int8", signature).path
    float16 = convert("keras", sources["keras"], TO_TFLITE_FLOAT16, tmp_path / "f16", signature).path
    assert int8.stat().st_size < float16.stat().st_size < float32.stat().st_size


@pytest.mark.parametrize(
    ("source_format", "recipe", "supported"),
    [
        ("tflite", TO_ONNX, []),
        ("onnx", TO_TFLITE, ["onnx:int8", "onnx:float16"]),
        ("onnx", TO_ONNX, ["onnx:int8", "onnx:float16"]),
        ("sklearn", TO_TFLITE_INT8, ["onnx:none"]),
        ("pytorch", TO_ONNX, []),
    ],
)
def test_an_unsupported_conversion_is_refused_before_reading_the_file(
    tmp_path: Path, source_format: str, recipe: Recipe, supported: list[str]
) -> None:
    assert not conversion_supported(source_format, recipe)
    with pytest.raises(ConversionError) as caught:
        convert(source_format, tmp_path / "missing", recipe, tmp_path / "out", TINY_ONNX)
    assert caught.value.code == "unsupported_conversion"
    assert caught.value.detail == {"source": source_format, "recipe": recipe.to_dict(), "supported": supported}
    assert f"to {'ONNX' if recipe.target == 'onnx' else 'TensorFlow Lite'}" in caught.value.message
    assert not (tmp_path / "out").exists()


def test_the_supported_paths_are_what_the_platform_offers() -> None:
    assert conversion_supported("keras", TO_TFLITE_INT8)
    assert conversion_supported("savedmodel", TO_ONNX)
    assert conversion_supported("pickle", TO_ONNX)
    assert SUPPORTED["tflite"] == ()


@pytest.fixture(scope="module")
def unconvertible(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Signature]:
    path = model_files.keras_file(tmp_path_factory.mktemp("digamma") / "model", model_files.keras_unconvertible_model())
    return path, FORMATS["keras"].inspect(path).signature


@pytest.mark.parametrize(
    ("recipe", "tool"),
    [(TO_ONNX, "tf2onnx"), (TO_TFLITE, "TFLite"), (TO_TFLITE_INT8, "TFLite")],
)
def test_an_op_the_converter_lacks_fails_with_its_name(
    tmp_path: Path, unconvertible: tuple[Path, Signature], recipe: Recipe, tool: str
) -> None:
    path, signature = unconvertible
    with pytest.raises(ConversionError) as caught:
        convert("keras", path, recipe, tmp_path / "out", signature)
    error = caught.value
    assert error.code == "conversion_failed"
    assert "Digamma" in error.message
    assert error.detail == {"tool": tool, "unsupported_ops": ["Digamma"]}
    assert "\n" not in error.message
    assert "Traceback" not in error.message
    assert list((tmp_path / "out").iterdir()) == []


def test_a_converter_exception_becomes_a_short_conversion_failed(
    tmp_path: Path, sources: dict[str, Path], parents: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import skl2onnx

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Unable to find a shape calculator for type 'Thing'.\n  File 'x.py', line 3, in convert")

    monkeypatch.setattr(skl2onnx, "convert_sklearn", broken)
    with pytest.raises(ConversionError) as caught:
        convert("sklearn", sources["sklearn-logreg"], TO_ONNX, tmp_path / "out", parents["sklearn-logreg"][0])
    assert caught.value.code == "conversion_failed"
    assert caught.value.message == (
        "The skl2onnx converter failed: Unable to find a shape calculator for type 'Thing'."
    )
    assert caught.value.detail == {"tool": "skl2onnx"}


def test_a_converted_model_with_other_input_names_is_refused(
    tmp_path: Path, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from onnxruntime.transformers import float16

    real = float16.convert_float_to_float16

    def renaming(model: Any, **kwargs: Any) -> Any:
        converted = real(model, **kwargs)
        converted.graph.input[0].name = "renamed"
        for node in converted.graph.node:
            node.input[:] = ["renamed" if name == "x" else name for name in node.input]
        return converted

    monkeypatch.setattr(float16, "convert_float_to_float16", renaming)
    with pytest.raises(ConversionError) as caught:
        convert("onnx", sources["onnx"], TO_ONNX_FLOAT16, tmp_path / "out", TINY_ONNX)
    assert caught.value.code == "conversion_failed"
    assert caught.value.detail == {"source": ["x"], "converted": ["renamed"]}


def test_int8_quantizes_without_pre_processing_when_that_fails(
    tmp_path: Path, sources: dict[str, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from onnxruntime.quantization import shape_inference

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ImportError("sympy is required")

    monkeypatch.setattr(shape_inference, "quant_pre_process", broken)
    converted = convert("onnx", sources["onnx"], TO_ONNX_INT8, tmp_path / "out", TINY_ONNX).path
    inspection = FORMATS["onnx"].inspect(converted)
    assert inspection.signature == TINY_ONNX
    assert "pre-processing failed" in caplog.text
    assert "sympy is required" in caplog.text


def test_a_source_that_fails_its_format_checks_raises_that_error(tmp_path: Path) -> None:
    path = model_files.skops_with_custom_function(tmp_path / "custom.skops")
    with pytest.raises(ModelFileError) as caught:
        convert("sklearn", path, TO_ONNX, tmp_path / "out", CLASSIFIER_ONNX)
    assert caught.value.code == "skops_untrusted_types"
    assert not isinstance(caught.value, ConversionError)

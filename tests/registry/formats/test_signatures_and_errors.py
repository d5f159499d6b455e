"""The contract between versions (signature differences) and root causes of converter errors in one paragraph."""

from __future__ import annotations

import pytest

from registry.formats.base import describe_differences, error_summary, signature_differences
from runtimes.tensors import Signature, TensorSpec


def _sig(inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]) -> Signature:
    return Signature(
        inputs=[TensorSpec(n, d, s) for n, d, s in inputs], outputs=[TensorSpec(n, d, s) for n, d, s in outputs]
    )


PRIMARY = _sig([("x", "FP32", [-1, 4])], [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 3])])


def test_the_same_signature_has_no_differences() -> None:
    assert signature_differences(PRIMARY, PRIMARY) == []


def test_an_input_may_become_more_permissive_but_an_output_must_keep_its_shape() -> None:
    wider = _sig([("x", "FP32", [-1, -1])], [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 3])])
    assert signature_differences(PRIMARY, wider) == []
    looser_output = _sig([("x", "FP32", [-1, 4])], [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, -1])])
    assert signature_differences(PRIMARY, looser_output) == [
        {"tensor": "output", "name": "probabilities", "problem": "shape", "expected": [-1, 3], "found": [-1, -1]}
    ]
    narrower = _sig([("x", "FP32", [8, 4])], [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 3])])
    assert signature_differences(PRIMARY, narrower) == [
        {"tensor": "input", "name": "x", "problem": "shape", "expected": [-1, 4], "found": [8, 4]}
    ]


def test_every_difference_is_listed_with_its_kind() -> None:
    tflite = _sig([("x", "FP32", [-1, 4, 1])], [("output_0", "FP16", [-1, 3])])
    differences = signature_differences(PRIMARY, tflite)
    assert differences == [
        {"tensor": "input", "name": "x", "problem": "shape", "expected": [-1, 4], "found": [-1, 4, 1]},
        {
            "tensor": "output",
            "name": "label",
            "problem": "missing",
            "expected": {"datatype": "INT64", "shape": [-1]},
            "found": None,
        },
        {
            "tensor": "output",
            "name": "probabilities",
            "problem": "missing",
            "expected": {"datatype": "FP32", "shape": [-1, 3]},
            "found": None,
        },
        {
            "tensor": "output",
            "name": "output_0",
            "problem": "added",
            "expected": None,
            "found": {"datatype": "FP16", "shape": [-1, 3]},
        },
    ]
    assert describe_differences(differences) == (
        "input 'x' is [-1, 4, 1] instead of [-1, 4]; output 'label' (INT64 [-1]) is missing; "
        "output 'probabilities' (FP32 [-1, 3]) is missing; output 'output_0' (FP16 [-1, 3]) is added"
    )
    # Releases name the two sides after the primary and the version being released.
    assert signature_differences(PRIMARY, tflite, sides=("primary", "version"))[0] == {
        "tensor": "input",
        "name": "x",
        "problem": "shape",
        "primary": [-1, 4],
        "version": [-1, 4, 1],
    }
    float16 = _sig([("x", "FP32", [-1, 4])], [("label", "INT64", [-1]), ("probabilities", "FP16", [-1, 3])])
    assert describe_differences(signature_differences(PRIMARY, float16)) == (
        "output 'probabilities' is FP16 instead of FP32"
    )


TF_USER_CODE = """in user code:

    File "/srv/modeldeck/registry/conversions.py", line 139, in call  *
        feed = keras_format.model_arguments(model, dict(zip(input_names, args, strict=True)))
    File "/venv/lib/python3.11/site-packages/keras/src/ops/operation.py", line 287, in input
        return self._get_node_attribute_at_index(0, "input_tensors", "input")

    ValueError: The layer sequential has never been called and thus has no defined input.
"""


@pytest.mark.parametrize(
    ("exc", "summary"),
    [
        # TensorFlow's report of an error inside traced code: the message is at the end, after the user-code trace.
        (ValueError(TF_USER_CODE), "The layer sequential has never been called and thus has no defined input"),
        # onnxruntime's message spans lines; the paragraph keeps them together.
        (
            RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\n  Unsupported op: Foo\n\nstack"),
            "[ONNXRuntimeError] : 1 : FAIL : Load model failed Unsupported op: Foo",
        ),
        (KeyError(), "KeyError"),
    ],
)
def test_error_summary_finds_the_root_cause_paragraph(exc: BaseException, summary: str) -> None:
    assert error_summary(exc) == summary


def test_error_summary_follows_an_explicit_cause_and_is_bounded() -> None:
    inner = TypeError("Field onnx.AttributeProto.ints: Expected an int, got a boolean.")
    outer = ValueError("Unable to create node 'TreeEnsembleClassifier' with attributes={" + "0, " * 5000)
    outer.__cause__ = inner  # what `raise outer from inner` records
    assert error_summary(outer) == "Field onnx.AttributeProto.ints: Expected an int, got a boolean"
    assert len(error_summary(ValueError("x " * 1000), limit=50)) == 50
    assert error_summary(ValueError("x " * 1000), limit=50).endswith("…")

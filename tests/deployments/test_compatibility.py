"""Signature compatibility of a version with an endpoint's primary: names, datatypes, shapes (pure, no database)."""

from __future__ import annotations

import pytest

from deployments.compatibility import difference_text, signature_differences, tensor_text
from runtimes.tensors import Signature, TensorSpec


def sig(inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]]) -> Signature:
    return Signature(
        inputs=[TensorSpec(*spec) for spec in inputs],
        outputs=[TensorSpec(*spec) for spec in outputs],
    )


# The bug behind the check: a scikit-learn classifier's endpoint (label + probabilities) and a TFLite version.
CLASSIFIER = sig([("input", "FP32", [-1, 4])], [("label", "INT64", [-1]), ("probabilities", "FP32", [-1, 3])])
TFLITE = sig([("input", "FP32", [-1, 4])], [("output_0", "FP32", [-1, 3])])


def test_the_same_signature_is_compatible() -> None:
    assert signature_differences(CLASSIFIER, CLASSIFIER) == []


def test_tensors_are_matched_by_name_not_position() -> None:
    two_inputs = sig(
        [("features", "FP32", [-1, 4]), ("extra", "FP32", [-1, 6])], [("a", "FP32", [-1]), ("b", "FP32", [-1])]
    )
    reordered = sig(
        [("extra", "FP32", [-1, 6]), ("features", "FP32", [-1, 4])], [("b", "FP32", [-1]), ("a", "FP32", [-1])]
    )
    assert signature_differences(two_inputs, reordered) == []


def test_renamed_outputs_are_one_missing_per_old_name_and_one_added_per_new_name() -> None:
    assert signature_differences(CLASSIFIER, TFLITE) == [
        {
            "tensor": "output",
            "name": "label",
            "problem": "missing",
            "primary": {"datatype": "INT64", "shape": [-1]},
            "version": None,
        },
        {
            "tensor": "output",
            "name": "probabilities",
            "problem": "missing",
            "primary": {"datatype": "FP32", "shape": [-1, 3]},
            "version": None,
        },
        {
            "tensor": "output",
            "name": "output_0",
            "problem": "added",
            "primary": None,
            "version": {"datatype": "FP32", "shape": [-1, 3]},
        },
    ]


def test_a_new_input_and_a_missing_input_are_differences() -> None:
    primary = sig([("x", "FP32", [-1, 4]), ("mask", "BOOL", [-1, 4])], [("y", "FP32", [-1])])
    candidate = sig([("x", "FP32", [-1, 4]), ("extra", "FP32", [-1, 2])], [("y", "FP32", [-1])])
    assert signature_differences(primary, candidate) == [
        {
            "tensor": "input",
            "name": "mask",
            "problem": "missing",
            "primary": {"datatype": "BOOL", "shape": [-1, 4]},
            "version": None,
        },
        {
            "tensor": "input",
            "name": "extra",
            "problem": "added",
            "primary": None,
            "version": {"datatype": "FP32", "shape": [-1, 2]},
        },
    ]


def test_datatypes_must_be_equal_for_inputs_and_outputs() -> None:
    primary = sig([("x", "FP32", [-1, 4])], [("y", "FP32", [-1, 3])])
    candidate = sig([("x", "FP16", [-1, 4])], [("y", "FP64", [-1, 3])])
    assert signature_differences(primary, candidate) == [
        {"tensor": "input", "name": "x", "problem": "datatype", "primary": "FP32", "version": "FP16"},
        {"tensor": "output", "name": "y", "problem": "datatype", "primary": "FP32", "version": "FP64"},
    ]


def test_a_tensor_can_differ_in_datatype_and_shape_at_once() -> None:
    primary = sig([("x", "FP32", [-1, 4])], [])
    candidate = sig([("x", "INT64", [-1, 5])], [])
    assert signature_differences(primary, candidate) == [
        {"tensor": "input", "name": "x", "problem": "datatype", "primary": "FP32", "version": "INT64"},
        {"tensor": "input", "name": "x", "problem": "shape", "primary": [-1, 4], "version": [-1, 5]},
    ]


@pytest.mark.parametrize(
    ("primary", "candidate", "compatible"),
    [
        ([-1, 4], [-1, 4], True),
        ([-1, 4], [-1, -1], True),  # a fixed dimension turned dynamic accepts every request it did
        ([8, 4], [-1, -1], True),
        ([-1, -1], [-1, -1], True),
        ([], [], True),  # a scalar stays a scalar
        ([-1, 4], [-1, 5], False),  # another fixed size
        ([-1, -1], [-1, 4], False),  # dynamic turned fixed: refuses requests the primary took
        ([-1, 4], [4, 4], False),
        ([-1, 4], [-1, 4, 1], False),  # another rank
        ([-1, 4], [-1], False),
    ],
)
def test_input_shapes_may_only_become_more_permissive(
    primary: list[int], candidate: list[int], compatible: bool
) -> None:
    differences = signature_differences(sig([("x", "FP32", primary)], []), sig([("x", "FP32", candidate)], []))
    expected = (
        []
        if compatible
        else [{"tensor": "input", "name": "x", "problem": "shape", "primary": primary, "version": candidate}]
    )
    assert differences == expected


@pytest.mark.parametrize(
    ("primary", "candidate", "compatible"),
    [
        ([-1, 3], [-1, 3], True),
        ([-1, -1], [-1, -1], True),
        ([-1, 3], [-1, -1], False),  # fixed turned dynamic: callers may get another shape back
        ([-1, -1], [-1, 3], False),
        ([-1, 3], [-1, 2], False),
        ([-1, 3], [-1, 3, 1], False),
        ([-1], [-1, 1], False),
    ],
)
def test_output_shapes_must_be_equal(primary: list[int], candidate: list[int], compatible: bool) -> None:
    differences = signature_differences(sig([], [("y", "FP32", primary)]), sig([], [("y", "FP32", candidate)]))
    expected = (
        []
        if compatible
        else [{"tensor": "output", "name": "y", "problem": "shape", "primary": primary, "version": candidate}]
    )
    assert differences == expected


def test_inputs_are_listed_before_outputs_in_the_primarys_order_then_added_ones() -> None:
    primary = sig([("a", "FP32", [-1]), ("b", "FP32", [-1])], [("p", "FP32", [-1]), ("q", "FP32", [-1])])
    candidate = sig([("z", "FP32", [-1]), ("b", "INT8", [-1])], [("q", "FP32", [2]), ("r", "FP32", [-1])])
    assert [(d["tensor"], d["name"], d["problem"]) for d in signature_differences(primary, candidate)] == [
        ("input", "a", "missing"),
        ("input", "b", "datatype"),
        ("input", "z", "added"),
        ("output", "p", "missing"),
        ("output", "q", "shape"),
        ("output", "r", "added"),
    ]


def test_signatures_read_from_stored_json_compare_the_same_way() -> None:
    stored = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": []}
    widened = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}], "outputs": []}
    assert signature_differences(Signature.from_dict(stored), Signature.from_dict(widened)) == []
    assert signature_differences(Signature.from_dict(widened), Signature.from_dict(stored)) == [
        {"tensor": "input", "name": "x", "problem": "shape", "primary": [-1, -1], "version": [-1, 4]}
    ]


def test_differences_in_words() -> None:
    words = [difference_text(d) for d in signature_differences(CLASSIFIER, TFLITE)]
    assert words == [
        "output 'label' (INT64 [-1]) is missing",
        "output 'probabilities' (FP32 [-1, 3]) is missing",
        "output 'output_0' (FP32 [-1, 3]) is added",
    ]
    changed = signature_differences(sig([("x", "FP32", [-1, 4])], []), sig([("x", "FP16", [-1, 5])], []))
    assert [difference_text(d) for d in changed] == [
        "input 'x' has datatype FP16 where the primary's has FP32",
        "input 'x' has shape [-1, 5] where the primary's has [-1, 4]",
    ]
    assert [tensor_text(v) for v in (None, "FP32", [-1, 4], [], {"datatype": "BOOL", "shape": [2]})] == [
        "—",
        "FP32",
        "[-1, 4]",
        "[]",
        "BOOL [2]",
    ]

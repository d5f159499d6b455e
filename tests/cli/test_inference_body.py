"""Named arrays become an Open Inference Protocol body with the endpoint's datatypes (no server needed)."""

from __future__ import annotations

import pytest

from modeldeck.errors import Invalid
from modeldeck.inference import infer_body_build

METADATA = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}, {"name": "ids", "datatype": "INT64"}]}


def test_named_arrays_take_their_shape_from_the_nesting_and_their_datatype_from_the_metadata() -> None:
    body = infer_body_build({"x": [[1, 2], [3, 4], [5, 6]], "ids": [7, 8, 9]}, METADATA)
    assert body == {
        "inputs": [
            {"name": "x", "shape": [3, 2], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
            {"name": "ids", "shape": [3], "datatype": "INT64", "data": [7, 8, 9]},
        ]
    }


def test_an_oip_body_passes_through_untouched() -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}], "id": "r1"}
    assert infer_body_build(body, {}) is body


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"y": [[1, 2]]}, "unknown_input"),
        ({"x": [[1, 2], [3]]}, "ragged"),
        ({"x": [[1, 2], 3]}, "ragged"),
        ([[1, 2]], "invalid_request"),
        ({}, "invalid_request"),
    ],
)
def test_malformed_requests_are_refused_before_sending(document, code) -> None:
    with pytest.raises(Invalid) as refused:
        infer_body_build(document, METADATA)
    assert (refused.value.code, refused.value.exit_code) == (code, 5)

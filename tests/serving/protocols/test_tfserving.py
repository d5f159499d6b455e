from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from runtimes.tensors import Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.tfserving import (
    tfserving_error_body,
    tfserving_metadata,
    tfserving_request_parse,
    tfserving_response_encode,
    tfserving_status,
)

IRIS = Signature(inputs=[TensorSpec("x", "FP32", [-1, 4])], outputs=[TensorSpec("probs", "FP32", [-1, 3])])
VECTOR = Signature(inputs=[TensorSpec("x", "FP32", [-1])], outputs=[TensorSpec("y", "FP32", [-1])])
PAIR = Signature(
    inputs=[TensorSpec("a", "FP32", [-1, 2]), TensorSpec("ids", "INT64", [-1])],
    outputs=[TensorSpec("y", "FP32", [-1])],
)
IMAGES = Signature(inputs=[TensorSpec("image_bytes", "BYTES", [-1])], outputs=[TensorSpec("label", "INT64", [-1])])


def dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def parse(document: Any, signature: Signature = IRIS) -> tuple[dict[str, np.ndarray], str]:
    return tfserving_request_parse(dumps(document), signature)


def refused(body: Any, signature: Signature = IRIS) -> str:
    raw = body if isinstance(body, bytes) else dumps(body)
    with pytest.raises(ProtocolError) as caught:
        tfserving_request_parse(raw, signature)
    assert caught.value.status == 400
    return caught.value.message


# Row format


def test_rows_of_a_single_input() -> None:
    inputs, style = parse({"instances": [[1, 2, 3, 4], [5, 6, 7, 8.5]]})
    assert style == "row"
    assert list(inputs) == ["x"]
    assert (inputs["x"].dtype, inputs["x"].shape) == (np.float32, (2, 4))
    assert inputs["x"].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8.5]]


def test_scalar_rows_of_a_vector_input() -> None:
    inputs, style = parse({"instances": [1.0, 2.0, 5.0]}, VECTOR)
    assert style == "row"
    assert (inputs["x"].dtype, inputs["x"].tolist()) == (np.float32, [1.0, 2.0, 5.0])


def test_rows_as_objects_for_a_single_input() -> None:
    inputs, _style = parse({"instances": [{"x": [1, 2, 3, 4]}, {"x": [5, 6, 7, 8]}]})
    assert inputs["x"].shape == (2, 4)


def test_rows_as_objects_for_several_inputs_are_stacked_per_input() -> None:
    inputs, style = parse(
        {"signature_name": "serving_default", "instances": [{"a": [1, 2], "ids": 7}, {"ids": 8, "a": [3, 4]}]},
        PAIR,
    )
    assert style == "row"
    assert (inputs["a"].dtype, inputs["a"].tolist()) == (np.float32, [[1, 2], [3, 4]])
    assert (inputs["ids"].dtype, inputs["ids"].tolist()) == (np.int64, [7, 8])


def test_b64_rows_are_values_not_named_objects() -> None:
    inputs, _style = parse({"instances": [{"b64": "aGVsbG8="}, {"b64": ""}]}, IMAGES)
    assert inputs["image_bytes"].dtype == np.object_
    assert inputs["image_bytes"].tolist() == [b"hello", b""]
    inputs, _style = parse({"instances": [{"image_bytes": {"b64": "AAE="}}]}, IMAGES)
    assert inputs["image_bytes"].tolist() == [b"\x00\x01"]


def test_nan_and_infinities_in_the_body() -> None:
    body = b'{"instances": [NaN, Infinity, -Infinity, 0.5]}'
    inputs, _style = tfserving_request_parse(body, VECTOR)
    x = inputs["x"]
    assert math.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf and x[3] == 0.5


def test_an_empty_signature_name_means_the_default() -> None:
    inputs, _style = parse({"signature_name": "", "instances": [[1, 2, 3, 4]]})
    assert inputs["x"].shape == (1, 4)


# Columnar format


def test_columnar_object_keyed_by_input_name() -> None:
    inputs, style = parse({"inputs": {"a": [[1, 2], [3, 4], [5, 6]], "ids": [1, 2, 3]}}, PAIR)
    assert style == "columnar"
    assert (inputs["a"].shape, inputs["ids"].tolist()) == ((3, 2), [1, 2, 3])


def test_columnar_bare_value_for_a_single_input() -> None:
    inputs, style = parse({"inputs": [[1, 2, 3, 4]]})
    assert style == "columnar"
    assert (inputs["x"].dtype, inputs["x"].tolist()) == (np.float32, [[1, 2, 3, 4]])


def test_columnar_object_for_a_single_input() -> None:
    inputs, _style = parse({"inputs": {"x": [[1, 2, 3, 4]]}})
    assert inputs["x"].shape == (1, 4)


def test_columnar_bare_b64_value() -> None:
    single = Signature(inputs=[TensorSpec("raw", "BYTES", [])], outputs=[])
    inputs, _style = parse({"inputs": {"b64": "aGk="}}, single)
    assert (inputs["raw"].shape, inputs["raw"].item()) == ((), b"hi")


# Refused requests


def test_malformed_json() -> None:
    assert (
        refused(b"{") == "JSON Parse error: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    assert refused(b"[1]") == "JSON Parse error: the request body must be a JSON object"


def test_both_or_neither_of_instances_and_inputs() -> None:
    assert refused({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}) == (
        "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
    )
    assert refused({"signature_name": "serving_default"}) == "Missing 'inputs' or 'instances' key"


def test_an_unknown_signature_name() -> None:
    assert refused({"signature_name": "predict", "instances": [[1, 2, 3, 4]]}) == (
        'Serving signature name: "predict" not found in signature def; this model has only "serving_default"'
    )
    assert refused({"signature_name": 1, "instances": [[1, 2, 3, 4]]}) == "'signature_name' must be a string"


def test_instances_that_are_not_a_non_empty_list() -> None:
    assert refused({"instances": {"x": [1, 2, 3, 4]}}) == "Expecting 'instances' to be a list/array"
    assert refused({"instances": []}) == "No values in 'instances' array"


def test_a_plain_list_for_several_inputs() -> None:
    assert refused({"instances": [[1, 2]]}, PAIR) == (
        "'instances' is a plain list, but the model has several inputs (a, ids); "
        "send a list of objects keyed by input name"
    )


def test_objects_mixed_with_plain_values() -> None:
    assert refused({"instances": [{"a": [1, 2], "ids": 1}, [1, 2]]}, PAIR) == (
        "Expecting object but got list at item 1 of 'instances'"
    )
    assert refused({"instances": [[1, 2, 3, 4], {"x": [1, 2, 3, 4]}]}) == (
        "input 'x' expects FP32 numbers but got {\"x\": [1, 2, 3, 4]}"
    )


def test_instances_with_different_keys() -> None:
    assert refused({"instances": [{"a": [1, 2], "ids": 1}, {"a": [1, 2]}]}, PAIR) == (
        "item 1 of 'instances' has keys [a] but item 0 has [a, ids]; every instance must have the same keys"
    )


def test_an_instance_naming_an_unknown_input() -> None:
    assert (
        refused({"instances": [{"a": [1, 2], "idz": 1}]}, PAIR) == "unexpected input 'idz'; the model expects: a, ids"
    )


def test_an_instance_missing_an_input() -> None:
    assert refused({"instances": [{"a": [1, 2]}]}, PAIR) == "missing input 'ids'; the model expects: a, ids"


def test_rows_of_different_lengths() -> None:
    assert refused({"instances": [[1, 2, 3, 4], [1, 2, 3]]}) == (
        "input 'x' has ragged nested lists: every list at the same depth must have the same length"
    )


def test_rows_of_the_wrong_width() -> None:
    assert refused({"instances": [[1, 2, 3]]}) == "input 'x' has shape [1, 3] but the model expects [-1, 4]"


def test_a_columnar_plain_value_for_several_inputs() -> None:
    assert refused({"inputs": [[1, 2]]}, PAIR) == (
        "'inputs' is a plain value/list, but the model has several inputs (a, ids); send an object keyed by input name"
    )


def test_columnar_unknown_and_missing_inputs() -> None:
    assert refused({"inputs": {"a": [[1, 2]], "ids": [1], "extra": [1]}}, PAIR) == (
        "unexpected input 'extra'; the model expects: a, ids"
    )
    assert refused({"inputs": {"a": [[1, 2]]}}, PAIR) == "missing input 'ids'; the model expects: a, ids"


def test_columnar_inputs_with_different_batch_sizes() -> None:
    assert refused({"inputs": {"a": [[1, 2]], "ids": [1, 2]}}, PAIR) == (
        "inputs disagree on the batch size (first dim): 'a' has 1, 'ids' has 2"
    )


def test_a_string_for_an_integer_input() -> None:
    assert (
        refused({"inputs": {"a": [[1, 2]], "ids": ["1"]}}, PAIR) == "input 'ids' expects INT64 integers but got \"1\""
    )


# Responses


def test_row_response_for_one_output() -> None:
    body = tfserving_response_encode({"probs": np.array([[0.5, 0.25, 0.25], [1, 0, 0]], np.float32)}, "row")
    assert body == b'{"predictions":[[0.5,0.25,0.25],[1.0,0.0,0.0]]}'


def test_row_response_for_several_outputs_is_a_list_of_objects() -> None:
    outputs: dict[str, np.ndarray] = {
        "label": np.array([2, 0], np.int64),
        "probs": np.array([[0.5, 0.5], [1, 0]], np.float32),
    }
    assert json.loads(tfserving_response_encode(outputs, "row")) == {
        "predictions": [{"label": 2, "probs": [0.5, 0.5]}, {"label": 0, "probs": [1.0, 0.0]}]
    }


def test_columnar_response_for_one_output() -> None:
    body = tfserving_response_encode({"y": np.array([3.5, 4.0, 5.5], np.float32)}, "columnar")
    assert body == b'{"outputs":[3.5,4.0,5.5]}'


def test_columnar_response_for_several_outputs_is_keyed_by_name() -> None:
    outputs: dict[str, np.ndarray] = {"label": np.array([2, 0], np.int64), "ok": np.array([True, False])}
    assert json.loads(tfserving_response_encode(outputs, "columnar")) == {
        "outputs": {"label": [2, 0], "ok": [True, False]}
    }


def test_nan_and_infinity_in_responses() -> None:
    body = tfserving_response_encode({"y": np.array([np.nan, np.inf, -np.inf], np.float32)}, "row")
    assert body == b'{"predictions":[NaN,Infinity,-Infinity]}'


def test_string_outputs_are_strings_and_bytes_outputs_are_b64() -> None:
    outputs: dict[str, np.ndarray] = {
        "word": np.array([b"caf\xc3\xa9", "dog"], dtype=object),
        "image_bytes": np.array([b"\x00\x01", "hi"], dtype=object),
        "raw": np.array([b"\xff"], dtype=object),
    }
    assert json.loads(tfserving_response_encode(outputs, "columnar")) == {
        "outputs": {
            "word": ["café", "dog"],
            "image_bytes": [{"b64": "AAE="}, {"b64": "aGk="}],
            "raw": [{"b64": "/w=="}],
        }
    }


def test_nested_bytes_outputs_keep_their_shape_in_rows() -> None:
    outputs: dict[str, np.ndarray] = {
        "tokens": np.array([["a", "b"], ["c", "d"]], dtype=object),
        "n": np.array([2, 2], np.int64),
    }
    assert json.loads(tfserving_response_encode(outputs, "row")) == {
        "predictions": [{"tokens": ["a", "b"], "n": 2}, {"tokens": ["c", "d"], "n": 2}]
    }


def test_a_numeric_output_named_bytes_stays_numeric() -> None:
    assert tfserving_response_encode({"size_bytes": np.array([3], np.int64)}, "row") == b'{"predictions":[3]}'


def test_row_responses_need_outputs_with_one_batch_size() -> None:
    with pytest.raises(ProtocolError) as caught:
        tfserving_response_encode({"a": np.zeros(2, np.float32), "b": np.zeros(3, np.float32)}, "row")
    assert (caught.value.status, caught.value.message) == (
        400,
        "output 'b' has batch size 3 but output 'a' has 2, so they cannot be split into rows; "
        "send the request in the columnar format ('inputs') instead",
    )
    with pytest.raises(ProtocolError) as caught:
        tfserving_response_encode({"a": np.zeros(2, np.float32), "total": np.float32(1.0)}, "row")  # type: ignore[dict-item]
    assert caught.value.message == (
        "output 'total' is a scalar and cannot be split into rows; "
        "send the request in the columnar format ('inputs') instead"
    )


def test_an_unknown_response_style() -> None:
    with pytest.raises(ValueError, match="unknown TF Serving response style 'rows'"):
        tfserving_response_encode({"y": np.zeros(1)}, "rows")


# Status, metadata, errors


def test_status() -> None:
    assert tfserving_status(["3", "4"]) == {
        "model_version_status": [
            {"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
            {"version": "4", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        ]
    }


def test_metadata() -> None:
    signature = Signature(
        inputs=[TensorSpec("x", "FP32", [-1, 4]), TensorSpec("text", "BYTES", [-1])],
        outputs=[TensorSpec("probs", "FP64", [-1, 3]), TensorSpec("label", "INT64", [-1])],
    )

    def dims(*sizes: int) -> dict[str, Any]:
        return {"dim": [{"size": str(size), "name": ""} for size in sizes], "unknown_rank": False}

    assert tfserving_metadata(name="iris", version="7", signature=signature) == {
        "model_spec": {"name": "iris", "signature_name": "", "version": "7"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "x": {"dtype": "DT_FLOAT", "tensor_shape": dims(-1, 4), "name": "serving_default_x:0"},
                            "text": {"dtype": "DT_STRING", "tensor_shape": dims(-1), "name": "serving_default_text:0"},
                        },
                        "outputs": {
                            "probs": {
                                "dtype": "DT_DOUBLE",
                                "tensor_shape": dims(-1, 3),
                                "name": "StatefulPartitionedCall:0",
                            },
                            "label": {
                                "dtype": "DT_INT64",
                                "tensor_shape": dims(-1),
                                "name": "StatefulPartitionedCall:1",
                            },
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("BOOL", "DT_BOOL"),
        ("UINT8", "DT_UINT8"),
        ("UINT16", "DT_UINT16"),
        ("UINT32", "DT_UINT32"),
        ("UINT64", "DT_UINT64"),
        ("INT8", "DT_INT8"),
        ("INT16", "DT_INT16"),
        ("INT32", "DT_INT32"),
        ("FP16", "DT_HALF"),
    ],
)
def test_metadata_dtypes(datatype: str, dtype: str) -> None:
    signature = Signature(inputs=[TensorSpec("t", datatype, [])], outputs=[])
    metadata = tfserving_metadata(name="m", version="1", signature=signature)
    tensor = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["t"]
    assert tensor == {"dtype": dtype, "tensor_shape": {"dim": [], "unknown_rank": False}, "name": "serving_default_t:0"}


def test_error_body() -> None:
    assert tfserving_error_body("Servable not found for request: Latest(half)") == (
        b'{"error": "Servable not found for request: Latest(half)"}'
    )


def test_json_nested_beyond_the_parsers_limit() -> None:
    body = b'{"instances":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert refused(body) == "JSON Parse error: the request body nests too deeply"


def test_a_boolean_among_numbers_is_refused_in_either_format() -> None:
    assert refused({"instances": [[1.5, 2, True, 4]]}) == "input 'x' expects FP32 numbers but got true"
    assert refused({"inputs": [[1.5, 2, 3, False]]}) == "input 'x' expects FP32 numbers but got false"

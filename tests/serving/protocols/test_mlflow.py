from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from runtimes.tensors import Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.mlflow import mlflow_error_body, mlflow_request_parse, mlflow_response_encode

IRIS = Signature(inputs=[TensorSpec("x", "FP32", [-1, 4])], outputs=[TensorSpec("probs", "FP32", [-1, 3])])
TABULAR = Signature(
    inputs=[
        TensorSpec("age", "INT64", [-1]),
        TensorSpec("score", "FP32", [-1]),
        TensorSpec("city", "BYTES", [-1]),
    ],
    outputs=[TensorSpec("y", "FP32", [-1])],
)
SEQUENCE = Signature(
    inputs=[TensorSpec("tokens", "INT64", [-1, 3]), TensorSpec("mask", "BOOL", [-1, 3])],
    outputs=[TensorSpec("y", "FP32", [-1])],
)
JSON = "application/json"
EXACTLY_ONE = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
PROTOCOL_NOTE = (
    "IMPORTANT: The MLflow Model scoring protocol has changed in MLflow version 2.0; "
    "MLflow 1.x request bodies (a bare pandas DataFrame in JSON) are no longer accepted."
)


def parse(document: Any, signature: Signature = IRIS, content_type: str | None = JSON) -> dict[str, np.ndarray]:
    return mlflow_request_parse(json.dumps(document).encode(), content_type, signature)


def refused(body: Any, signature: Signature = IRIS, content_type: str | None = JSON, status: int = 400) -> str:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ProtocolError) as caught:
        mlflow_request_parse(raw, content_type, signature)
    assert caught.value.status == status
    return caught.value.message


# Content types


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]
)
def test_json_content_types(content_type: str) -> None:
    inputs = parse({"inputs": [[1, 2, 3, 4]]}, content_type=content_type)
    assert inputs["x"].shape == (1, 4)


def test_a_charset_other_than_utf8_is_415() -> None:
    message = refused({"inputs": [[1, 2, 3, 4]]}, content_type="application/json; charset=latin-1", status=415)
    assert message == "The scoring server only supports UTF-8"


def test_unknown_content_type_parameters_are_415() -> None:
    message = refused({"inputs": [[1, 2, 3, 4]]}, content_type="application/json; format=pandas-split", status=415)
    assert message == "Unrecognized content type parameters: format"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_415(content_type: str) -> None:
    message = refused({"inputs": [[1, 2, 3, 4]]}, content_type=content_type, status=415)
    assert message == (
        f"This predictor only supports the following content types: application/json, text/csv. Got '{content_type}'."
    )


def test_no_content_type_is_415() -> None:
    message = refused({"inputs": [[1, 2, 3, 4]]}, content_type=None, status=415)
    assert message == (
        "This predictor only supports the following content types: application/json, text/csv. Got no Content-Type."
    )


# The "exactly one of" rule


@pytest.mark.parametrize(
    ("document", "fields"),
    [
        ({}, "[]"),
        ({"data": [[1, 2, 3, 4]]}, "['data']"),
        ({"instances": [[1, 2, 3, 4]], "inputs": [[1, 2, 3, 4]]}, "['instances', 'inputs']"),
        (
            {"dataframe_split": {}, "dataframe_records": [], "params": {}},
            "['dataframe_split', 'dataframe_records', 'params']",
        ),
    ],
)
def test_exactly_one_input_field(document: dict[str, Any], fields: str) -> None:
    assert refused(document) == f"{EXACTLY_ONE}. Received dictionary with input fields: {fields}. {PROTOCOL_NOTE}"


def test_a_list_body() -> None:
    assert refused([[1, 2, 3, 4]]) == f"{EXACTLY_ONE}. Received a list. {PROTOCOL_NOTE}"


def test_a_scalar_body() -> None:
    assert refused(5) == f"{EXACTLY_ONE}. Received unexpected input type 'int'."


def test_malformed_json() -> None:
    assert refused(b"{'inputs': 1}") == (
        "Failed to parse input from JSON. Ensure that input is a valid JSON formatted string. "
        "Error: 'Expecting property name enclosed in double quotes: line 1 column 2 (char 1)'"
    )


def test_params_are_allowed_and_ignored() -> None:
    inputs = parse({"inputs": [[1, 2, 3, 4]], "params": {"temperature": 0.1}})
    assert list(inputs) == ["x"]


# dataframe_split


def test_split_columns_named_after_the_inputs() -> None:
    inputs = parse(
        {"dataframe_split": {"columns": ["city", "age", "score"], "data": [["Oslo", 31, 0.5], ["Lima", 40, 1]]}},
        TABULAR,
    )
    assert (inputs["age"].dtype, inputs["age"].tolist()) == (np.int64, [31, 40])
    assert (inputs["score"].dtype, inputs["score"].tolist()) == (np.float32, [0.5, 1.0])
    assert (inputs["city"].dtype, inputs["city"].tolist()) == (np.object_, [b"Oslo", b"Lima"])


def test_split_cells_may_hold_lists() -> None:
    inputs = parse(
        {"dataframe_split": {"columns": ["tokens", "mask"], "data": [[[1, 2, 3], [True, True, False]]]}}, SEQUENCE
    )
    assert (inputs["tokens"].dtype, inputs["tokens"].tolist()) == (np.int64, [[1, 2, 3]])
    assert (inputs["mask"].dtype, inputs["mask"].tolist()) == (np.bool_, [[True, True, False]])


def test_split_feature_columns_form_the_rows_of_a_single_matrix_input() -> None:
    inputs = parse(
        {
            "dataframe_split": {
                "index": [10, 11],
                "columns": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                "data": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]],
            }
        }
    )
    x = inputs["x"]
    assert (x.dtype, x.shape) == (np.float32, (2, 4))
    assert np.allclose(x, [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]])


def test_split_without_column_names() -> None:
    inputs = parse({"dataframe_split": {"data": [[1, 2, 3, 4]]}})
    assert inputs["x"].tolist() == [[1, 2, 3, 4]]


def test_split_columns_matching_nothing() -> None:
    assert refused({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3]]}}) == (
        'dataframe_split columns ["a", "b", "c"] do not match the model\'s input: send one column named \'x\', '
        "or 4 columns that form the rows of 'x' (shape [-1, 4])"
    )
    assert refused({"dataframe_split": {"columns": ["age", "score"], "data": [[1, 2]]}}, TABULAR) == (
        'dataframe_split columns ["age", "score"] do not match the model\'s inputs; '
        "send one column per input: age, score, city"
    )
    assert refused({"dataframe_split": {"data": [[1, 2, 3]]}}) == (
        "dataframe_split columns (3 unnamed) do not match the model's input: send one column named 'x', "
        "or 4 columns that form the rows of 'x' (shape [-1, 4])"
    )


def test_split_rows_with_the_wrong_number_of_values() -> None:
    document = {"dataframe_split": {"columns": ["age", "score", "city"], "data": [[1, 2.0, "a"], [1, 2.0]]}}
    assert refused(document, TABULAR) == "dataframe_split row 1 has 2 values but there are 3 columns"
    document = {"dataframe_split": {"columns": ["age", "score", "city"], "data": [5]}}
    assert refused(document, TABULAR) == "dataframe_split row 0 has a single value but there are 3 columns"
    document = {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [1, 2, 3, 4]}}
    assert refused(document) == "dataframe_split has 4 columns but its rows make a tensor of shape [4]"
    document = {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3], [4, 5, 6]]}}
    assert refused(document) == "dataframe_split has 4 columns but its rows make a tensor of shape [2, 3]"


def test_split_that_is_not_an_object() -> None:
    assert refused({"dataframe_split": [[1, 2, 3, 4]]}) == (
        "dataframe_split must be an object with 'columns' and 'data' (pandas 'split' orient)"
    )
    assert refused({"dataframe_split": {"columns": ["x"]}}) == "dataframe_split has no 'data' list of rows"
    assert refused({"dataframe_split": {"columns": "x", "data": []}}) == (
        "dataframe_split 'columns' must be a list of column names"
    )


def test_split_values_of_the_wrong_type() -> None:
    document = {"dataframe_split": {"columns": ["age", "score", "city"], "data": [[1.5, 2.0, "a"]]}}
    assert refused(document, TABULAR) == "input 'age' expects INT64 integers but got 1.5"


# dataframe_records


def test_records_with_columns_named_after_the_inputs() -> None:
    inputs = parse(
        {"dataframe_records": [{"age": 31, "score": 0.5, "city": "Oslo"}, {"city": "Lima", "score": 1, "age": 40}]},
        TABULAR,
    )
    assert inputs["age"].tolist() == [31, 40]
    assert inputs["score"].tolist() == [0.5, 1.0]
    assert inputs["city"].tolist() == [b"Oslo", b"Lima"]


def test_records_of_feature_columns_form_a_matrix_in_column_order() -> None:
    inputs = parse({"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}, {"d": 8, "c": 7, "b": 6, "a": 5}]})
    assert (inputs["x"].dtype, inputs["x"].tolist()) == (np.float32, [[1, 2, 3, 4], [5, 6, 7, 8]])


def test_records_with_different_columns() -> None:
    assert refused({"dataframe_records": [{"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 1}]}) == (
        'dataframe_records[1] has columns ["a"] but dataframe_records[0] has ["a", "b", "c", "d"]'
    )


def test_records_that_are_not_a_list_of_objects() -> None:
    assert refused({"dataframe_records": {"a": 1}}) == (
        "dataframe_records must be a list of objects (pandas 'records' orient)"
    )
    assert refused({"dataframe_records": []}) == "dataframe_records holds no records"
    assert refused({"dataframe_records": [[1, 2, 3, 4]]}) == (
        "dataframe_records[0] must be an object mapping column names to values"
    )
    assert refused({"dataframe_records": [{"a": 1}, 5]}) == (
        "dataframe_records[1] must be an object mapping column names to values"
    )


def test_records_matching_nothing() -> None:
    assert refused({"dataframe_records": [{"a": 1, "b": 2}]}) == (
        'dataframe_records columns ["a", "b"] do not match the model\'s input: send one column named \'x\', '
        "or 4 columns that form the rows of 'x' (shape [-1, 4])"
    )


# instances / inputs (TF Serving semantics)


def test_instances_rows() -> None:
    inputs = parse({"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]})
    assert (inputs["x"].dtype, inputs["x"].shape) == (np.float32, (2, 4))


def test_instances_objects_for_several_inputs() -> None:
    inputs = parse({"instances": [{"tokens": [1, 2, 3], "mask": [True, True, True]}]}, SEQUENCE)
    assert inputs["tokens"].shape == (1, 3)
    assert inputs["mask"].dtype == np.bool_


def test_inputs_columnar() -> None:
    inputs = parse({"inputs": {"tokens": [[1, 2, 3]], "mask": [[True, False, True]]}}, SEQUENCE)
    assert inputs["tokens"].tolist() == [[1, 2, 3]]


def test_inputs_checked_against_the_signature() -> None:
    assert refused({"inputs": [[1, 2, 3]]}) == "input 'x' has shape [1, 3] but the model expects [-1, 4]"
    assert refused({"inputs": {"tokens": [[1, 2, 3]]}}, SEQUENCE) == (
        "missing input 'mask'; the model expects: tokens, mask"
    )


def test_nan_and_infinity_in_mlflow_bodies() -> None:
    body = b'{"inputs": [[NaN, Infinity, -Infinity, 1]]}'
    x = mlflow_request_parse(body, JSON, IRIS)["x"]
    assert math.isnan(x[0, 0]) and x[0, 1] == np.inf and x[0, 2] == -np.inf


# CSV


def test_csv_feature_columns() -> None:
    body = b"a,b,c,d\n5.1,3.5,1.4,0.2\n6,2.9,nan,1\n"
    x = mlflow_request_parse(body, "text/csv", IRIS)["x"]
    assert (x.dtype, x.shape) == (np.float32, (2, 4))
    assert np.allclose(x, [[5.1, 3.5, 1.4, 0.2], [6, 2.9, np.nan, 1]], equal_nan=True)


def test_csv_written_by_pandas_with_its_index_column() -> None:
    body = b",age,score,city\n0,31,0.5,Oslo\n1,40,,Lima\n"
    inputs = mlflow_request_parse(body, "text/csv; charset=utf-8", TABULAR)
    assert inputs["age"].tolist() == [31, 40]
    assert inputs["score"][0] == 0.5 and math.isnan(inputs["score"][1])
    assert inputs["city"].tolist() == [b"Oslo", b"Lima"]


def test_csv_strings_that_look_like_numbers_stay_strings_for_bytes_inputs() -> None:
    inputs = mlflow_request_parse(b"age,score,city\n1,2,10001\n", "text/csv", TABULAR)
    assert inputs["city"].tolist() == [b"10001"]


def test_csv_booleans() -> None:
    body = b"tokens,mask\n1,True\n"
    signature = Signature(inputs=[TensorSpec("tokens", "INT64", [-1]), TensorSpec("mask", "BOOL", [-1])], outputs=[])
    inputs = mlflow_request_parse(body, "text/csv", signature)
    assert (inputs["mask"].dtype, inputs["mask"].tolist()) == (np.bool_, [True])


def test_csv_refusals() -> None:
    assert refused(b"", content_type="text/csv") == "the CSV body is empty; it needs a header row of column names"
    assert refused(b"a,b,c,d\n1,2,3\n", content_type="text/csv") == (
        "CSV row 1 has 3 values but the header names 4 columns"
    )
    assert refused(b"a,b,c,d\n1,2,x,4\n", content_type="text/csv") == "input 'x' expects FP32 numbers but got \"x\""
    assert refused(b"age,score,city\n1_0,2,a\n", TABULAR, content_type="text/csv") == (
        "input 'age' expects INT64 integers but got \"1_0\""
    )
    assert refused(b"age,score,city\n,2,a\n", TABULAR, content_type="text/csv") == (
        "input 'age' expects INT64 integers but got NaN"
    )
    assert refused(b"a,b\n\xff,1\n", content_type="text/csv").startswith("the CSV body is not valid UTF-8: ")


# Responses and errors


def test_response_for_one_output() -> None:
    body = mlflow_response_encode({"probs": np.array([[0.5, 0.25, 0.25]], np.float32)})
    assert body == b'{"predictions":[[0.5,0.25,0.25]]}'


def test_response_for_several_outputs() -> None:
    outputs: dict[str, np.ndarray] = {
        "label": np.array([1, 0], np.int64),
        "probs": np.array([[0.5, 0.5], [1, 0]], np.float32),
    }
    assert json.loads(mlflow_response_encode(outputs)) == {
        "predictions": {"label": [1, 0], "probs": [[0.5, 0.5], [1.0, 0.0]]}
    }


def test_response_with_strings_bytes_and_nan() -> None:
    outputs: dict[str, np.ndarray] = {
        "word": np.array(["a", b"\xff\x00"], dtype=object),
        "u": np.array(["x"]),
        "f": np.array([np.nan], np.float32),
    }
    body = mlflow_response_encode(outputs)
    assert body == b'{"predictions":{"word":["a","/wA="],"u":["x"],"f":[NaN]}}'


def test_error_body() -> None:
    assert mlflow_error_body("bad input") == b'{"error_code": "BAD_REQUEST", "message": "bad input"}'
    assert json.loads(mlflow_error_body("x", "INVALID_PARAMETER_VALUE")) == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "x",
    }


def test_json_nested_beyond_the_parsers_limit() -> None:
    body = b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert refused(body) == "Failed to parse input from JSON: the request body nests too deeply"


def test_a_boolean_among_numbers_is_refused() -> None:
    document = {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1.5, 2, True, 4]]}}
    assert refused(document) == "input 'x' expects FP32 numbers but got true"

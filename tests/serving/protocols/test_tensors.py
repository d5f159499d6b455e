from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from runtimes.tensors import Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.tensors import inputs_check, json_body, tensor_from_data

X = TensorSpec("x", "FP32", [-1, 4])
IDS = TensorSpec("ids", "INT64", [-1])
TEXT = TensorSpec("text", "BYTES", [-1])


def refused(spec: TensorSpec, data: Any, shape: list[int] | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        tensor_from_data(spec, data, shape)
    assert caught.value.status == 400
    return caught.value


def test_error_carries_message_and_status() -> None:
    error = ProtocolError("nope", status=415)
    assert (error.message, error.status, str(error)) == ("nope", 415, "nope")
    assert ProtocolError("bad").status == 400


def test_nested_float_data_keeps_its_shape_and_takes_the_spec_dtype() -> None:
    array = tensor_from_data(X, [[1, 2, 3, 4], [5.5, 6, 7, 8]])
    assert array.dtype == np.float32
    assert array.shape == (2, 4)
    assert array.tolist() == [[1, 2, 3, 4], [5.5, 6, 7, 8]]


@pytest.mark.parametrize(
    "data", [[1, 2, 3, 4, 5, 6, 7, 8], [[1, 2, 3, 4], [5, 6, 7, 8]], [[[1, 2]], [[3, 4]], [[5, 6]], [[7, 8]]]]
)
def test_flat_or_nested_data_is_reshaped_to_the_given_shape(data: Any) -> None:
    array = tensor_from_data(X, data, [2, 4])
    assert array.dtype == np.float32
    assert array.shape == (2, 4)
    assert array.ravel().tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_scalar_is_a_zero_dim_array_or_fills_a_one_element_shape() -> None:
    assert tensor_from_data(TensorSpec("s", "FP64", []), 2.5).shape == ()
    array = tensor_from_data(TensorSpec("s", "FP64", [1]), 2.5, [1])
    assert (array.dtype, array.shape, array.tolist()) == (np.float64, (1,), [2.5])


def test_element_count_must_match_the_shape() -> None:
    error = refused(X, [1, 2, 3, 4, 5, 6], [2, 4])
    assert error.message == "input 'x' has shape [2, 4] (8 elements) but its data holds 6 elements"


def test_nan_and_infinities_pass_through_for_float_types() -> None:
    array = tensor_from_data(TensorSpec("x", "FP32", [-1]), [math.nan, math.inf, -math.inf, 1.0])
    assert array.dtype == np.float32
    assert math.isnan(array[0]) and array[1] == np.inf and array[2] == -np.inf and array[3] == 1.0


def test_a_string_for_a_float_input_is_named() -> None:
    assert refused(X, [[1, 2, "abc", 4]]).message == "input 'x' expects FP32 numbers but got \"abc\""


def test_null_is_refused_not_read_as_nan() -> None:
    assert refused(X, [[1, None, 3, 4]]).message == "input 'x' expects FP32 numbers but got null"
    assert refused(X, None).message == "input 'x' expects FP32 numbers but got null"


def test_booleans_are_not_numbers() -> None:
    assert refused(X, [[True, False, True, False]]).message == "input 'x' expects FP32 numbers but got true"


def test_objects_are_not_numbers() -> None:
    assert refused(X, [{"b64": "AAAA"}]).message == 'input \'x\' expects FP32 numbers but got {"b64": "AAAA"}'


def test_a_long_offending_value_is_cut_short_in_the_message() -> None:
    message = refused(X, ["a" * 200]).message
    assert message == "input 'x' expects FP32 numbers but got \"" + "a" * 56 + "..."


def test_ragged_nested_lists_are_refused() -> None:
    message = refused(X, [[1, 2, 3, 4], [5, 6, 7]]).message
    assert message == "input 'x' has ragged nested lists: every list at the same depth must have the same length"
    assert refused(X, [1, [2]]).message == message


def test_a_finite_number_too_large_for_the_float_type_is_refused() -> None:
    half = TensorSpec("h", "FP16", [-1])
    assert refused(half, [1.0, 70000]).message == "input 'h' expects FP16 numbers within ±65504 but got 70000"
    assert refused(X, [[1e39, 0, 0, 0]]).message == "input 'x' expects FP32 numbers within ±3.40282e+38 but got 1e+39"
    assert tensor_from_data(half, [math.inf]).tolist() == [math.inf]


def test_integers_for_integer_types() -> None:
    array = tensor_from_data(IDS, [1, 2, -3])
    assert (array.dtype, array.tolist()) == (np.int64, [1, 2, -3])


def test_integers_are_accepted_for_float_types() -> None:
    array = tensor_from_data(TensorSpec("x", "FP64", [-1]), [1, 2])
    assert (array.dtype, array.tolist()) == (np.float64, [1.0, 2.0])


def test_a_float_for_an_integer_input_is_refused_even_when_it_is_whole() -> None:
    assert refused(IDS, [1, 1.5]).message == "input 'ids' expects INT64 integers but got 1.5"
    # Decision: 2.0 is refused too, so a request's meaning never depends on how its numbers happen to round.
    assert refused(IDS, [1, 2.0]).message == "input 'ids' expects INT64 integers but got 2.0"


@pytest.mark.parametrize(
    ("datatype", "value", "message"),
    [
        ("UINT8", 300, "input 'n' expects UINT8 integers in [0, 255] but got 300"),
        ("UINT8", -1, "input 'n' expects UINT8 integers in [0, 255] but got -1"),
        ("INT8", -129, "input 'n' expects INT8 integers in [-128, 127] but got -129"),
        ("UINT64", -1, "input 'n' expects UINT64 integers in [0, 18446744073709551615] but got -1"),
        (
            "INT64",
            2**63,
            "input 'n' expects INT64 integers in [-9223372036854775808, 9223372036854775807] "
            "but got 9223372036854775808",
        ),
        ("INT32", "7", "input 'n' expects INT32 integers but got \"7\""),
    ],
)
def test_integers_out_of_range_or_of_another_type_are_refused(datatype: str, value: Any, message: str) -> None:
    assert refused(TensorSpec("n", datatype, [-1]), [0, value]).message == message


def test_an_all_boolean_tensor_is_refused_for_numeric_inputs() -> None:
    assert refused(TensorSpec("n", "INT32", [-1]), [True, False]).message == (
        "input 'n' expects INT32 integers but got true"
    )


def test_a_boolean_among_numbers_is_refused() -> None:
    # numpy alone would read these as [0, 1] and [1.0, 1.5].
    assert refused(TensorSpec("n", "INT32", [-1]), [0, True]).message == "input 'n' expects INT32 integers but got true"
    fp32 = TensorSpec("x", "FP32", [-1])
    assert refused(fp32, [1.5, False]).message == "input 'x' expects FP32 numbers but got false"
    with json_body(b'{"id": "true", "x": [1.5, false]}'):
        assert refused(TensorSpec("x", "FP32", [-1]), [1.5, False]).message.endswith("but got false")


def test_the_look_for_booleans_is_skipped_for_a_body_without_any() -> None:
    # What a body without `true` or `false` anywhere saves: the per-element look (shown here with data that could not
    # have come from such a body, the only way to see that the look was skipped).
    with json_body(b'{"x": [0, 1]}'):
        assert tensor_from_data(TensorSpec("n", "INT32", [-1]), [0, True]).tolist() == [0, 1]
        assert tensor_from_data(TensorSpec("x", "FP32", [-1]), [0, 1]).tolist() == [0.0, 1.0]


def test_the_whole_uint64_range_is_accepted() -> None:
    array = tensor_from_data(TensorSpec("n", "UINT64", [-1]), [0, 2**64 - 1])
    assert (array.dtype, array.tolist()) == (np.uint64, [0, 2**64 - 1])


def test_small_integer_types_take_the_exact_dtype() -> None:
    array = tensor_from_data(TensorSpec("n", "UINT8", [-1, 2]), [[0, 255], [1, 2]])
    assert (array.dtype, array.shape) == (np.uint8, (2, 2))


def test_huge_integers_mixed_with_floats_are_fine_for_fp64() -> None:
    array = tensor_from_data(TensorSpec("x", "FP64", [-1]), [1.5, 2**70])
    assert (array.dtype, array.tolist()) == (np.float64, [1.5, float(2**70)])


def test_booleans_for_bool_inputs() -> None:
    mask = TensorSpec("mask", "BOOL", [-1])
    array = tensor_from_data(mask, [True, False])
    assert (array.dtype, array.tolist()) == (np.bool_, [True, False])
    assert refused(mask, [True, 1]).message == "input 'mask' expects BOOL values (true or false) but got 1"


def test_empty_data_takes_the_spec_dtype() -> None:
    array = tensor_from_data(IDS, [])
    assert (array.dtype, array.shape) == (np.int64, (0,))
    array = tensor_from_data(X, [[], []])
    assert (array.dtype, array.shape) == (np.float32, (2, 0))
    array = tensor_from_data(TEXT, [], [0])
    assert (array.dtype, array.shape) == (np.object_, (0,))


def test_strings_are_utf8_encoded_for_bytes_inputs() -> None:
    array = tensor_from_data(TEXT, ["héllo", "x"])
    assert array.dtype == np.object_
    assert array.tolist() == ["héllo".encode(), b"x"]


def test_nested_strings_keep_their_shape_and_b64_objects_are_decoded() -> None:
    array = tensor_from_data(TensorSpec("t", "BYTES", [-1, 2]), [["a", {"b64": "aGVsbG8="}], ["c", "d"]])
    assert array.shape == (2, 2)
    assert array.tolist() == [[b"a", b"hello"], [b"c", b"d"]]


def test_flat_strings_reshape_to_the_given_shape() -> None:
    array = tensor_from_data(TensorSpec("t", "BYTES", [-1, 2]), ["a", "b", "c", "d"], [2, 2])
    assert array.tolist() == [[b"a", b"b"], [b"c", b"d"]]


def test_bytes_inputs_refuse_other_values() -> None:
    message = "input 'text' expects BYTES strings (or {\"b64\": ...} objects) but got 5"
    assert refused(TEXT, ["a", 5]).message == message
    assert refused(TEXT, [{"b64": "AA==", "x": 1}]).message == (
        'input \'text\' expects BYTES strings (or {"b64": ...} objects) but got {"b64": "AA==", "x": 1}'
    )


def test_invalid_base64_is_refused() -> None:
    message = refused(TEXT, [{"b64": "not base64!"}]).message
    assert message.startswith("input 'text' has invalid base64 in {\"b64\": ...}: ")


def test_ragged_strings_are_refused() -> None:
    message = refused(TensorSpec("t", "BYTES", [-1, -1]), [["a", "b"], ["c"]]).message
    assert message == "input 't' has ragged nested lists: every list at the same depth must have the same length"


# inputs_check

IRIS = Signature(inputs=[X], outputs=[TensorSpec("probs", "FP32", [-1, 3])])
PAIR = Signature(
    inputs=[TensorSpec("a", "FP32", [-1, 2]), TensorSpec("b", "INT64", [-1])],
    outputs=[TensorSpec("y", "FP32", [-1])],
)


def check_refused(signature: Signature, inputs: dict[str, np.ndarray]) -> str:
    with pytest.raises(ProtocolError) as caught:
        inputs_check(signature, inputs)
    assert caught.value.status == 400
    return caught.value.message


def test_matching_inputs_pass() -> None:
    inputs_check(IRIS, {"x": np.zeros((3, 4), np.float32)})
    inputs_check(PAIR, {"a": np.zeros((2, 2), np.float32), "b": np.zeros(2, np.int64)})


def test_a_missing_input_is_named_with_the_expected_ones() -> None:
    assert check_refused(IRIS, {}) == "missing input 'x'; the model expects: x"
    assert check_refused(PAIR, {"a": np.zeros((2, 2), np.float32)}) == "missing input 'b'; the model expects: a, b"


def test_an_unknown_input_is_named() -> None:
    message = check_refused(IRIS, {"x": np.zeros((1, 4), np.float32), "y": np.zeros(1, np.float32)})
    assert message == "unexpected input 'y'; the model expects: x"


def test_wrong_fixed_dim_or_rank_is_refused() -> None:
    assert check_refused(IRIS, {"x": np.zeros((2, 5), np.float32)}) == (
        "input 'x' has shape [2, 5] but the model expects [-1, 4]"
    )
    assert (
        check_refused(IRIS, {"x": np.zeros(8, np.float32)}) == "input 'x' has shape [8] but the model expects [-1, 4]"
    )


def test_a_fixed_first_dim_is_checked_too() -> None:
    fixed = Signature(inputs=[TensorSpec("x", "FP32", [1, 4])], outputs=[])
    assert check_refused(fixed, {"x": np.zeros((2, 4), np.float32)}) == (
        "input 'x' has shape [2, 4] but the model expects [1, 4]"
    )


def test_inputs_must_share_the_batch_size() -> None:
    message = check_refused(PAIR, {"a": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.int64)})
    assert message == "inputs disagree on the batch size (first dim): 'a' has 2, 'b' has 3"


def test_batch_size_is_only_compared_between_dynamic_first_dims() -> None:
    mixed = Signature(inputs=[TensorSpec("a", "FP32", [-1, 2]), TensorSpec("table", "FP32", [5])], outputs=[])
    inputs_check(mixed, {"a": np.zeros((2, 2), np.float32), "table": np.zeros(5, np.float32)})


def test_the_dtype_must_be_the_signature_datatype() -> None:
    message = check_refused(IRIS, {"x": np.zeros((1, 4), np.float64)})
    assert message == "input 'x' has numpy dtype float64 but the model expects FP32 (float32)"


def test_data_nested_deeper_than_a_tensor_can_be() -> None:
    deep: Any = 1.0
    for _ in range(33):
        deep = [deep]
    assert refused(X, deep).message == "input 'x' nests lists 33 deep, but a tensor has at most 32 dims"
    assert refused(TEXT, [deep]).message == "input 'text' nests lists 34 deep, but a tensor has at most 32 dims"


def test_a_deep_branch_beside_a_shallow_one_is_ragged_not_a_crash() -> None:
    deep: Any = 1.0
    for _ in range(900):
        deep = [deep]
    message = "input 'x' has ragged nested lists: every list at the same depth must have the same length"
    assert refused(X, [1.0, deep]).message == message
    assert refused(TEXT, ["a", deep]).message == message.replace("'x'", "'text'")


@pytest.mark.parametrize(
    ("body", "possible"),
    [
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1.5, 2e-3]}]}', False),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1.5, true]}]}', True),
        (b'{"instances": [[false, 1]]}', True),
        (b'{"id": "t' + b"t" * 500 + b'", "x": [1]}', True),  # too many t's to look at each: assumed, safely
    ],
)
def test_json_body_says_whether_booleans_are_possible(body: bytes, possible: bool) -> None:
    assert json_body(body).possible is possible

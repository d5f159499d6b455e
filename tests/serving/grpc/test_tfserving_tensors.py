"""TF Serving's TensorProto codec (serving.grpc.tfserving_tensors) on its own, fed what TensorFlow itself writes, and
our cut-down protos against the published ones (no server, no database)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2 as tf_tensor_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

from runtimes.tensors import TensorSpec
from serving.grpc.generated.tensorflow.core.framework import tensor_pb2
from serving.grpc.generated.tensorflow_serving.apis import get_model_metadata_pb2 as our_metadata_pb2
from serving.grpc.generated.tensorflow_serving.apis import get_model_status_pb2 as our_status_pb2
from serving.grpc.generated.tensorflow_serving.apis import predict_pb2 as our_predict_pb2
from serving.grpc.tfserving_tensors import VALUE_FIELDS, predict_response_encode, tensor_decode
from serving.protocols.errors import ProtocolError


def ours(official: tf_tensor_pb2.TensorProto) -> tensor_pb2.TensorProto:
    """The same tensor as our message: the wire is what the two share."""
    return tensor_pb2.TensorProto.FromString(official.SerializeToString())


def typed_form(array: np.ndarray, datatype: str) -> tensor_pb2.TensorProto:
    """The array in the typed *_val field of its dtype, as a client that builds TensorProtos by hand sends it."""
    tensor = ours(tf.make_tensor_proto(array))
    tensor.ClearField("tensor_content")
    field = VALUE_FIELDS[datatype]
    tensor.ClearField(field)
    values = array.view(np.uint16) if datatype == "FP16" else array  # half_val holds the 16 bits
    getattr(tensor, field).extend(values.ravel().tolist())
    return tensor


def content_form(array: np.ndarray, datatype: str) -> tensor_pb2.TensorProto:
    tensor = ours(tf.make_tensor_proto(array))
    tensor.ClearField(VALUE_FIELDS[datatype])
    tensor.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return tensor


NUMERIC = [
    ("INT8", np.array([[-128, 127]], np.int8)),
    ("UINT16", np.array([[0, 65535]], np.uint16)),
    ("INT32", np.array([[-(2**31), 2**31 - 1]], np.int32)),
    ("INT64", np.array([[-(2**40), 2**40]], np.int64)),
    ("UINT64", np.array([[0, 2**64 - 1]], np.uint64)),
    ("FP16", np.array([[0.5, -2.25]], np.float16)),
    ("FP64", np.array([[0.1, 1e300]], np.float64)),
    ("BOOL", np.array([[True, False]])),
]


@pytest.mark.parametrize(("datatype", "array"), NUMERIC, ids=[datatype for datatype, _ in NUMERIC])
def test_tensorflow_typed_and_content_forms_decode_to_the_same_array(datatype: str, array: np.ndarray) -> None:
    spec = TensorSpec("t", datatype, [-1, 2])
    for tensor in (ours(tf.make_tensor_proto(array)), typed_form(array, datatype), content_form(array, datatype)):
        decoded = tensor_decode(spec, tensor)
        assert decoded.dtype == array.dtype
        assert decoded.shape == array.shape
        assert decoded.tolist() == array.tolist()


def test_strings_travel_in_string_val() -> None:
    array = np.array([[b"a", b"\xff\x00"]], dtype=object)
    decoded = tensor_decode(TensorSpec("t", "BYTES", [-1, 2]), ours(tf.make_tensor_proto(array)))
    assert decoded.dtype == object and decoded.tolist() == [[b"a", b"\xff\x00"]]


def test_one_value_fills_the_shape() -> None:
    tensor = ours(tf.make_tensor_proto(7, dtype=tf.int64, shape=[2, 3]))
    assert list(tensor.int64_val) == [7]
    decoded = tensor_decode(TensorSpec("t", "INT64", [-1, 3]), tensor)
    assert decoded.dtype == np.int64 and decoded.tolist() == [[7, 7, 7], [7, 7, 7]]


@pytest.mark.parametrize(
    ("spec", "tensor", "message"),
    [
        (
            TensorSpec("t", "INT8", [-1]),
            tf_tensor_pb2.TensorProto(
                dtype=tf.int8.as_datatype_enum, tensor_shape={"dim": [{"size": 2}]}, int_val=[1, 300]
            ),
            "input 't' expects INT8 integers in [-128, 127] but got 300",
        ),
        (
            TensorSpec("t", "FP32", [-1]),
            tf_tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, tensor_shape={"dim": [{"size": 2}]}),
            "input 't' has shape [2] (2 elements) but its float_val holds 0 elements "
            "(one value fills the shape; otherwise one per element)",
        ),
        (
            TensorSpec("t", "FP32", [-1]),
            tf_tensor_pb2.TensorProto(
                dtype=tf.float32.as_datatype_enum,
                tensor_shape={"dim": [{"size": 1}]},
                float_val=[1.0],
                tensor_content=b"\0\0\0\0",
            ),
            "input 't' is DT_FLOAT, whose elements go in float_val or tensor_content, "
            "but it has float_val, tensor_content",
        ),
        (
            TensorSpec("t", "BYTES", [-1]),
            tf_tensor_pb2.TensorProto(
                dtype=tf.string.as_datatype_enum, tensor_shape={"dim": [{"size": 1}]}, tensor_content=b"abc"
            ),
            "input 't' is DT_STRING, whose elements go in string_val, but it has tensor_content",
        ),
        (
            TensorSpec("t", "FP32", [-1]),
            tf_tensor_pb2.TensorProto(dtype=tf.bfloat16.as_datatype_enum, tensor_shape={"dim": [{"size": 1}]}),
            "input 't' has dtype DT_BFLOAT16 but the model expects DT_FLOAT",
        ),
        (
            TensorSpec("t", "FP32", [-1]),
            tf_tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, tensor_shape={"unknown_rank": True}),
            "input 't' has tensor_shape.unknown_rank set; send the tensor's dims",
        ),
    ],
    ids=["int-range", "no-values", "two-forms", "string-content", "bfloat16", "unknown-rank"],
)
def test_refusals(spec: TensorSpec, tensor: tf_tensor_pb2.TensorProto, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        tensor_decode(spec, ours(tensor))
    assert (caught.value.status, caught.value.message) == (400, message)


def test_outputs_encode_as_tensor_content_or_strings() -> None:
    outputs = {
        "probs": np.array([[0.25, 0.75]], np.float32),
        "label": np.array([b"cat"], dtype=object),
        "flag": np.array([True]),
    }
    response = predict_response_encode(name="iris", version=3, outputs=outputs, names=["label", "probs"])
    official = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    spec = official.model_spec
    assert (spec.name, spec.version.value, spec.signature_name) == ("iris", 3, "serving_default")
    assert sorted(official.outputs) == ["label", "probs"]  # only those asked for
    assert official.outputs["probs"].tensor_content
    np.testing.assert_array_equal(tf.make_ndarray(official.outputs["probs"]), outputs["probs"])
    assert official.outputs["label"].dtype == tf.string.as_datatype_enum
    assert tf.make_ndarray(official.outputs["label"]).tolist() == [b"cat"]
    with pytest.raises(ProtocolError) as caught:
        predict_response_encode(name="iris", version=3, outputs=outputs, names=["missing"])
    assert (caught.value.status, caught.value.message) == (500, "the model returned no output 'missing'")


@pytest.mark.parametrize(
    ("mine", "official"),
    [
        (our_predict_pb2.PredictRequest, predict_pb2.PredictRequest),
        (our_predict_pb2.PredictResponse, predict_pb2.PredictResponse),
        (our_metadata_pb2.GetModelMetadataRequest, get_model_metadata_pb2.GetModelMetadataRequest),
        (our_metadata_pb2.GetModelMetadataResponse, get_model_metadata_pb2.GetModelMetadataResponse),
        (our_metadata_pb2.SignatureDefMap, get_model_metadata_pb2.SignatureDefMap),
        (our_status_pb2.GetModelStatusRequest, get_model_status_pb2.GetModelStatusRequest),
        (our_status_pb2.GetModelStatusResponse, get_model_status_pb2.GetModelStatusResponse),
    ],
    ids=lambda message: message.DESCRIPTOR.name,
)
def test_protos_match_the_published_ones(mine: Any, official: Any) -> None:
    """Every field kept has the published name, number, type and cardinality, down through the nested messages and
    enums (tensorflow-serving-api's descriptors are the published protos, compiled)."""
    seen: set[str] = set()

    def same(ours_: Any, theirs: Any) -> None:
        if ours_.full_name in seen:
            return
        seen.add(ours_.full_name)
        assert ours_.full_name == theirs.full_name
        for field in ours_.fields:
            other = theirs.fields_by_name[field.name]
            assert (field.number, field.type, field.is_repeated) == (other.number, other.type, other.is_repeated)
            if field.message_type is not None:
                same(field.message_type, other.message_type)
            if field.enum_type is not None:
                for value in field.enum_type.values:
                    assert other.enum_type.values_by_name[value.name].number == value.number

    same(mine.DESCRIPTOR, official.DESCRIPTOR)

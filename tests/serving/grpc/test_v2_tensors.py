"""ModelInferRequest decoding and ModelInferResponse encoding (serving.grpc.v2_tensors), without a server: every
datatype, raw and typed contents, and the refusals, worded as the HTTP codec words them where HTTP has the case."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from runtimes.tensors import Signature, TensorSpec
from serving.grpc.generated import grpc_service_pb2 as pb
from serving.grpc.v2_tensors import infer_request_decode, infer_response_encode
from serving.protocols.errors import ProtocolError
from serving.protocols.v2 import v2_request_parse

MIXED = Signature(
    inputs=[
        TensorSpec("a", "FP32", [-1, 2]),
        TensorSpec("ids", "INT8", [-1]),
        TensorSpec("text", "BYTES", [-1]),
        TensorSpec("flag", "BOOL", [-1]),
    ],
    outputs=[TensorSpec("y", "FP32", [-1]), TensorSpec("label", "BYTES", [-1]), TensorSpec("h", "FP16", [-1])],
)
A = np.array([[1.5, -2.0], [0.25, 8.0]], dtype=np.float32)
IDS = np.array([-128, 127], dtype=np.int8)
TEXT = [b"caf\xc3\xa9", b""]
FLAG = np.array([True, False])


def lengths_prefixed(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def raw_request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", id="r1")
    for name, datatype, shape, raw in (
        ("a", "FP32", [2, 2], A.astype("<f4").tobytes()),
        ("ids", "INT8", [2], IDS.tobytes()),
        ("text", "BYTES", [2], lengths_prefixed(TEXT)),
        ("flag", "BOOL", [2], FLAG.tobytes()),
    ):
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
    return request


def typed_request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="a", datatype="FP32", shape=[2, 2]).contents.fp32_contents.extend(A.ravel().tolist())
    request.inputs.add(name="ids", datatype="INT8", shape=[2]).contents.int_contents.extend(IDS.tolist())
    request.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(TEXT)
    request.inputs.add(name="flag", datatype="BOOL", shape=[2]).contents.bool_contents.extend(FLAG.tolist())
    return request


@pytest.mark.parametrize("make", [raw_request, typed_request], ids=["raw", "typed"])
def test_every_kind_of_input_decodes_to_the_models_dtypes(make) -> None:
    decoded = infer_request_decode(make(), MIXED)
    np.testing.assert_array_equal(decoded.inputs["a"], A)
    assert decoded.inputs["a"].dtype == np.float32
    np.testing.assert_array_equal(decoded.inputs["ids"], IDS)
    assert decoded.inputs["ids"].dtype == np.int8
    assert decoded.inputs["text"].tolist() == TEXT
    np.testing.assert_array_equal(decoded.inputs["flag"], FLAG)
    assert decoded.outputs == ["y", "label", "h"]


def test_id_parameters_and_requested_outputs() -> None:
    request = raw_request()
    request.parameters["priority"].int64_param = 3
    request.outputs.add(name="label")
    decoded = infer_request_decode(request, MIXED)
    assert (decoded.id, decoded.parameters, decoded.outputs) == ("r1", {"priority": 3}, ["label"])
    request.id = ""
    assert infer_request_decode(request, MIXED).id is None


def http_message(inputs: list[dict[str, object]], signature: Signature = MIXED) -> str:
    with pytest.raises(ProtocolError) as caught:
        v2_request_parse(json.dumps({"inputs": inputs}).encode(), signature)
    return caught.value.message


def grpc_message(request: pb.ModelInferRequest, signature: Signature = MIXED) -> str:
    with pytest.raises(ProtocolError) as caught:
        infer_request_decode(request, signature)
    assert caught.value.status == 400
    return caught.value.message


def test_shared_refusals_say_what_http_says() -> None:
    iris = Signature(inputs=[TensorSpec("x", "FP32", [-1, 4])], outputs=[TensorSpec("probs", "FP32", [-1, 3])])
    request = pb.ModelInferRequest()
    request.inputs.add(name="x", datatype="FP64", shape=[1, 4]).contents.fp64_contents.extend([0.0] * 4)
    assert grpc_message(request, iris) == http_message(
        [{"name": "x", "datatype": "FP64", "shape": [1, 4], "data": [0.0] * 4}], iris
    )
    request = pb.ModelInferRequest()
    request.inputs.add(name="nope", datatype="FP32", shape=[1]).contents.fp32_contents.append(0.0)
    assert grpc_message(request, iris) == http_message(
        [{"name": "nope", "datatype": "FP32", "shape": [1], "data": [0.0]}], iris
    )
    # INT8 out of range, typed: the element is named as for JSON data.
    request = pb.ModelInferRequest()
    request.inputs.add(name="ids", datatype="INT8", shape=[2]).contents.int_contents.extend([1, 300])
    assert grpc_message(request) == "input 'ids' expects INT8 integers in [-128, 127] but got 300"
    # Fewer elements than the shape says.
    request = pb.ModelInferRequest()
    request.inputs.add(name="a", datatype="FP32", shape=[2, 2]).contents.fp32_contents.extend([1.0, 2.0])
    assert grpc_message(request) == http_message(
        [{"name": "a", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0]}]
    )
    # A missing input, once the others are fine.
    request = typed_request()
    del request.inputs[3]
    assert grpc_message(request) == "missing input 'flag'; the model expects: a, ids, text, flag"


def test_raw_and_typed_contents_refusals_of_their_own() -> None:
    request = raw_request()
    del request.raw_input_contents[3]
    assert grpc_message(request) == (
        "the request has 3 raw_input_contents for 4 inputs; with raw_input_contents every input needs one, "
        "in input order"
    )
    request = raw_request()
    request.raw_input_contents[0] = b"\x00" * 12
    assert grpc_message(request) == (
        "input 'a' has shape [2, 2] of FP32 (16 bytes) but its raw_input_contents has 12 bytes"
    )
    request = raw_request()
    request.raw_input_contents[2] = lengths_prefixed(TEXT)[:-1] + b"\x05"
    assert "the raw_input_contents of BYTES input 'text' is cut short" in grpc_message(request)
    request = raw_request()
    request.raw_input_contents[2] = lengths_prefixed([b"one"])
    assert (
        grpc_message(request) == "input 'text' has shape [2] (2 elements) but its raw_input_contents holds 1 elements"
    )
    request = raw_request()
    request.inputs[0].contents.fp32_contents.extend([0.0] * 4)
    assert grpc_message(request) == "input 'a' has both contents and raw_input_contents; send one of them"
    request = typed_request()
    request.inputs[0].contents.fp64_contents.append(1.0)
    assert grpc_message(request) == (
        "input 'a' is FP32, whose elements go in contents.fp32_contents, but it has contents.fp64_contents"
    )
    half = Signature(inputs=[TensorSpec("h", "FP16", [-1])], outputs=[TensorSpec("y", "FP32", [-1])])
    request = pb.ModelInferRequest()
    request.inputs.add(name="h", datatype="FP16", shape=[1])
    assert grpc_message(request, half) == (
        "input 'h' has datatype FP16, which has no typed contents field; send it as raw_input_contents"
    )


def outputs() -> dict[str, np.ndarray]:
    label = np.empty(2, dtype=object)
    label[:] = [b"a", "b\u00e9"]
    return {
        "y": np.array([0.5, -1.0], dtype=np.float32),
        "label": label,
        "h": np.array([1.5, 2.0], dtype=np.float16),
    }


def test_raw_answers_are_laid_out_as_the_inputs() -> None:
    decoded = infer_request_decode(raw_request(), MIXED)
    response = infer_response_encode(model_name="m", model_version="3", request=decoded, outputs=outputs(), raw=True)
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("y", "FP32", [2]),
        ("label", "BYTES", [2]),
        ("h", "FP16", [2]),
    ]
    y, label, h = response.raw_output_contents
    assert y == np.array([0.5, -1.0], dtype="<f4").tobytes()
    assert label == lengths_prefixed([b"a", "b\u00e9".encode()])
    assert h == np.array([1.5, 2.0], dtype="<f2").tobytes()


def test_typed_answers_unless_an_output_has_no_typed_field() -> None:
    decoded = infer_request_decode(typed_request(), MIXED)
    decoded.outputs = ["y", "label"]
    response = infer_response_encode(model_name="m", model_version="1", request=decoded, outputs=outputs(), raw=False)
    assert not response.raw_output_contents
    assert list(response.outputs[0].contents.fp32_contents) == [0.5, -1.0]
    assert list(response.outputs[1].contents.bytes_contents) == [b"a", "b\u00e9".encode()]
    # FP16 travels only raw: then every output does, as tritonclient reads them by position.
    decoded.outputs = ["y", "h"]
    response = infer_response_encode(model_name="m", model_version="1", request=decoded, outputs=outputs(), raw=False)
    assert len(response.raw_output_contents) == 2
    assert not response.outputs[0].HasField("contents")


ONE = Signature(inputs=[TensorSpec("x", "FP32", [-1, 4])], outputs=[TensorSpec("probs", "FP32", [-1, 3])])
ROWS = np.arange(8, dtype=np.float32).reshape(2, 4)


def one_input(**changes) -> pb.ModelInferRequest:
    """tritonclient's default call for a one-input model: raw contents, no parameters, every output."""
    fields = {"name": "x", "datatype": "FP32", "shape": [2, 4], "raw": ROWS.tobytes(), "id": ""} | changes
    request = pb.ModelInferRequest(model_name="m", id=fields["id"])
    request.inputs.add(name=fields["name"], datatype=fields["datatype"], shape=fields["shape"])
    request.raw_input_contents.append(fields["raw"])
    return request


def _asked_for(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    request.outputs.add(name="probs")
    return request


def _with_parameter(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    request.inputs[0].parameters["binary_data_size"].int64_param = 32
    return request


def _with_contents_too(request: pb.ModelInferRequest) -> pb.ModelInferRequest:
    request.inputs[0].contents.fp32_contents.extend(ROWS.ravel().tolist())
    return request


@pytest.mark.parametrize(
    "request_",
    [
        one_input(),
        one_input(id="req-7"),
        one_input(shape=[1, 4], raw=ROWS[:1].tobytes()),
        one_input(shape=[0, 4], raw=b""),
        one_input(shape=[2, 3], raw=ROWS[:, :3].tobytes()),  # a fixed dim that does not match
        one_input(shape=[8], raw=ROWS.tobytes()),  # another rank
        one_input(raw=ROWS.tobytes()[:-1]),  # a byte short
        one_input(datatype="FP64", raw=ROWS.astype(np.float64).tobytes()),
        one_input(name="y"),
        one_input(shape=[2**31, 4], raw=b""),
        _asked_for(one_input()),
        _with_parameter(one_input()),
        _with_contents_too(one_input()),
    ],
    ids=[
        "common",
        "with-id",
        "one-row",
        "no-rows",
        "wrong-fixed-dim",
        "wrong-rank",
        "byte-short",
        "wrong-datatype",
        "wrong-name",
        "absurd-dim",
        "outputs-asked",
        "input-parameters",
        "contents-too",
    ],
)
def test_the_short_way_answers_exactly_as_the_general_way(request_, monkeypatch) -> None:
    """The common call is decoded a short way; whatever it takes or hands over, the answer (or the refusal, word for
    word) is the general decoder's."""

    def outcome() -> tuple[str, object]:
        try:
            decoded = infer_request_decode(request_, ONE)
        except ProtocolError as exc:
            return "refused", (exc.status, exc.message)
        arrays = {name: (array.dtype, array.shape, array.tobytes()) for name, array in decoded.inputs.items()}
        return "decoded", (decoded.id, arrays, decoded.outputs, decoded.binary_outputs, decoded.parameters)

    short = outcome()
    monkeypatch.setattr("serving.grpc.v2_tensors._one_raw_input", lambda message, signature: None)
    assert short == outcome()


def test_the_common_call_takes_the_short_way() -> None:
    from serving.grpc.v2_tensors import _one_raw_input

    decoded = _one_raw_input(one_input(id="a"), ONE)
    assert decoded is not None
    np.testing.assert_array_equal(decoded.inputs["x"], ROWS)
    assert (decoded.id, decoded.outputs, decoded.parameters) == ("a", ["probs"], {})
    assert _one_raw_input(_asked_for(one_input()), ONE) is None

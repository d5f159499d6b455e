from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest

from runtimes.tensors import Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.v2 import (
    PLATFORMS,
    V2Request,
    v2_error_body,
    v2_model_metadata,
    v2_request_parse,
    v2_response_encode,
)

IRIS = Signature(inputs=[TensorSpec("x", "FP32", [-1, 4])], outputs=[TensorSpec("probs", "FP32", [-1, 3])])
MIXED = Signature(
    inputs=[
        TensorSpec("a", "FP32", [-1, 2]),
        TensorSpec("ids", "INT64", [-1]),
        TensorSpec("text", "BYTES", [-1]),
    ],
    outputs=[
        TensorSpec("probs", "FP32", [-1, 3]),
        TensorSpec("label", "INT64", [-1]),
        TensorSpec("name", "BYTES", [-1]),
    ],
)
NUMPY_DATATYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


# What tritonclient.http does, step by step (InferInput.set_data_from_numpy, _get_inference_request,
# InferResult.as_numpy), so the tests hold the server to the real client's bytes without installing it.


def serialize_byte_tensor(array: np.ndarray) -> bytes:
    parts = []
    for value in array.flatten(order="C"):
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def deserialize_bytes_tensor(raw: bytes) -> np.ndarray:
    values = []
    offset = 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        values.append(raw[offset : offset + length])
        offset += length
    return np.array(values, dtype=np.object_)


def triton_input(name: str, datatype: str, array: np.ndarray, binary_data: bool = True) -> tuple[dict[str, Any], bytes]:
    tensor: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
    if not binary_data:
        if datatype == "BYTES":
            tensor["data"] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.flatten()]
        else:
            tensor["data"] = [v.item() for v in array.flatten()]
        return tensor, b""
    raw = serialize_byte_tensor(array) if datatype == "BYTES" else array.tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return tensor, raw


def triton_request(
    inputs: list[tuple[dict[str, Any], bytes]],
    outputs: list[dict[str, Any]] | None = None,
    request_id: str = "",
) -> tuple[bytes, int | None]:
    request: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    if request_id != "":
        request["id"] = request_id
    request["inputs"] = [tensor for tensor, _raw in inputs]
    if outputs:
        request["outputs"] = outputs
    else:
        parameters["binary_data_output"] = True
    if parameters:
        request["parameters"] = parameters
    header = json.dumps(request, separators=(",", ":")).encode()
    raws = [raw for _tensor, raw in inputs if raw]
    if not raws:
        return header, None
    return b"".join([header, *raws]), len(header)


def triton_requested_output(name: str, binary_data: bool = True) -> dict[str, Any]:
    return {"name": name, "parameters": {"binary_data": binary_data}}


def infer_result(body: bytes, headers: dict[str, str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    length = headers.get("inference-header-content-length")
    if length is None:
        result = json.loads(body)
        buffer = b""
    else:
        result = json.loads(body[: int(length)])
        buffer = body[int(length) :]
    starts = {}
    index = 0
    for output in result["outputs"]:
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            starts[output["name"]] = index
            index += size
    arrays = {}
    for output in result["outputs"]:
        datatype = output["datatype"]
        size = output.get("parameters", {}).get("binary_data_size")
        if size is not None:
            chunk = buffer[starts[output["name"]] : starts[output["name"]] + size]
            if datatype == "BYTES":
                array = deserialize_bytes_tensor(chunk)
            else:
                array = np.frombuffer(chunk, dtype=NUMPY_DATATYPES[datatype])
        else:
            array = np.array(output["data"], dtype=NUMPY_DATATYPES[datatype])
        arrays[output["name"]] = array.reshape(output["shape"])
    return result, arrays


def refused(body: bytes, signature: Signature = IRIS, header_length: int | None = None) -> str:
    with pytest.raises(ProtocolError) as caught:
        v2_request_parse(body, signature, header_length)
    assert caught.value.status == 400
    return caught.value.message


def dumps(document: Any) -> bytes:
    return json.dumps(document).encode()


def x_input(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    tensor.update(overrides)
    return tensor


# Requests in JSON


def test_json_request_with_flat_data() -> None:
    body = dumps({"inputs": [x_input(shape=[2, 4], data=[1, 2, 3, 4, 5, 6, 7, 8.5])]})
    request = v2_request_parse(body, IRIS)
    assert request.id is None
    assert request.outputs == ["probs"]
    assert request.binary_outputs == set()
    assert request.parameters == {}
    x = request.inputs["x"]
    assert (x.dtype, x.shape) == (np.float32, (2, 4))
    assert x.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8.5]]


def test_json_request_with_nested_data() -> None:
    body = dumps({"inputs": [x_input(shape=[2, 4], data=[[1, 2, 3, 4], [5, 6, 7, 8]])]})
    x = v2_request_parse(body, IRIS).inputs["x"]
    assert (x.dtype, x.shape, x.ravel().tolist()) == (np.float32, (2, 4), [1, 2, 3, 4, 5, 6, 7, 8])


def test_json_request_with_every_kind_of_input_and_parameters() -> None:
    body = dumps(
        {
            "id": "req-7",
            "parameters": {"priority": 1},
            "inputs": [
                {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["héllo", "b"]},
                {"name": "ids", "shape": [2], "datatype": "INT64", "data": [7, -1]},
                {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [0.5, 1, 2, 3]},
            ],
        }
    )
    request = v2_request_parse(body, MIXED)
    assert request.id == "req-7"
    assert request.parameters == {"priority": 1}
    assert request.outputs == ["probs", "label", "name"]
    assert request.inputs["text"].tolist() == ["héllo".encode(), b"b"]
    assert (request.inputs["ids"].dtype, request.inputs["ids"].tolist()) == (np.int64, [7, -1])
    assert (request.inputs["a"].dtype, request.inputs["a"].shape) == (np.float32, (2, 2))


def test_nan_and_infinity_in_json_data() -> None:
    body = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[NaN,Infinity,-Infinity,1]}]}'
    x = v2_request_parse(body, IRIS).inputs["x"]
    assert math.isnan(x[0, 0]) and x[0, 1] == np.inf and x[0, 2] == -np.inf and x[0, 3] == 1


# Requests the way tritonclient sends them


def test_tritonclient_defaults_binary_inputs_and_binary_outputs() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body, header_length = triton_request([triton_input("x", "FP32", x)])
    assert header_length is not None
    request = v2_request_parse(body, IRIS, header_length)
    assert request.parameters == {"binary_data_output": True}
    assert request.outputs == ["probs"]
    assert request.binary_outputs == {"probs"}
    assert request.inputs["x"].dtype == np.float32
    assert np.array_equal(request.inputs["x"], x)


def test_tritonclient_binary_inputs_of_every_kind_in_input_order() -> None:
    a = np.array([[0.5, -1.5], [2.0, np.nan]], dtype=np.float32)
    ids = np.array([2**40, -3], dtype=np.int64)
    text = np.array([b"caf\xc3\xa9", b""], dtype=np.object_)
    body, header_length = triton_request(
        [triton_input("text", "BYTES", text), triton_input("ids", "INT64", ids), triton_input("a", "FP32", a)],
        outputs=[triton_requested_output("label", binary_data=False)],
        request_id="r1",
    )
    request = v2_request_parse(body, MIXED, header_length)
    assert request.id == "r1"
    assert request.outputs == ["label"]
    assert request.binary_outputs == set()
    assert request.inputs["text"].dtype == np.object_
    assert request.inputs["text"].tolist() == [b"caf\xc3\xa9", b""]
    assert (request.inputs["ids"].dtype, request.inputs["ids"].tolist()) == (np.int64, [2**40, -3])
    assert request.inputs["a"].dtype == np.float32
    assert np.array_equal(request.inputs["a"], a, equal_nan=True)


# A header seen before (same bytes, same signature) replays its decoding; everything else is decoded afresh


def test_a_repeated_binary_header_reads_each_bodys_own_tensors() -> None:
    first, second = (np.arange(8, dtype=np.float32).reshape(2, 4) + 100 * seed for seed in (1, 2))
    (body_1, length_1), (body_2, length_2) = (triton_request([triton_input("x", "FP32", x)]) for x in (first, second))
    assert body_1[:length_1] == body_2[:length_2]  # the same header: the second is replayed
    one, two = v2_request_parse(body_1, IRIS, length_1), v2_request_parse(body_2, IRIS, length_2)
    assert np.array_equal(one.inputs["x"], first) and np.array_equal(two.inputs["x"], second)
    assert (two.outputs, two.binary_outputs, two.parameters) == (["probs"], {"probs"}, {"binary_data_output": True})


def test_a_repeated_header_with_a_body_of_the_wrong_length_still_gets_the_precise_error() -> None:
    body, length = triton_request([triton_input("x", "FP32", np.ones((1, 4), np.float32))])
    assert length is not None
    v2_request_parse(body, IRIS, length)
    with pytest.raises(ProtocolError, match="binary_data_size 16 but only 12 bytes of binary data are left"):
        v2_request_parse(body[:-4], IRIS, length)
    with pytest.raises(ProtocolError, match="the body has 20 bytes after the JSON header but the inputs' "):
        v2_request_parse(body + b"\0" * 4, IRIS, length)


def test_a_header_checked_against_one_signature_is_checked_again_against_another() -> None:
    body, length = triton_request([triton_input("x", "FP32", np.ones((1, 4), np.float32))])
    v2_request_parse(body, IRIS, length)
    three_features = Signature(inputs=[TensorSpec("x", "FP32", [-1, 3])], outputs=IRIS.outputs)
    with pytest.raises(ProtocolError, match=r"input 'x' has shape \[1, 4\] but the model expects \[-1, 3\]"):
        v2_request_parse(body, three_features, length)


def test_binary_bytes_inputs_are_decoded_every_time() -> None:
    ids = np.array([1], dtype=np.int64)
    a = np.ones((1, 2), np.float32)
    texts = [np.array([b"ab"], dtype=np.object_), np.array([b"cd"], dtype=np.object_)]
    requests = [
        triton_request(
            [triton_input("a", "FP32", a), triton_input("ids", "INT64", ids), triton_input("text", "BYTES", t)]
        )
        for t in texts
    ]
    assert requests[0][0][: requests[0][1]] == requests[1][0][: requests[1][1]]  # same header, same sizes
    for (body, length), text in zip(requests, texts, strict=True):
        assert v2_request_parse(body, MIXED, length).inputs["text"].tolist() == text.tolist()


def test_binary_and_json_inputs_mix() -> None:
    ids = np.array([1, 2], dtype=np.int64)
    body, header_length = triton_request(
        [
            triton_input("a", "FP32", np.ones((2, 2), np.float32), binary_data=False),
            triton_input("ids", "INT64", ids),
            triton_input("text", "BYTES", np.array(["x", "y"], dtype=np.object_), binary_data=False),
        ]
    )
    request = v2_request_parse(body, MIXED, header_length)
    assert request.inputs["ids"].tolist() == [1, 2]
    assert request.inputs["a"].tolist() == [[1, 1], [1, 1]]
    assert request.inputs["text"].tolist() == [b"x", b"y"]


def test_tritonclient_json_inputs_without_binary() -> None:
    x = np.array([[1.5, 2, 3, 4]], dtype=np.float32)
    body, header_length = triton_request([triton_input("x", "FP32", x, binary_data=False)])
    assert header_length is None
    request = v2_request_parse(body, IRIS)
    assert request.binary_outputs == {"probs"}
    assert request.inputs["x"].tolist() == [[1.5, 2, 3, 4]]


def test_requested_outputs_keep_their_order_and_per_output_binary_wins() -> None:
    body = dumps(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [
                {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]},
                {"name": "ids", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["t"]},
            ],
            "outputs": [
                {"name": "name", "parameters": {"binary_data": False}},
                {"name": "probs"},
            ],
        }
    )
    request = v2_request_parse(body, MIXED)
    assert request.outputs == ["name", "probs"]
    assert request.binary_outputs == {"probs"}


def test_an_empty_outputs_list_means_every_output() -> None:
    request = v2_request_parse(dumps({"inputs": [x_input()], "outputs": []}), IRIS)
    assert (request.outputs, request.binary_outputs) == (["probs"], set())


# Responses


def request_for(outputs: list[str], binary: set[str] | None = None, request_id: str | None = None) -> V2Request:
    return V2Request(id=request_id, inputs={}, outputs=outputs, binary_outputs=binary or set(), parameters={})


def test_json_response_exact_bytes() -> None:
    body, headers = v2_response_encode(
        model_name="iris",
        model_version="3",
        request=request_for(["probs"], request_id="42"),
        outputs={"probs": np.array([[0.5, 0.25, 0.25]], dtype=np.float32)},
    )
    assert headers == {"content-type": "application/json"}
    assert body == (
        b'{"model_name":"iris","model_version":"3","id":"42",'
        b'"outputs":[{"name":"probs","datatype":"FP32","shape":[1,3],"data":[0.5,0.25,0.25]}]}'
    )


def test_the_id_is_omitted_when_the_request_had_none() -> None:
    body, _headers = v2_response_encode(
        model_name="iris",
        model_version="1",
        request=request_for(["probs"]),
        outputs={"probs": np.zeros((1, 3), np.float32)},
    )
    assert json.loads(body) == {
        "model_name": "iris",
        "model_version": "1",
        "outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 3], "data": [0.0, 0.0, 0.0]}],
    }


def test_json_response_only_has_the_requested_outputs_in_request_order() -> None:
    outputs: dict[str, np.ndarray] = {
        "probs": np.zeros((2, 3), np.float32),
        "label": np.array([1, 2], np.int64),
        "name": np.array(["cat", "dög"], dtype=object),
    }
    body, _headers = v2_response_encode(
        model_name="m", model_version="1", request=request_for(["name", "label"]), outputs=outputs
    )
    assert json.loads(body)["outputs"] == [
        {"name": "name", "datatype": "BYTES", "shape": [2], "data": ["cat", "dög"]},
        {"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 2]},
    ]


def test_json_response_datatypes_come_from_the_numpy_dtype() -> None:
    outputs: dict[str, np.ndarray] = {
        "f64": np.array([1.5], np.float64),
        "f16": np.array([0.5], np.float16),
        "flag": np.array([True, False]),
        "u8": np.array([[255]], np.uint8),
        "b": np.array([b"x"], dtype=object),
        "s": np.array(["y"]),
    }
    body, _headers = v2_response_encode(
        model_name="m", model_version="1", request=request_for(list(outputs)), outputs=outputs
    )
    assert json.loads(body)["outputs"] == [
        {"name": "f64", "datatype": "FP64", "shape": [1], "data": [1.5]},
        {"name": "f16", "datatype": "FP16", "shape": [1], "data": [0.5]},
        {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
        {"name": "u8", "datatype": "UINT8", "shape": [1, 1], "data": [255]},
        {"name": "b", "datatype": "BYTES", "shape": [1], "data": ["x"]},
        {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["y"]},
    ]


def test_nan_and_infinity_in_json_outputs() -> None:
    body, _headers = v2_response_encode(
        model_name="m",
        model_version="1",
        request=request_for(["probs"]),
        outputs={"probs": np.array([[np.nan, np.inf, -np.inf]], np.float32)},
    )
    assert b'"data":[NaN,Infinity,-Infinity]' in body
    _result, arrays = infer_result(body, {})
    assert np.isnan(arrays["probs"][0, 0]) and arrays["probs"][0, 1] == np.inf


def test_nan_in_a_binary_output_beside_a_json_one() -> None:
    # The binary output carries its NaN as raw bytes; the JSON header around it holds only finite numbers.
    outputs: dict[str, np.ndarray] = {"probs": np.array([[np.nan, 0.5]], np.float32), "label": np.array([1], np.int64)}
    body, headers = v2_response_encode(
        model_name="m", model_version="1", request=request_for(["probs", "label"], binary={"probs"}), outputs=outputs
    )
    _result, arrays = infer_result(body, headers)
    assert np.isnan(arrays["probs"][0, 0]) and arrays["probs"][0, 1] == 0.5
    assert arrays["label"].tolist() == [1]
    header = json.loads(body[: int(headers["inference-header-content-length"])])
    assert header["outputs"][1] == {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}


def test_binary_round_trip_reads_back_with_the_clients_reader() -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    body, header_length = triton_request([triton_input("x", "FP32", x)], request_id="abc")
    request = v2_request_parse(body, IRIS, header_length)
    probs = np.array([[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]], dtype=np.float32)

    response, headers = v2_response_encode(
        model_name="iris", model_version="2", request=request, outputs={"probs": probs}
    )
    header = json.dumps(
        {
            "model_name": "iris",
            "model_version": "2",
            "id": "abc",
            "outputs": [{"name": "probs", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}}],
        },
        separators=(",", ":"),
    ).encode()
    assert headers == {"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))}
    assert response == header + probs.tobytes()
    _result, arrays = infer_result(response, headers)
    assert arrays["probs"].dtype == np.float32
    assert np.array_equal(arrays["probs"], probs)


def test_binary_and_json_outputs_together_including_bytes() -> None:
    outputs: dict[str, np.ndarray] = {
        "probs": np.array([[0.5, 0.25, 0.25]], np.float32),
        "label": np.array([7], np.int64),
        "name": np.array([b"caf\xc3\xa9", "dog", b"\xff\x00"], dtype=object),
    }
    request = request_for(["name", "label", "probs"], binary={"name", "probs"})
    body, headers = v2_response_encode(model_name="m", model_version="1", request=request, outputs=outputs)
    result, arrays = infer_result(body, headers)
    assert result["outputs"] == [
        {"name": "name", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": 4 + 5 + 4 + 3 + 4 + 2}},
        {"name": "label", "datatype": "INT64", "shape": [1], "data": [7]},
        {"name": "probs", "datatype": "FP32", "shape": [1, 3], "parameters": {"binary_data_size": 12}},
    ]
    header_length = int(headers["inference-header-content-length"])
    assert body[header_length:] == (
        b"\x05\x00\x00\x00caf\xc3\xa9\x03\x00\x00\x00dog\x02\x00\x00\x00\xff\x00" + outputs["probs"].tobytes()
    )
    assert arrays["name"].tolist() == [b"caf\xc3\xa9", b"dog", b"\xff\x00"]
    assert arrays["label"].tolist() == [7]
    assert np.array_equal(arrays["probs"], outputs["probs"])


def test_binary_outputs_of_other_dtypes_read_back_exactly() -> None:
    outputs: dict[str, np.ndarray] = {
        "flag": np.array([[True, False, True]]),
        "half": np.array([0.5, -2.0], np.float16),
        "big": np.array([2**62, -1], np.int64),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "empty": np.zeros((0, 3), np.float32),
    }
    request = request_for(list(outputs), binary=set(outputs))
    body, headers = v2_response_encode(model_name="m", model_version="1", request=request, outputs=outputs)
    _result, arrays = infer_result(body, headers)
    for name, array in outputs.items():
        assert arrays[name].dtype == array.dtype, name
        assert np.array_equal(arrays[name], array), name


def test_non_utf8_bytes_cannot_go_in_a_json_output() -> None:
    with pytest.raises(ProtocolError) as caught:
        v2_response_encode(
            model_name="m",
            model_version="1",
            request=request_for(["name"]),
            outputs={"name": np.array([b"\xff"], dtype=object)},
        )
    assert caught.value.status == 400
    assert caught.value.message == (
        "output 'name' holds bytes that are not valid UTF-8, which JSON cannot carry; "
        "request it as binary data (parameters.binary_data: true)"
    )


def test_an_output_the_model_did_not_return_is_a_server_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        v2_response_encode(model_name="m", model_version="1", request=request_for(["probs"]), outputs={})
    assert (caught.value.status, caught.value.message) == (500, "the model returned no output 'probs'")


def test_an_output_dtype_v2_cannot_carry_is_a_server_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        v2_response_encode(model_name="m", model_version="1", request=request_for(["c"]), outputs={"c": np.array([1j])})
    assert (caught.value.status, caught.value.message) == (
        500,
        "output 'c' has numpy dtype complex128, which V2 cannot carry",
    )


# Metadata and errors


def test_model_metadata() -> None:
    assert v2_model_metadata(name="mixed", versions=["1", "2"], platform="onnx", signature=MIXED) == {
        "name": "mixed",
        "versions": ["1", "2"],
        "platform": "onnx_onnxv1",
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "ids", "datatype": "INT64", "shape": [-1]},
            {"name": "text", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "probs", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "label", "datatype": "INT64", "shape": [-1]},
            {"name": "name", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def test_platforms_and_platform_names_pass_through() -> None:
    assert PLATFORMS == {"onnx": "onnx_onnxv1", "tflite": "tflite_tflite"}
    assert v2_model_metadata(name="m", versions=[], platform="tflite", signature=IRIS)["platform"] == "tflite_tflite"
    assert v2_model_metadata(name="m", versions=[], platform="onnx_onnxv1", signature=IRIS)["platform"] == "onnx_onnxv1"


def test_error_body() -> None:
    assert v2_error_body('bad "x"') == b'{"error": "bad \\"x\\""}'
    assert json.loads(v2_error_body("nope")) == {"error": "nope"}


# Refused requests, each with its message


def test_malformed_json() -> None:
    assert refused(b"nope") == "the request body is not valid JSON: Expecting value: line 1 column 1 (char 0)"
    assert refused(b'{"inputs": [') == "the request body is not valid JSON: Expecting value: line 1 column 13 (char 12)"


def test_body_that_is_not_an_object() -> None:
    assert refused(b"[]") == "the request body must be a JSON object"


def test_inputs_missing_or_not_a_list() -> None:
    assert refused(dumps({})) == "the request has no 'inputs'"
    assert refused(dumps({"inputs": {"x": 1}})) == "'inputs' must be a list of tensors"


def test_an_empty_inputs_list_misses_the_models_input() -> None:
    assert refused(dumps({"inputs": []})) == "missing input 'x'; the model expects: x"


def test_an_input_that_is_not_an_object() -> None:
    assert refused(dumps({"inputs": ["x"]})) == "inputs[0] must be an object"


def test_an_input_without_a_name() -> None:
    tensor = x_input()
    del tensor["name"]
    assert refused(dumps({"inputs": [tensor]})) == "inputs[0] has no 'name'"
    assert refused(dumps({"inputs": [x_input(name=3)]})) == "inputs[0] has a 'name' that is not a string: 3"


def test_an_unknown_input() -> None:
    assert refused(dumps({"inputs": [x_input(name="y")]})) == "unexpected input 'y'; the model expects: x"


def test_an_input_given_twice() -> None:
    assert refused(dumps({"inputs": [x_input(), x_input()]})) == "input 'x' appears more than once"


def test_an_input_without_a_datatype() -> None:
    tensor = x_input()
    del tensor["datatype"]
    assert refused(dumps({"inputs": [tensor]})) == "input 'x' has no 'datatype'"


@pytest.mark.parametrize("datatype", ["FP64", "BF16", "float32"])
def test_a_datatype_other_than_the_models(datatype: str) -> None:
    message = refused(dumps({"inputs": [x_input(datatype=datatype)]}))
    assert message == f"input 'x' has datatype {datatype} but the model expects FP32"


def test_an_input_without_a_shape() -> None:
    tensor = x_input()
    del tensor["shape"]
    assert refused(dumps({"inputs": [tensor]})) == "input 'x' has no 'shape'"


@pytest.mark.parametrize(("shape", "shown"), [([-1, 4], "[-1, 4]"), ("1,4", '"1,4"'), ([1.0, 4], "[1.0, 4]")])
def test_an_invalid_shape(shape: Any, shown: str) -> None:
    message = refused(dumps({"inputs": [x_input(shape=shape)]}))
    assert message == f"input 'x' has an invalid shape {shown}; it must be a list of non-negative integers"


def test_an_input_without_data() -> None:
    tensor = x_input()
    del tensor["data"]
    assert refused(dumps({"inputs": [tensor]})) == "input 'x' has no 'data' (nor parameters.binary_data_size)"


def test_data_that_does_not_fill_the_shape() -> None:
    message = refused(dumps({"inputs": [x_input(shape=[2, 4])]}))
    assert message == "input 'x' has shape [2, 4] (8 elements) but its data holds 4 elements"


def test_data_of_the_wrong_type() -> None:
    message = refused(dumps({"inputs": [x_input(data=[1, 2, "three", 4])]}))
    assert message == "input 'x' expects FP32 numbers but got \"three\""


def test_a_shape_the_model_does_not_take() -> None:
    message = refused(dumps({"inputs": [x_input(shape=[1, 3], data=[1, 2, 3])]}))
    assert message == "input 'x' has shape [1, 3] but the model expects [-1, 4]"


def test_inputs_with_different_batch_sizes() -> None:
    body = dumps(
        {
            "inputs": [
                {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                {"name": "ids", "shape": [1], "datatype": "INT64", "data": [1]},
                {"name": "text", "shape": [2], "datatype": "BYTES", "data": ["p", "q"]},
            ]
        }
    )
    assert refused(body, MIXED) == "inputs disagree on the batch size (first dim): 'a' has 2, 'ids' has 1, 'text' has 2"


def test_request_id_and_parameters_must_have_their_types() -> None:
    assert refused(dumps({"id": 42, "inputs": [x_input()]})) == "'id' must be a string, not 42"
    assert refused(dumps({"parameters": [], "inputs": [x_input()]})) == "'parameters' of the request must be an object"
    message = refused(dumps({"inputs": [x_input(parameters="p")]}))
    assert message == "'parameters' of input 'x' must be an object"


def test_shared_memory_inputs_are_refused() -> None:
    tensor = x_input(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 16})
    del tensor["data"]
    assert refused(dumps({"inputs": [tensor]})) == (
        "input 'x' asks for shared memory (parameters.shared_memory_region), which this server does not support; "
        "send the data in the request"
    )


# Refused binary requests


def binary_x(size: int, header_extra: dict[str, Any] | None = None) -> tuple[bytes, int]:
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": size}}
    header = dumps({"inputs": [tensor], **(header_extra or {})})
    return header, len(header)


def test_binary_data_size_without_the_header_length() -> None:
    header, length = binary_x(16)
    assert refused(header + bytes(16)) == (
        f"the request body is not valid JSON: Extra data: line 1 column {length + 1} (char {length}); "
        "a body with binary tensor data needs the Inference-Header-Content-Length header"
    )
    assert refused(header) == (
        "input 'x' has parameters.binary_data_size but the request has no Inference-Header-Content-Length header"
    )


def test_header_length_beyond_the_body() -> None:
    assert refused(b"{}", header_length=3) == "Inference-Header-Content-Length is 3 but the request body has 2 bytes"
    assert refused(b"{}", header_length=-1) == "Inference-Header-Content-Length is -1 but the request body has 2 bytes"


def test_both_data_and_binary_data_size() -> None:
    tensor = x_input(parameters={"binary_data_size": 16})
    header = dumps({"inputs": [tensor]})
    message = refused(header + bytes(16), header_length=len(header))
    assert message == "input 'x' has both 'data' and parameters.binary_data_size; send one of them"


@pytest.mark.parametrize(("size", "shown"), [(-4, "-4"), ("16", '"16"'), (16.0, "16.0")])
def test_an_invalid_binary_data_size(size: Any, shown: str) -> None:
    header, length = binary_x(size)
    message = refused(header + bytes(16), header_length=length)
    assert message == f"input 'x' has parameters.binary_data_size {shown}; it must be a non-negative integer"


def test_binary_data_size_past_the_end_of_the_body() -> None:
    header, length = binary_x(16)
    message = refused(header + bytes(12), header_length=length)
    assert (
        message == "input 'x' has parameters.binary_data_size 16 but only 12 bytes of binary data are left in the body"
    )


def test_binary_data_sizes_that_leave_bytes_over() -> None:
    header, length = binary_x(16)
    message = refused(header + bytes(20), header_length=length)
    assert message == (
        "the body has 20 bytes after the JSON header but the inputs' parameters.binary_data_size add up to 16"
    )


def test_binary_data_size_that_does_not_match_the_shape() -> None:
    tensor = {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}
    header = dumps({"inputs": [tensor]})
    message = refused(header + bytes(16), header_length=len(header))
    assert message == "input 'x' has shape [2, 4] of FP32 (32 bytes) but parameters.binary_data_size is 16"


def bytes_request(raw: bytes, shape: list[int]) -> tuple[bytes, int]:
    signature_inputs = [
        {"name": "text", "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}},
        {"name": "a", "shape": [shape[0], 2], "datatype": "FP32", "data": [0] * (2 * shape[0])},
        {"name": "ids", "shape": [shape[0]], "datatype": "INT64", "data": [0] * shape[0]},
    ]
    header = dumps({"inputs": signature_inputs})
    return header + raw, len(header)


def test_binary_bytes_elements_that_are_cut_short() -> None:
    body, length = bytes_request(b"\x05\x00\x00\x00abc", [1])
    assert refused(body, MIXED, length) == (
        "the binary data of BYTES input 'text' is cut short: element 0 says 5 bytes but only 3 are left "
        "in its binary_data_size"
    )
    body, length = bytes_request(b"\x01\x00\x00\x00a\x01\x00", [2])
    assert refused(body, MIXED, length) == (
        "the binary data of BYTES input 'text' is cut short: element 1 has no complete 4-byte length prefix"
    )


def test_binary_bytes_with_another_element_count_than_the_shape() -> None:
    body, length = bytes_request(serialize_byte_tensor(np.array([b"a", b"b", b"c"], dtype=object)), [2])
    assert (
        refused(body, MIXED, length) == "input 'text' has shape [2] (2 elements) but its binary data holds 3 elements"
    )


def test_empty_binary_tensors() -> None:
    tensor = {"name": "x", "shape": [0, 4], "datatype": "FP32", "parameters": {"binary_data_size": 0}}
    header = dumps({"inputs": [tensor]})
    x = v2_request_parse(header, IRIS, len(header)).inputs["x"]
    assert (x.dtype, x.shape) == (np.float32, (0, 4))


# Refused outputs


def with_outputs(outputs: Any, **extra: Any) -> bytes:
    return dumps({"inputs": [x_input()], "outputs": outputs, **extra})


def test_an_unknown_requested_output() -> None:
    assert refused(with_outputs([{"name": "logits"}])) == "unexpected output 'logits'; the model's outputs are: probs"


def test_outputs_that_are_not_a_list_of_named_objects() -> None:
    assert refused(with_outputs({"name": "probs"})) == "'outputs' must be a list of requested outputs"
    assert refused(with_outputs(["probs"])) == "outputs[0] must be an object"
    assert refused(with_outputs([{"parameters": {}}])) == "outputs[0] has no 'name'"


def test_an_output_requested_twice() -> None:
    assert refused(with_outputs([{"name": "probs"}, {"name": "probs"}])) == "output 'probs' is requested more than once"


def test_classification_and_shared_memory_outputs_are_refused() -> None:
    assert refused(with_outputs([{"name": "probs", "parameters": {"classification": 2}}])) == (
        "output 'probs' asks for classification (parameters.classification), which this server does not support"
    )
    assert refused(with_outputs([{"name": "probs", "parameters": {"shared_memory_region": "r"}}])) == (
        "output 'probs' asks for shared memory (parameters.shared_memory_region), which this server does not support"
    )


def test_binary_flags_must_be_booleans() -> None:
    assert refused(with_outputs([{"name": "probs", "parameters": {"binary_data": "yes"}}])) == (
        "parameters.binary_data of output 'probs' must be true or false, not \"yes\""
    )
    assert refused(dumps({"inputs": [x_input()], "parameters": {"binary_data_output": 1}})) == (
        "parameters.binary_data_output must be true or false, not 1"
    )


def test_json_nested_beyond_the_parsers_limit() -> None:
    body = b'{"inputs":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert refused(body) == "the request body nests JSON too deeply"


def test_a_boolean_among_the_numbers_of_json_data_is_refused() -> None:
    tensor = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1.5, True, 2, 3]}
    body = json.dumps({"inputs": [tensor]}).encode()
    assert refused(body) == "input 'x' expects FP32 numbers but got true"
    # In the JSON header of a request with binary data too.
    ids = {"name": "ids", "shape": [1], "datatype": "INT64", "data": [False]}
    a = {"name": "a", "shape": [1, 2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}
    text = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["x"]}
    header = json.dumps({"inputs": [a, ids, text]}).encode()
    assert refused(header + np.ones(2, np.float32).tobytes(), MIXED, len(header)) == (
        "input 'ids' expects INT64 integers but got false"
    )

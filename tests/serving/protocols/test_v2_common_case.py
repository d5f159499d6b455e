"""The V2 JSON common case (one floating-point input, `data` as numbers) is decoded on a short way: it must accept
exactly what the general parser accepts, with the same arrays, and hand everything else over unchanged."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from runtimes.tensors import Signature, TensorSpec
from serving.protocols import v2
from serving.protocols.errors import ProtocolError
from serving.protocols.tensors import json_body
from serving.protocols.v2 import V2Request, v2_request_parse

IRIS = Signature(
    inputs=[TensorSpec("x", "FP32", [-1, 4])],
    outputs=[TensorSpec("label", "INT64", [-1]), TensorSpec("probs", "FP32", [-1, 3])],
)
HALF = Signature(inputs=[TensorSpec("x", "FP16", [-1, 2])], outputs=[TensorSpec("y", "FP16", [-1])])
DOUBLE = Signature(inputs=[TensorSpec("x", "FP64", [2, -1])], outputs=[TensorSpec("y", "FP64", [-1])])
INTEGER = Signature(inputs=[TensorSpec("x", "INT64", [-1, 2])], outputs=[TensorSpec("y", "INT64", [-1])])
TWO_INPUTS = Signature(
    inputs=[TensorSpec("x", "FP32", [-1, 2]), TensorSpec("z", "FP32", [-1, 2])], outputs=[TensorSpec("y", "FP32", [-1])]
)


def one_input(data: Any, shape: Any = None, **item: Any) -> dict[str, Any]:
    entry = {"name": "x", "shape": [1, 4] if shape is None else shape, "datatype": "FP32", "data": data}
    return {"inputs": [{**entry, **item}]}


def general(body: bytes, signature: Signature) -> V2Request:
    """What the general parser makes of a body (the way every body went before the short way)."""
    with json_body(body):
        return v2._v2_request_parse(body, signature, None)[0]


def outcome(parse: Any, body: bytes, signature: Signature) -> tuple[str, Any]:
    try:
        request = parse(body, signature)
    except ProtocolError as exc:
        return "refused", (exc.status, exc.message, exc.headers)
    arrays = {name: (array.dtype.str, array.shape, array.tobytes()) for name, array in request.inputs.items()}
    return "accepted", (request.id, arrays, request.outputs, request.binary_outputs, request.parameters)


def taken(body: bytes, signature: Signature) -> bool:
    """Whether the short way decodes the body itself."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return v2._one_float_input(document, body, signature) is not None


COMMON: list[tuple[Signature, Any]] = [
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2])),
    (IRIS, one_input([[5.1, 3.5, 1.4, 0.2], [6, 2.9, 4.5, 1.5]], shape=[2, 4])),  # nested rows, integers among them
    (IRIS, one_input([5, 3, 1, 0])),  # integers only
    (IRIS, {**one_input([5.1, 3.5, 1.4, 0.2]), "id": "req-1"}),
    (IRIS, one_input([], shape=[0, 4])),
    (IRIS, one_input([3.4e38, -3.4e38, 1e-50, -0.0])),  # the largest FP32 values, an underflow to zero
    (IRIS, one_input([5.1, 3.5, 1.4, 2**70])),  # orjson reads an integer beyond 64 bits as a double, either way
    (DOUBLE, {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP64", "data": [1e300, -1e-300]}]}),
]

HANDED_OVER: list[tuple[Signature, Any]] = [
    (IRIS, one_input([5.1, 3.5, True, 0.2])),  # a JSON boolean among numbers: refused, naming it
    (IRIS, {**one_input([5.1, 3.5, 1.4, 0.2]), "id": "true"}),  # `true` elsewhere in the body: cannot skip the look
    (IRIS, one_input([3.5e38, 1.0, 1.0, 1.0])),  # too large for FP32: refused, naming the value
    (HALF, {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP16", "data": [65504.0, 0.5]}]}),
    (HALF, {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP16", "data": [70000.0, 0.5]}]}),
    (IRIS, one_input([3.4028235e38, 1.0, 1.0, 1.0])),  # above FP32's largest, yet rounds to it: left to numpy
    (IRIS, one_input([5.1, 3.5, 1.4])),  # 3 elements for 4
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], shape=[4])),  # the wrong rank
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], shape=[2, 2])),  # a fixed dimension that differs
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], shape=[1, -4])),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], shape=[1.0, 4])),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], shape="1,4")),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], shape=[True, 4])),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], datatype="FP64")),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], name="y")),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], name=3)),
    (IRIS, one_input(["5.1", 3.5, 1.4, 0.2])),
    (IRIS, one_input([None, 3.5, 1.4, 0.2])),
    (IRIS, one_input([[5.1, 3.5], [1.4]], shape=[1, 4])),  # ragged
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], parameters={})),
    (IRIS, one_input([5.1, 3.5, 1.4, 0.2], parameters={"binary_data_size": 16})),
    (IRIS, {**one_input([5.1, 3.5, 1.4, 0.2]), "id": 7}),
    (IRIS, {**one_input([5.1, 3.5, 1.4, 0.2]), "outputs": [{"name": "probs"}]}),
    (IRIS, {**one_input([5.1, 3.5, 1.4, 0.2]), "parameters": {"binary_data_output": True}}),
    (IRIS, {**one_input([5.1, 3.5, 1.4, 0.2]), "unknown": 1}),
    (IRIS, {"inputs": [one_input([5.1, 3.5, 1.4, 0.2])["inputs"][0]] * 2}),
    (IRIS, {"inputs": []}),
    (IRIS, {"inputs": "x"}),
    (IRIS, {"input": one_input([5.1, 3.5, 1.4, 0.2])["inputs"]}),
    (IRIS, [1, 2]),
    (INTEGER, {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}),
    (TWO_INPUTS, {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}]}),
]


def body_of(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(("signature", "document"), COMMON)
def test_the_common_case_takes_the_short_way_and_decodes_as_the_general_parser(
    signature: Signature, document: Any
) -> None:
    body = body_of(document)
    assert taken(body, signature)
    got = outcome(v2_request_parse, body, signature)
    assert got[0] == "accepted"
    assert got == outcome(general, body, signature)


@pytest.mark.parametrize(("signature", "document"), HANDED_OVER)
def test_anything_else_is_handed_to_the_general_parser_and_answered_as_before(
    signature: Signature, document: Any
) -> None:
    body = body_of(document)
    assert not taken(body, signature)
    assert outcome(v2_request_parse, body, signature) == outcome(general, body, signature)


@pytest.mark.filterwarnings("error")  # the short way never lets numpy warn of an overflow
@pytest.mark.parametrize(("signature", "document"), COMMON + HANDED_OVER)
def test_neither_way_warns(signature: Signature, document: Any) -> None:
    outcome(v2_request_parse, body_of(document), signature)


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [NaN, Infinity, 1, 2]}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1e400, 1, 2, 3]}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]} trailing',
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}',
        b"\xff",
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_bodies_orjson_refuses_are_decided_by_json_as_before(body: bytes) -> None:
    assert outcome(v2_request_parse, body, IRIS) == outcome(general, body, IRIS)


def test_the_short_way_gives_the_request_its_own_containers() -> None:
    body = body_of(one_input([5.1, 3.5, 1.4, 0.2]))
    first, second = v2_request_parse(body, IRIS), v2_request_parse(body, IRIS)
    assert first.outputs == ["label", "probs"] and first.binary_outputs == set() and first.parameters == {}
    assert first.outputs is not second.outputs and first.parameters is not second.parameters
    assert first.inputs["x"].dtype == np.float32 and first.inputs["x"].flags.writeable

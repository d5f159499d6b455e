"""JSON writing on the hot path: orjson's bytes where they equal the standard library's, `json` where NaN or Infinity
must survive (orjson would write `null`)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
import pytest

from serving.protocols.jsonio import json_dumps


def standard(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "values",
    [
        [0.5, 1.0, -2.25],
        [float("nan"), 1.0],
        [float("inf"), 1.0],
        [-float("inf")],
    ],
)
def test_nan_and_infinity_are_written_as_json_writes_them(values: list[float]) -> None:
    array = np.array(values, dtype=np.float32)
    document = {"outputs": [{"data": array.tolist()}]}
    assert json_dumps(document, [array]) == standard(document)


def test_a_null_that_is_no_number_keeps_orjsons_bytes() -> None:
    array = np.array([0.5], dtype=np.float32)
    document = {"id": None, "outputs": [{"name": "null", "data": array.tolist()}]}
    assert json_dumps(document, [array]) == orjson.dumps(document) == standard(document)


def test_nan_among_nulls_is_still_found() -> None:
    finite, nan = np.array([1.0]), np.array([np.nan])
    document = {"id": None, "a": finite.tolist(), "b": nan.tolist()}
    assert json_dumps(document, [finite, nan]) == b'{"id":null,"a":[1.0],"b":[NaN]}'


def test_what_orjson_cannot_write_fails_or_falls_back_as_before() -> None:
    finite, nan = np.array([1.0]), np.array([np.nan])
    with pytest.raises(orjson.JSONEncodeError):
        json_dumps({1: finite.tolist()}, [finite])  # orjson refuses a key that is not a string
    assert json_dumps({1: nan.tolist()}, [nan]) == b'{"1":[NaN]}'  # NaN to keep: `json` wrote it, and still does

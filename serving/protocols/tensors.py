"""Turn JSON tensor data into typed numpy arrays and check a request's tensors against the model's signature."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from runtimes.tensors import DATATYPE_TO_NUMPY, Signature, TensorSpec
from serving.protocols.errors import ProtocolError

_NOTHING = object()
_PREVIEW_CHARS = 60
# numpy's object-array machinery stops at 32 dimensions (ndarray itself at 64).
MAX_RANK = 32
# A declared dimension beyond int32: numpy cannot describe some such shapes even with no elements ("array is too
# big"), and no model served here takes one.
MAX_DIM = 2**31 - 1


def shape_text(shape: Iterable[int]) -> str:
    """Write a shape the way the error messages show it: `[-1, 4]`."""
    return "[" + ", ".join(str(int(dim)) for dim in shape) + "]"


def json_preview(value: Any) -> str:
    """Show a (possibly large) JSON value in an error message, cut short."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _PREVIEW_CHARS else text[: _PREVIEW_CHARS - 3] + "..."


def names_text(specs: Sequence[TensorSpec]) -> str:
    """List tensor names for an error message: `a, b`."""
    return ", ".join(spec.name for spec in specs)


def input_spec(signature: Signature, name: str) -> TensorSpec:
    """Return the signature's input called `name`, or refuse the request naming the inputs the model has."""
    for spec in signature.inputs:
        if spec.name == name:
            return spec
    raise ProtocolError(f"unexpected input '{name}'; the model expects: {names_text(signature.inputs)}")


def is_b64_object(value: Any) -> bool:
    """Tell whether a JSON value is a TF Serving binary value: an object whose only key is "b64"."""
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


# Whether the JSON being decoded can hold booleans at all. Numbers among which a `true` hides are only found by
# looking at every element, which costs more than the rest of decoding a tensor: the protocols' parsers say, per
# request body, whether `true` or `false` appears in it anywhere (nearly never for numeric tensors), and the look is
# skipped when neither does. Unknown (a direct call): always look.
_booleans_possible: ContextVar[bool] = ContextVar("json_booleans_possible", default=True)


class json_body:
    """Around decoding a JSON request body: lets tensor_from_data skip the per-element boolean check when `true`
    and `false` appear nowhere in `body`."""

    def __init__(self, body: bytes) -> None:
        self.possible = json_booleans_possible(body)

    def __enter__(self) -> None:
        self._token = _booleans_possible.set(self.possible)

    def __exit__(self, *exc: object) -> None:
        _booleans_possible.reset(self._token)


def json_booleans_possible(body: bytes) -> bool:
    """Whether a JSON body may hold `true` or `false` anywhere (False: it surely holds neither)."""
    return _may_contain(body, b"true") or _may_contain(body, b"false")


# Up to this size `word in body` is quicker than the calls of the loop below (which wins by far on a long body).
_SHORT_BODY = 512


def _may_contain(body: bytes, word: bytes, tries: int = 64) -> bool:
    """Whether `word` may be in `body`: a memchr for its first letter, then a compare, which is ten times quicker
    than `word in body` for a body of numbers; a body with too many of that letter is taken to (the safe answer)."""
    if len(body) <= _SHORT_BODY:
        return word in body
    first = word[:1]
    at = body.find(first)
    for _ in range(tries):
        if at == -1:
            return False
        if body.startswith(word, at):
            return True
        at = body.find(first, at + 1)
    return at != -1


def tensor_from_data(spec: TensorSpec, data: Any, shape: list[int] | None = None) -> np.ndarray:
    """Turn JSON data (a scalar, flat or nested lists) into an array of the spec's dtype, shaped as `shape` if given."""
    dtype = np.dtype(DATATYPE_TO_NUMPY[spec.datatype])
    depth = _nesting_depth(data)
    if depth > MAX_RANK:
        raise ProtocolError(f"input '{spec.name}' nests lists {depth} deep, but a tensor has at most {MAX_RANK} dims")
    array = _bytes_array(spec, data) if dtype.kind == "O" else _numeric_array(spec, data, dtype)
    if shape is not None:
        count = math.prod(shape)
        if array.size != count:
            raise ProtocolError(
                f"input '{spec.name}' has shape {shape_text(shape)} ({count} elements) "
                f"but its data holds {array.size} elements"
            )
        array = array.reshape(shape)
    return array


def _nesting_depth(data: Any) -> int:
    """Count the list levels along the first elements: the rank the data claims, in O(rank)."""
    depth = 0
    while isinstance(data, list) and data:
        data = data[0]
        depth += 1
    return depth


def _numeric_array(spec: TensorSpec, data: Any, dtype: np.dtype) -> np.ndarray:
    # Let numpy infer the JSON's own type first: converting straight to the target dtype would silently
    # turn "1.5" into 1.5, null into NaN and true into 1.0.
    try:
        inferred = np.asarray(data)
    except ValueError:
        # Inhomogeneous nesting: a wrong-typed element (an object among rows) explains it better than "ragged".
        raise _unfit_element(spec, data, dtype) or _ragged(spec) from None
    kind = inferred.dtype.kind
    if inferred.size == 0 and kind in "biuf":
        # `[]` infers float64; an empty tensor has no element that could be of the wrong type.
        return inferred.astype(dtype)
    target = dtype.kind
    # numpy reads true/false among numbers as 1/0 ([1.5, true] infers float64): JSON booleans are not numbers.
    if (
        kind in "iuf"
        and target in "iuf"
        and _booleans_possible.get()
        and (unfit := _unfit_element(spec, data, dtype)) is not None
    ):
        raise unfit
    if target == "f" and kind in "iuf":
        try:
            with np.errstate(over="raise"):
                return inferred.astype(dtype, copy=False)
        except FloatingPointError:
            pass  # a finite number too large for FP16/FP32: found and named below
    elif target in "iu" and kind in "iu":
        info = np.iinfo(dtype)
        if inferred.dtype == dtype or (int(inferred.min()) >= info.min and int(inferred.max()) <= info.max):
            return inferred.astype(dtype, copy=False)
    elif target == "b" and kind == "b":
        return inferred
    return _slow_numeric_array(spec, data, dtype)


def _slow_numeric_array(spec: TensorSpec, data: Any, dtype: np.dtype) -> np.ndarray:
    """Find the element that makes the data unfit and name it; convert mixed data that turns out fine."""
    error = _unfit_element(spec, data, dtype)
    if error is None:
        # Every element is fine, but numpy's own inference went astray: [1.5, 2**70] infers object and
        # [0, 2**64 - 1] infers float64. Converting the Python numbers straight to the target is exact.
        try:
            with np.errstate(over="raise"):
                return np.array(data, dtype=dtype)
        except (TypeError, ValueError, OverflowError, FloatingPointError):
            raise ProtocolError(f"input '{spec.name}' holds values that do not fit {spec.datatype}") from None
    raise error


def _unfit_element(spec: TensorSpec, data: Any, dtype: np.dtype) -> ProtocolError | None:
    """Name the first element the datatype does not take, if there is one."""
    accept, expected = _element_rule(spec, dtype)
    leaf = _first_unaccepted(data, accept)
    if leaf is _NOTHING:
        return None
    return ProtocolError(f"input '{spec.name}' expects {expected(leaf)} but got {json_preview(leaf)}")


def _element_rule(spec: TensorSpec, dtype: np.dtype) -> tuple[Callable[[Any], bool], Callable[[Any], str]]:
    """Say which JSON elements a datatype accepts, and how to describe what it expects given a refused element."""
    datatype = spec.datatype
    if dtype.kind == "f":
        largest = float(np.finfo(dtype).max)

        def accept_number(value: Any) -> bool:
            kind = type(value)
            if kind is float:
                return not math.isfinite(value) or abs(value) <= largest
            return kind is int and abs(value) <= largest

        def expect_number(value: Any) -> str:
            if type(value) in (int, float):
                return f"{datatype} numbers within ±{largest:.6g}"
            return f"{datatype} numbers"

        return accept_number, expect_number
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lowest, highest = int(info.min), int(info.max)

        def accept_integer(value: Any) -> bool:
            return type(value) is int and lowest <= value <= highest

        def expect_integer(value: Any) -> str:
            if type(value) is int:
                return f"{datatype} integers in [{lowest}, {highest}]"
            return f"{datatype} integers"

        return accept_integer, expect_integer

    def accept_bool(value: Any) -> bool:
        return type(value) is bool

    return accept_bool, lambda _value: "BOOL values (true or false)"


def _first_unaccepted(data: Any, accept: Callable[[Any], bool]) -> Any:
    """Return the first leaf of nested lists that `accept` refuses, or _NOTHING."""
    # An explicit stack, not recursion: JSON may nest as deep as the parser's own recursion limit.
    stack = [iter([data])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not accept(item):
                return item
        else:
            stack.pop()
    return _NOTHING


def _bytes_array(spec: TensorSpec, data: Any) -> np.ndarray:
    try:
        raw = np.array(data, dtype=object)
    except ValueError:
        raise _ragged(spec) from None
    encoded = [_bytes_element(spec, value) for value in raw.flat]
    array = np.empty(len(encoded), dtype=object)
    array[:] = encoded
    return array.reshape(raw.shape)


def _bytes_element(spec: TensorSpec, value: Any) -> bytes:
    if type(value) is str:
        return value.encode("utf-8")
    if is_b64_object(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"input '{spec.name}' has invalid base64 in {{\"b64\": ...}}: {exc}") from None
    if isinstance(value, list):
        # np.array(dtype=object) keeps the rows of ragged nesting as list elements.
        raise _ragged(spec)
    raise ProtocolError(
        f"input '{spec.name}' expects BYTES strings (or {{\"b64\": ...}} objects) but got {json_preview(value)}"
    )


def _ragged(spec: TensorSpec) -> ProtocolError:
    return ProtocolError(
        f"input '{spec.name}' has ragged nested lists: every list at the same depth must have the same length"
    )


def inputs_check(signature: Signature, inputs: dict[str, np.ndarray]) -> None:
    """Refuse inputs that do not match the signature exactly: names, datatypes, ranks, fixed dims, shared batch size."""
    checks = signature.input_checks
    if len(inputs) != len(checks) or any(name not in checks for name in inputs):
        expected = names_text(signature.inputs)
        for name in inputs:
            if name not in checks:
                raise ProtocolError(f"unexpected input '{name}'; the model expects: {expected}")
        for spec in signature.inputs:
            if spec.name not in inputs:
                raise ProtocolError(f"missing input '{spec.name}'; the model expects: {expected}")
    batches: list[tuple[str, int]] = []
    for spec, dtype, fixed in checks.values():
        array = inputs[spec.name]
        if array.dtype != dtype:
            raise ProtocolError(
                f"input '{spec.name}' has numpy dtype {array.dtype} but the model expects {spec.datatype} ({dtype})"
            )
        shape = array.shape
        if len(shape) != len(spec.shape) or any(shape[axis] != dim for axis, dim in fixed):
            got, want = shape_text(shape), shape_text(spec.shape)
            raise ProtocolError(f"input '{spec.name}' has shape {got} but the model expects {want}")
        if spec.shape and spec.shape[0] == -1:
            batches.append((spec.name, shape[0]))
    if len(batches) > 1 and len({size for _name, size in batches}) > 1:
        sizes = ", ".join(f"'{name}' has {size}" for name, size in batches)
        raise ProtocolError(f"inputs disagree on the batch size (first dim): {sizes}")

"""MLflow scoring server (`POST /invocations`) request and response shapes."""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from runtimes.tensors import Signature, TensorSpec
from serving.protocols.errors import ProtocolError
from serving.protocols.jsonio import json_dumps, json_loads
from serving.protocols.tensors import inputs_check, json_body, names_text, shape_text, tensor_from_data
from serving.protocols.tfserving import tfserving_inputs_parse, tfserving_instances_parse

DATAFRAME_SPLIT = "dataframe_split"
DATAFRAME_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
FORMATS = (DATAFRAME_SPLIT, DATAFRAME_RECORDS, INSTANCES, INPUTS)

REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "{'dataframe_split', 'dataframe_records', 'instances', 'inputs'}"
)
PROTOCOL_CHANGE_NOTE = (
    "IMPORTANT: The MLflow Model scoring protocol has changed in MLflow version 2.0; "
    "MLflow 1.x request bodies (a bare pandas DataFrame in JSON) are no longer accepted."
)
CONTENT_TYPES = "application/json, text/csv"
_COMPACT = (",", ":")


def mlflow_request_parse(body: bytes, content_type: str | None, signature: Signature) -> dict[str, np.ndarray]:
    """Decode an /invocations body (JSON in one of MLflow's four shapes, or CSV) into the model's input tensors."""
    read = _csv_inputs if mlflow_content_kind(content_type) == "csv" else _json_inputs
    with json_body(body):
        inputs = read(body, signature)
    inputs_check(signature, inputs)
    return inputs


def mlflow_content_kind(content_type: str | None) -> str:
    """Return "json" or "csv", or refuse the content type with 415 as MLflow does."""
    if content_type is None:
        raise ProtocolError(
            f"This predictor only supports the following content types: {CONTENT_TYPES}. Got no Content-Type.",
            status=415,
        )
    mime, *pairs = (part.strip() for part in content_type.split(";"))
    parameters = {}
    for pair in pairs:
        if pair:
            key, _, value = pair.partition("=")
            parameters[key.strip().lower()] = value.strip().strip('"')
    if parameters.pop("charset", "utf-8").lower() != "utf-8":
        raise ProtocolError("The scoring server only supports UTF-8", status=415)
    if parameters:
        raise ProtocolError(f"Unrecognized content type parameters: {', '.join(parameters)}", status=415)
    mime = mime.lower()
    if mime == "application/json":
        return "json"
    if mime == "text/csv":
        return "csv"
    raise ProtocolError(
        f"This predictor only supports the following content types: {CONTENT_TYPES}. Got '{content_type}'.",
        status=415,
    )


def _json_inputs(body: bytes, signature: Signature) -> dict[str, np.ndarray]:
    try:
        document = json_loads(body)
    except RecursionError:
        raise ProtocolError("Failed to parse input from JSON: the request body nests too deeply") from None
    except ValueError as exc:
        raise ProtocolError(
            f"Failed to parse input from JSON. Ensure that input is a valid JSON formatted string. Error: '{exc}'"
        ) from None
    if isinstance(document, list):
        raise ProtocolError(f"{REQUIRED_INPUT_FORMAT}. Received a list. {PROTOCOL_CHANGE_NOTE}")
    if not isinstance(document, dict):
        raise ProtocolError(f"{REQUIRED_INPUT_FORMAT}. Received unexpected input type '{type(document).__name__}'.")
    # Like MLflow, keys other than the four formats (e.g. "params") are left alone.
    present = [key for key in document if key in FORMATS]
    if len(present) != 1:
        raise ProtocolError(
            f"{REQUIRED_INPUT_FORMAT}. Received dictionary with input fields: {list(document)}. {PROTOCOL_CHANGE_NOTE}"
        )
    key = present[0]
    value = document[key]
    if key == DATAFRAME_SPLIT:
        return _split_inputs(value, signature)
    if key == DATAFRAME_RECORDS:
        return _records_inputs(value, signature)
    if key == INSTANCES:
        return tfserving_instances_parse(value, signature)
    return tfserving_inputs_parse(value, signature)


def _split_inputs(value: Any, signature: Signature) -> dict[str, np.ndarray]:
    if not isinstance(value, dict):
        raise ProtocolError("dataframe_split must be an object with 'columns' and 'data' (pandas 'split' orient)")
    rows = value.get("data")
    if not isinstance(rows, list):
        raise ProtocolError("dataframe_split has no 'data' list of rows")
    columns = value.get("columns")
    if columns is not None and not (isinstance(columns, list) and all(isinstance(c, str) for c in columns)):
        raise ProtocolError("dataframe_split 'columns' must be a list of column names")
    return _frame_inputs(columns, rows, DATAFRAME_SPLIT, signature)


def _records_inputs(value: Any, signature: Signature) -> dict[str, np.ndarray]:
    if not isinstance(value, list):
        raise ProtocolError("dataframe_records must be a list of objects (pandas 'records' orient)")
    if not value:
        raise ProtocolError("dataframe_records holds no records")
    if not isinstance(value[0], dict):
        raise ProtocolError("dataframe_records[0] must be an object mapping column names to values")
    columns = list(value[0])
    keys = value[0].keys()
    for index, record in enumerate(value):
        if not isinstance(record, dict):
            raise ProtocolError(f"dataframe_records[{index}] must be an object mapping column names to values")
        if record.keys() != keys:
            raise ProtocolError(
                f"dataframe_records[{index}] has columns {json.dumps(list(record))} "
                f"but dataframe_records[0] has {json.dumps(columns)}"
            )
    rows = [[record[column] for column in columns] for record in value]
    return _frame_inputs(columns, rows, DATAFRAME_RECORDS, signature)


def _frame_inputs(
    columns: list[str] | None,
    rows: list[Any],
    where: str,
    signature: Signature,
    cell: Callable[[TensorSpec, Any], Any] | None = None,
) -> dict[str, np.ndarray]:
    """Map a table to inputs: one column per input, or the columns as the rows of a single [N, k] input."""
    specs = {spec.name: spec for spec in signature.inputs}
    if columns is not None and len(set(columns)) == len(columns) and set(columns) == specs.keys():
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                held = f"{len(row)} values" if isinstance(row, list) else "a single value"
                raise ProtocolError(f"{where} row {index} has {held} but there are {len(columns)} columns")
        inputs = {}
        for position, name in enumerate(columns):
            spec = specs[name]
            values = [row[position] for row in rows]
            if cell is not None:
                values = [cell(spec, value) for value in values]
            array = tensor_from_data(spec, values)
            if array.ndim == 1 and len(spec.shape) == 2 and spec.shape[1] == 1:
                # A column of scalars for a [N, 1] input (a DataFrame-fitted scikit-learn model takes one per column).
                array = array.reshape(-1, 1)
            inputs[name] = array
        return inputs

    width = len(columns) if columns is not None else _row_width(rows)
    single = signature.inputs[0] if len(signature.inputs) == 1 else None
    if single is not None and len(single.shape) == 2 and single.shape[1] != -1 and single.shape[1] == width:
        if cell is not None:
            rows = [[cell(single, value) for value in row] for row in rows]
        array = tensor_from_data(single, rows)
        if array.ndim != 2 or array.shape[1] != width:
            raise ProtocolError(
                f"{where} has {width} columns but its rows make a tensor of shape {shape_text(array.shape)}"
            )
        return {single.name: array}

    shown = json.dumps(columns) if columns is not None else f"({width or 0} unnamed)"
    if single is not None and len(single.shape) == 2 and single.shape[1] != -1:
        raise ProtocolError(
            f"{where} columns {shown} do not match the model's input: send one column named '{single.name}', "
            f"or {single.shape[1]} columns that form the rows of '{single.name}' (shape {shape_text(single.shape)})"
        )
    raise ProtocolError(
        f"{where} columns {shown} do not match the model's inputs; "
        f"send one column per input: {names_text(signature.inputs)}"
    )


def _row_width(rows: list[Any]) -> int | None:
    if rows and isinstance(rows[0], list):
        return len(rows[0])
    return None


def _csv_inputs(body: bytes, signature: Signature) -> dict[str, np.ndarray]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the CSV body is not valid UTF-8: {exc}") from None
    try:
        table = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise ProtocolError(f"the CSV body cannot be parsed: {exc}") from None
    if not table:
        raise ProtocolError("the CSV body is empty; it needs a header row of column names")
    header, *rows = table
    if header[0] == "":
        # pandas' DataFrame.to_csv() writes the index as a first column with an empty name.
        header = header[1:]
        rows = [row[1:] for row in rows]
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise ProtocolError(f"CSV row {index + 1} has {len(row)} values but the header names {len(header)} columns")
    return _frame_inputs(header, rows, "the CSV body", signature, cell=_csv_cell)


def _csv_cell(spec: TensorSpec, text: str) -> Any:
    """Read a CSV cell as the JSON value the input's datatype takes; leave it a string when it is not one."""
    if spec.datatype == "BYTES":
        return text
    stripped = text.strip()
    if spec.datatype == "BOOL":
        return {"true": True, "false": False}.get(stripped.lower(), text)
    if stripped == "":
        return math.nan  # pandas reads an empty cell as NaN
    if "_" in stripped:
        return text  # int() and float() accept "1_000"; a CSV reader does not
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        return text


def mlflow_response_encode(outputs: dict[str, np.ndarray]) -> bytes:
    """Encode `{"predictions": rows}` for one output, `{"predictions": {name: rows}}` for several."""
    values = {name: _jsonable(np.asarray(array)) for name, array in outputs.items()}
    predictions = next(iter(values.values())) if len(values) == 1 else values
    return json_dumps({"predictions": predictions}, (np.asarray(array) for array in outputs.values()))


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype.kind not in "OS":
        return array.tolist()
    converted = np.empty(array.size, dtype=object)
    converted[:] = [_string_value(value) for value in array.ravel().tolist()]
    return converted.reshape(array.shape).tolist()


def _string_value(value: Any) -> str:
    # MLflow's NumpyEncoder writes bytes as base64 text.
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value if isinstance(value, str) else str(value)


def mlflow_error_body(message: str, error_code: str = "BAD_REQUEST") -> bytes:
    """Encode an error the MLflow way: `{"error_code": ..., "message": ...}`."""
    return json.dumps({"error_code": error_code, "message": message}).encode()

"""Turn a prediction request file into an Open Inference Protocol infer body."""

from __future__ import annotations

from typing import Any

from modeldeck.errors import Invalid


def infer_body_build(document: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """Pass an OIP body (`{"inputs": [...]}`) through; convert named arrays (`{"x": [[...]]}`) to one.

    Named arrays take each input's datatype from the endpoint's metadata and their shape from the nesting.
    """
    if isinstance(document, dict) and isinstance(document.get("inputs"), list):
        return document
    if not isinstance(document, dict) or not document:
        raise Invalid(
            'The request must be an Open Inference Protocol body {"inputs": [...]} or named arrays '
            '{"input_name": [[...], ...]}.',
            code="invalid_request",
        )
    specs = {spec["name"]: spec for spec in metadata.get("inputs", [])}
    unknown = sorted(name for name in document if name not in specs)
    if unknown:
        raise Invalid(
            f"The endpoint has no input named {', '.join(map(repr, unknown))}; its inputs are "
            f"{', '.join(map(repr, specs)) or 'not listed'}.",
            code="unknown_input",
            detail={"unknown": unknown, "inputs": list(specs)},
        )
    inputs = []
    for name, value in document.items():
        shape, data = _flatten(name, value)
        inputs.append({"name": name, "shape": shape, "datatype": specs[name]["datatype"], "data": data})
    return {"inputs": inputs}


def _flatten(name: str, value: Any) -> tuple[list[int], list[Any]]:
    if not isinstance(value, list):
        return [1], [value]
    shape: list[int] = []
    level: list[Any] = [value]
    while level and all(isinstance(item, list) for item in level):
        lengths = {len(item) for item in level}
        if len(lengths) != 1:
            raise Invalid(f"Input {name!r} is not rectangular: rows of lengths {sorted(lengths)}.", code="ragged")
        shape.append(lengths.pop())
        level = [element for item in level for element in item]
    if any(isinstance(item, list) for item in level):
        raise Invalid(f"Input {name!r} mixes numbers and lists at the same depth.", code="ragged")
    return shape, level

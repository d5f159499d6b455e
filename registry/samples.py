"""Sample inputs kept with a version: a `.npz` of named arrays, or JSON (named nested lists or OIP inputs)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from registry.formats.archive import check_zip
from registry.formats.base import ModelFileError
from runtimes.tensors import Signature

# name -> shape of each array in a sample
SampleSummary = dict[str, list[int]]


def sample_summarize(path: Path, filename: str) -> SampleSummary:
    """Read a sample file safely (no pickle) and return the shape of each named input, or raise."""
    if zipfile.is_zipfile(path):
        check_zip(path)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {name: list(arrays[name].shape) for name in arrays.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise ModelFileError("invalid_sample", f"'{filename}' is not a readable .npz of arrays: {exc}") from exc
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError("invalid_sample", f"'{filename}' is neither an .npz file nor valid JSON: {exc}") from exc
    return _summarize_json(data, filename)


def _summarize_json(data: Any, filename: str) -> SampleSummary:
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        # Open Inference Protocol request shape: {"inputs": [{"name", "shape", "datatype", "data"}]}
        summary = {}
        for item in data["inputs"]:
            if not isinstance(item, dict) or "name" not in item or "shape" not in item:
                raise ModelFileError("invalid_sample", f"'{filename}': each of 'inputs' needs a name and a shape.")
            summary[str(item["name"])] = [int(d) for d in item["shape"]]
        return summary
    if isinstance(data, dict) and data:
        summary = {}
        for name, value in data.items():
            not_rectangular = ModelFileError(
                "invalid_sample", f"'{filename}': input '{name}' is not a rectangular array."
            )
            try:
                array = np.asarray(value)
            except ValueError as exc:
                raise not_rectangular from exc
            if array.dtype == object:
                raise not_rectangular
            summary[str(name)] = list(array.shape)
        return summary
    raise ModelFileError(
        "invalid_sample",
        f"'{filename}': expected a JSON object of named arrays, e.g. "
        '{"x": [[0.1, 0.2]]}, or an Open Inference Protocol {"inputs": [...]}.',
    )


def sample_check(summary: SampleSummary, signature: Signature) -> str | None:
    """Return why a sample does not fit the signature (names and fixed dimensions), or None when it fits."""
    expected = {spec.name: spec.shape for spec in signature.inputs}
    missing = sorted(set(expected) - set(summary))
    unknown = sorted(set(summary) - set(expected))
    if missing or unknown:
        return f"The sample's inputs {sorted(summary)} do not match the model's inputs {sorted(expected)}."
    for name, shape in summary.items():
        want = expected[name]
        if len(shape) != len(want) or any(w not in (-1, s) for w, s in zip(want, shape, strict=True)):
            return f"Sample input '{name}' has shape {shape}; the model expects {want} (-1 = any)."
    return None

"""Whether a version keeps an endpoint's contract: its inputs and outputs against the primary's.

Callers build requests from the endpoint's inputs and read answers by its output names, datatypes and shapes (Triton
and KServe clients, TF Serving's `predictions`, MLflow's columns), so a release that changes them breaks callers
even when the model is "better". Compatible means: the same input and output names and datatypes; each input's shape
of the same rank, each dimension equal or, where the primary's is fixed, dynamic (-1: it accepts every request the
primary accepts); each output's shape equal (a fixed dimension turning dynamic changes what callers receive).
"""

from __future__ import annotations

from typing import Any

from registry.formats.base import signature_differences as _signature_differences
from registry.formats.base import tensor_text
from runtimes.tensors import Signature

# What each difference says about one tensor.
MISSING = "missing"  # the primary has it, the version does not
ADDED = "added"  # the version has it, the primary does not
DATATYPE = "datatype"
SHAPE = "shape"
RELEASE_SIDES = ("primary", "version")

__all__ = ["difference_text", "signature_differences", "tensor_text"]


def signature_differences(primary: Signature, candidate: Signature) -> list[dict[str, Any]]:
    """List how `candidate` breaks the contract of `primary` (registry.formats.base's rule, sides named for releases).

    Each difference is `{"tensor": "input"|"output", "name", "problem", "primary", "version"}`.
    """
    return _signature_differences(primary, candidate, sides=RELEASE_SIDES)


def difference_text(difference: dict[str, Any]) -> str:
    """One difference in words, e.g. "output 'label' (INT64 [-1]) is missing"."""
    what = f"{difference['tensor']} '{difference['name']}'"
    problem = difference["problem"]
    if problem == MISSING:
        return f"{what} ({tensor_text(difference['primary'])}) is missing"
    if problem == ADDED:
        return f"{what} ({tensor_text(difference['version'])}) is added"
    return (
        f"{what} has {problem} {tensor_text(difference['version'])} where the primary's has "
        f"{tensor_text(difference['primary'])}"
    )

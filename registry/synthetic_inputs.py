"""Seeded synthetic inputs that fit a signature: what the parity check and the benchmark child run models on.

A module below both: in services/parity.py it would make the benchmark child, which the selectors import for its
served formats, import the services that import the selectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from registry.formats.base import ConversionError
from runtimes.tensors import DATATYPE_TO_NUMPY, Signature

# A dynamic dimension after the batch one (a sequence length, an image side) gets this size in synthetic inputs:
# big enough for small convolution kernels and pooling, small enough to stay fast.
SYNTHETIC_INNER_DIM = 8
# Integer inputs are often indices (token ids, categories), so synthetic ones stay below the smallest sane vocabulary.
SYNTHETIC_INT_HIGH = 10


def synthesize_inputs(
    signature: Signature, *, seed: int = 0, rows: int = 16, categories: dict[str, list[Any]] | None = None
) -> dict[str, np.ndarray]:
    """Make seeded random inputs that fit the signature: rows in the batch, normal floats, small integers.

    An input with known `categories` (the columns a scikit-learn encoder was fitted on) takes values among them.
    """
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        known = (categories or {}).get(spec.name)
        if known:
            shape = tuple(rows if dim < 0 else dim for dim in spec.shape)
            picks = rng.integers(0, len(known), size=shape)
            inputs[spec.name] = np.asarray(known, dtype=DATATYPE_TO_NUMPY[spec.datatype])[picks]
            continue
        if spec.datatype == "BYTES":
            raise ConversionError(
                "parity_unsupported_input",
                f"The input '{spec.name}' takes strings, which ModelDeck cannot make up; save a sample input "
                "with the version to check parity on it.",
                {"input": spec.name},
            )
        shape = tuple(
            dim if dim >= 0 else (rows if axis == 0 else SYNTHETIC_INNER_DIM) for axis, dim in enumerate(spec.shape)
        )
        dtype = np.dtype(DATATYPE_TO_NUMPY[spec.datatype])
        if dtype.kind == "f":
            inputs[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            inputs[spec.name] = rng.integers(0, SYNTHETIC_INT_HIGH, size=shape).astype(dtype)
        else:
            inputs[spec.name] = rng.random(shape) < 0.5
    return inputs

"""The model zoo: models made by each framework's own documented recipe, built once and cached between runs.

Each `ZooModel` says how its framework's docs make it (`recipe`), writes the file a user would upload (`build`),
and records the framework's own answer on a batch of inputs, which every served version must give back over every
protocol. Building needs TensorFlow, scikit-learn or torch, so builds are cached on disk (keyed by the builder's
source and the framework versions): a second run of the suite only reads files.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

# Bump to rebuild every cached model (a change of the cache layout, not of a builder: those key themselves).
CACHE_LAYOUT = 1
_PACKAGES = ("tensorflow-cpu", "keras", "scikit-learn", "skl2onnx", "skops", "tf2onnx", "onnx", "numpy", "torch")


@dataclass
class Built:
    """A built model: the file to upload, a batch of inputs by name, and the framework's own outputs by name."""

    path: Path
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo and what ModelDeck must do with it."""

    name: str  # also the endpoint name prefix: lowercase, dashes
    framework: str  # "keras", "tensorflow", "tflite", "sklearn", "onnx", "torch"
    recipe: str  # how the framework's docs make it, in one line (the README table shows it)
    filename: str  # the name it is uploaded under
    build: Callable[[Path], Built]  # writes `filename` into the folder given and returns what it built
    served: tuple[str, ...] = ("onnx",)  # the formats of the versions that must serve it ("tflite" = as uploaded)
    atol: float = 1e-4  # float outputs: |served - framework| <= atol + rtol * |framework|
    rtol: float = 1e-4
    refused: str = ""  # a refusal: the upload or its inspection fails with a message containing this
    # Automatic conversions that must fail, by target, with a message containing the text given (a converter limit).
    failed_conversions: tuple[tuple[str, str], ...] = ()
    # Quantizations of its served ONNX version that must fail, with a message containing the text given.
    failed_quantizations: tuple[tuple[str, str], ...] = ()
    notes: str = ""  # what a client must know (quantized inputs, strings), for the README table
    protocols: tuple[str, ...] = ("v2-json", "v2-binary", "tfserving", "mlflow")


def cache_root() -> Path:
    """Where built models are kept between runs: $MODELDECK_ZOO_CACHE, else the user's cache folder."""
    configured = os.environ.get("MODELDECK_ZOO_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "modeldeck-zoo"


def _versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    return versions


def cache_key(model: ZooModel) -> str:
    """A key that changes when the builder's code, its module or a framework version changes."""
    module = inspect.getmodule(model.build)
    source = inspect.getsource(module) if module is not None else inspect.getsource(model.build)
    # A builder module names the other files its models come from (a script run in another interpreter, the pins of
    # that interpreter) in CACHE_SOURCES: their text is part of the key too.
    extra = [Path(p).read_text() if Path(p).exists() else "" for p in getattr(module, "CACHE_SOURCES", ())]
    material = json.dumps([CACHE_LAYOUT, model.name, model.filename, source, extra, _versions()], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:20]


def built(model: ZooModel) -> Built:
    """The model's file and expected answers, built now or read from the cache."""
    folder = cache_root() / f"{model.name}-{cache_key(model)}"
    arrays = folder / "expected.npz"
    if not arrays.exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".building-") as tmp:
            staging = Path(tmp) / "model"
            staging.mkdir()
            result = model.build(staging)
            assert result.path == staging / model.filename, f"{model.name} must write {model.filename}"
            arrays_by_key: dict[str, Any] = {f"in:{k}": _storable(v) for k, v in result.inputs.items()}
            arrays_by_key |= {f"out:{k}": _storable(v) for k, v in result.outputs.items()}
            np.savez(staging / "expected.npz", **arrays_by_key)
            for leftover in list(staging.iterdir()):
                if leftover.name not in (model.filename, "expected.npz"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            try:
                staging.rename(folder)  # atomic: a concurrent run either sees the whole folder or none
            except OSError:
                if not arrays.exists():
                    raise
    with np.load(arrays, allow_pickle=False) as npz:
        inputs = {k[3:]: _restored(npz[k]) for k in npz.files if k.startswith("in:")}
        outputs = {k[4:]: _restored(npz[k]) for k in npz.files if k.startswith("out:")}
    return Built(path=folder / model.filename, inputs=inputs, outputs=outputs)


def _storable(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    # Strings are kept as fixed-width unicode: .npz never holds object arrays (they would need pickle).
    return array.astype(str) if array.dtype == object else array


def _restored(array: np.ndarray) -> np.ndarray:
    return array.astype(object) if array.dtype.kind in "US" else array

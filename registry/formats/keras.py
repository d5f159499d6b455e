"""Keras models: Keras 3 `.keras` zips and legacy HDF5 files, inspected in a worker with Keras in safe mode."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from registry.formats.archive import check_zip, is_zip, json_objects, zip_json, zip_names
from registry.formats.base import Inspection, ModelFileError, error_summary
from runtimes.tensors import NUMPY_TO_DATATYPE, Signature, TensorSpec

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 allows a user block before the superblock, so the signature may sit at any of these offsets.
HDF5_OFFSETS = (0, 512, 1024, 2048)
KERAS_V3_MEMBERS = frozenset({"config.json", "metadata.json"})
UNSAFE_KERAS_MESSAGE = (
    "The Keras model contains a Lambda layer or other Python code that would run when it is loaded, so ModelDeck "
    "refuses it. Replace Lambda layers with built-in or registered custom layers and save it again."
)


class KerasFormat:
    """Keras: a Keras 3 zip (config.json + metadata.json) or an HDF5 file holding a Keras model config."""

    name = "keras"
    label = "Keras"
    extensions: tuple[str, ...] = (".keras", ".h5", ".hdf5")
    needs_worker = True

    def sniff(self, path: Path) -> bool:
        """Tell whether the file is a Keras 3 zip or an HDF5 file (by its signature)."""
        return _container(path) is not None

    def inspect(self, path: Path) -> Inspection:
        """Load the model in safe mode and read its inputs and outputs."""
        container = _container(path)
        if container is None:
            raise ModelFileError("invalid_keras", "The file is neither a Keras 3 .keras archive nor an HDF5 file.")
        if container == "keras_v3":
            check_zip(path)
            version = _keras_v3_version(path)
        else:
            version = _h5_keras_version(path)
        model = _load(path, container)
        try:
            model_inputs, model_outputs = list(model.inputs), list(model.outputs)
        except (AttributeError, ValueError, TypeError) as exc:
            raise ModelFileError(
                "invalid_keras",
                "The Keras model has no defined inputs and outputs; build it with keras.Input before saving.",
            ) from exc
        inputs = [_tensor_spec(tensor.name, tensor.shape, tensor.dtype, "input") for tensor in model_inputs]
        # Keras output tensor names (keras_tensor_N) change from one load to the next, so outputs get stable names.
        outputs = [
            _tensor_spec(f"output_{i}", tensor.shape, tensor.dtype, "output") for i, tensor in enumerate(model_outputs)
        ]
        if not version:
            import keras

            version = keras.__version__
        return Inspection(
            signature=Signature(inputs=inputs, outputs=outputs),
            framework="keras",
            framework_version=version,
            metadata={"container": container},
        )


def precheck(path: Path) -> None:
    """Refuse, in the request, a .keras archive whose config holds a Python lambda (code that would run on load).

    Reads config.json only (no TensorFlow in the web process); the worker loads the model in safe mode and refuses
    every other kind of unsafe content. HDF5 files are left to the worker.
    """
    if _container(path) != "keras_v3":
        return
    config = zip_json(path, "config.json", "invalid_keras", ".keras archive")
    if any(item.get("class_name") == "__lambda__" for item in json_objects(config)):
        raise ModelFileError("unsafe_keras_model", UNSAFE_KERAS_MESSAGE, {"reason": "a Python lambda"})


def load_model(path: Path) -> Any:
    """Load a stored Keras file (any name, either container) in safe mode, refusing what inspect refuses."""
    container = _container(path)
    if container is None:
        raise ModelFileError("invalid_keras", "The file is neither a Keras 3 .keras archive nor an HDF5 file.")
    if container == "keras_v3":
        check_zip(path)
    return _load(path, container)


def model_arguments(model: Any, inputs: dict[str, Any]) -> Any:
    """Arrange named inputs in the structure the model was built with (one tensor, a list or a dict)."""
    import keras

    model_inputs = list(model.inputs)
    if len(model_inputs) == 1:
        # A Sequential model reloaded from a file raises on `model.input` ("has never been called") until it is
        # called; `model.inputs` works for every kind (TOOLCHAIN G13), and one input is always one tensor.
        return inputs[model_inputs[0].name]
    # Keras accepts other structures too, but warns on every call that they do not match.
    return keras.tree.map_structure(lambda tensor: inputs[tensor.name], model.input)


def _container(path: Path) -> str | None:
    if is_zip(path):
        return "keras_v3" if set(zip_names(path)) >= KERAS_V3_MEMBERS else None
    try:
        with path.open("rb") as f:
            head = f.read(max(HDF5_OFFSETS) + len(HDF5_SIGNATURE))
    except OSError:
        return None
    if any(head[at : at + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for at in HDF5_OFFSETS):
        return "h5"
    return None


def _keras_v3_version(path: Path) -> str:
    metadata = zip_json(path, "metadata.json", "invalid_keras", ".keras archive")
    version = metadata.get("keras_version", "") if isinstance(metadata, dict) else ""
    return version if isinstance(version, str) else ""


def _h5_keras_version(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "model_config" not in f.attrs:
                raise ModelFileError("invalid_keras", "The file is an HDF5 file without a Keras model in it.")
            version = f.attrs.get("keras_version", "")
    except (OSError, ValueError) as exc:
        raise ModelFileError("invalid_keras", f"The HDF5 file cannot be read: {error_summary(exc)}.") from exc
    return version.decode() if isinstance(version, bytes) else str(version)


def _load(path: Path, container: str) -> Any:
    import keras

    suffix = ".keras" if container == "keras_v3" else ".h5"
    with tempfile.TemporaryDirectory(prefix="modeldeck-keras-") as tmp:
        # Keras picks its loader from the file name, and stored artifacts keep no extension.
        named = Path(tmp) / f"model{suffix}"
        os.symlink(path.resolve(), named)
        try:
            return keras.saving.load_model(named, compile=False, safe_mode=True)
        except Exception as exc:
            # Keras raises bare ValueError/TypeError/KeyError (and h5py OSError) for every kind of bad file.
            reason = error_summary(exc)
            missing_class = re.search(r"Could not locate (?:class|function) '([^']+)'", str(exc))
            if missing_class:
                raise ModelFileError(
                    "keras_custom_code",
                    f"The Keras file needs '{missing_class.group(1)}', which is your own code (a subclassed "
                    "keras.Model, a custom layer or function), and a model file does not carry code ModelDeck could "
                    "load. Export the model with model.export('exported') (a TensorFlow SavedModel, which holds the "
                    "traced computation) and upload the folder zipped, or build it from built-in layers.",
                    {"class": missing_class.group(1)},
                ) from exc
            if "safe_mode" in str(exc) or "unsafe" in str(exc).lower():
                raise ModelFileError("unsafe_keras_model", UNSAFE_KERAS_MESSAGE, {"reason": reason}) from exc
            raise ModelFileError(
                "invalid_keras", f"The Keras model could not be loaded: {reason}.", {"reason": reason}
            ) from exc


def _tensor_spec(name: str, shape: Any, dtype: Any, role: str) -> TensorSpec:
    dtype_name = getattr(dtype, "name", None) or str(dtype)
    datatype = "BYTES" if dtype_name == "string" else NUMPY_TO_DATATYPE.get(dtype_name)
    if datatype is None:
        raise ModelFileError(
            "unsupported_datatype",
            f"The Keras {role} '{name}' has dtype {dtype_name}, which the Open Inference Protocol cannot carry.",
            {"tensor": name, "dtype": dtype_name},
        )
    return TensorSpec(name=name, datatype=datatype, shape=[-1 if dim is None else int(dim) for dim in shape])


FORMAT = KerasFormat()

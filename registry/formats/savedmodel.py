"""TensorFlow SavedModels: a zipped SavedModel folder, inspected in a worker with TensorFlow."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from registry.formats.archive import check_zip, is_zip, safe_extract, zip_names
from registry.formats.base import Inspection, ModelFileError, error_summary
from runtimes.tensors import NUMPY_TO_DATATYPE, Signature, TensorSpec

SAVED_MODEL_FILE = "saved_model.pb"
SIGNATURE_KEY = "serving_default"
# Folders that archivers add beside the content (Finder's resource forks), ignored when finding the one top folder.
_ARCHIVER_FOLDERS = frozenset({"__MACOSX"})


class SavedModelFormat:
    """TensorFlow SavedModel: a zip with saved_model.pb at its top or inside its single top folder."""

    name = "savedmodel"
    label = "TensorFlow SavedModel"
    extensions: tuple[str, ...] = (".zip",)
    needs_worker = True

    def sniff(self, path: Path) -> bool:
        """Tell whether the file is a zip holding a SavedModel folder."""
        return is_zip(path) and model_folder(zip_names(path)) is not None

    def inspect(self, path: Path) -> Inspection:
        """Extract the archive safely, load the SavedModel and read its serving_default signature."""
        import tensorflow as tf

        with tempfile.TemporaryDirectory(prefix="modeldeck-savedmodel-") as tmp:
            model_dir = extract_model(path, Path(tmp))
            try:
                loaded = tf.saved_model.load(str(model_dir))
            except Exception as exc:
                # TensorFlow reports bad SavedModels through many types (OpError, ValueError, DecodeError, ...).
                raise ModelFileError(
                    "invalid_savedmodel", f"The SavedModel could not be loaded: {error_summary(exc)}."
                ) from exc
            signatures = dict(loaded.signatures)
            if SIGNATURE_KEY not in signatures:
                names = ", ".join(f"'{key}'" for key in signatures) or "none"
                raise ModelFileError(
                    "savedmodel_no_serving_default",
                    f"The SavedModel has no '{SIGNATURE_KEY}' signature (it has: {names}); export it with "
                    "model.export(dir) or tf.saved_model.save(model, dir, signatures={'serving_default': fn}).",
                    {"signatures": list(signatures)},
                )
            function = signatures[SIGNATURE_KEY]
            args, kwargs = function.structured_input_signature
            inputs = [_tensor_spec(spec.name or f"input_{i}", spec, "input") for i, spec in enumerate(args)]
            # Sorted: TensorFlow's order for named inputs and outputs depends on the process's hash seed, and a
            # signature must read the same in every worker.
            inputs += [_tensor_spec(name, spec, "input") for name, spec in sorted(kwargs.items())]
            structured = function.structured_outputs
            if isinstance(structured, dict):
                outputs = [_tensor_spec(name, spec, "output") for name, spec in sorted(structured.items())]
            else:
                flat = tf.nest.flatten(structured)
                outputs = [_tensor_spec(f"output_{i}", spec, "output") for i, spec in enumerate(flat)]
            version = _saved_with_version(model_dir) or tf.__version__
        return Inspection(
            signature=Signature(inputs=inputs, outputs=outputs),
            framework="tensorflow",
            framework_version=version,
            metadata={"signature_key": SIGNATURE_KEY},
        )


def extract_model(path: Path, dest: Path) -> Path:
    """Extract the archive safely into dest and return the SavedModel folder inside it."""
    folder = model_folder([info.filename for info in check_zip(path)])
    if folder is None:
        raise ModelFileError(
            "invalid_savedmodel",
            f"The archive has no {SAVED_MODEL_FILE} at its top or inside a single top folder.",
        )
    safe_extract(path, dest)
    return dest / folder


def model_folder(names: list[str]) -> str | None:
    """Return the folder inside the archive that holds saved_model.pb ("" for the top), or None."""
    if SAVED_MODEL_FILE in names:
        return ""
    tops = {name.split("/", 1)[0] for name in names if name} - _ARCHIVER_FOLDERS
    if len(tops) == 1:
        (top,) = tops
        if f"{top}/{SAVED_MODEL_FILE}" in names:
            return top
    return None


def _saved_with_version(model_dir: Path) -> str:
    """Return the TensorFlow version that wrote the SavedModel, as its meta graph records it."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString((model_dir / SAVED_MODEL_FILE).read_bytes())
    except (DecodeError, OSError):
        return ""
    return str(saved_model.meta_graphs[0].meta_info_def.tensorflow_version) if saved_model.meta_graphs else ""


def _tensor_spec(name: str, spec: Any, role: str) -> TensorSpec:
    dtype_name = spec.dtype.name
    datatype = "BYTES" if dtype_name == "string" else NUMPY_TO_DATATYPE.get(dtype_name)
    if datatype is None:
        raise ModelFileError(
            "unsupported_datatype",
            f"The SavedModel {role} '{name}' has dtype {dtype_name}, which the Open Inference Protocol cannot carry.",
            {"tensor": name, "dtype": dtype_name},
        )
    if spec.shape.rank is None:
        raise ModelFileError(
            "unknown_shape",
            f"The SavedModel {role} '{name}' declares no shape, not even its rank; export it with an input "
            "signature that gives shapes.",
            {"tensor": name},
        )
    return TensorSpec(
        name=name, datatype=datatype, shape=[-1 if dim is None else int(dim) for dim in spec.shape.as_list()]
    )


FORMAT = SavedModelFormat()

"""scikit-learn models saved with skops: a zip with schema.json, loaded in a worker with a strict type allow-list."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from registry.formats.archive import check_zip, is_zip, json_objects, zip_json, zip_names
from registry.formats.base import Inspection, ModelFileError, error_summary
from runtimes.tensors import Signature, TensorSpec

SCHEMA_FILE = "schema.json"
TRUSTED_PACKAGES = ("sklearn.", "numpy.", "scipy.")
# Plain data types only: "builtins." as a prefix would admit builtins.eval, which skops would call with file data.
TRUSTED_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in (
        "bool",
        "bytearray",
        "bytes",
        "complex",
        "dict",
        "float",
        "frozenset",
        "int",
        "list",
        "NoneType",
        "range",
        "set",
        "slice",
        "str",
        "tuple",
    )
)
# Modules inside the trusted packages whose classes read or write files, download data, or only serve tests.
_REFUSED_MODULE_PARTS = frozenset(
    {"io", "datasets", "testing", "_testing", "_testutils", "tests", "_datasource", "f2py", "ctypeslib", "_examples"}
)


_UNTRUSTED_ADVICE = (
    "ModelDeck only loads scikit-learn, numpy and scipy classes and plain Python data types, because loading "
    "anything else (your own functions or classes included) could run code. Use built-in scikit-learn estimators "
    "and transformers, or convert the model to ONNX."
)


class SklearnFormat:
    """scikit-learn (skops): sniffed from schema.json in the zip, loaded only when every type in it is trusted."""

    name = "sklearn"
    label = "scikit-learn (skops)"
    extensions: tuple[str, ...] = (".skops",)
    needs_worker = True

    def sniff(self, path: Path) -> bool:
        """Tell whether the file is a zip with a skops schema.json in it."""
        return is_zip(path) and SCHEMA_FILE in zip_names(path)

    def inspect(self, path: Path) -> Inspection:
        """Refuse types outside scikit-learn, numpy and scipy, then load the estimator and describe it."""
        return estimator_inspection(load_estimator(path))


def precheck(path: Path) -> None:
    """Refuse, in the request, a skops file naming a type outside scikit-learn, numpy, scipy and plain data.

    Reads schema.json only (no scikit-learn import in the web process); the worker's load checks every type again,
    fully, before anything is built from the file.
    """
    schema = zip_json(path, SCHEMA_FILE, "invalid_skops", "skops file")
    names = {
        f"{item['__module__']}.{item['__class__']}"
        for item in json_objects(schema)
        if isinstance(item.get("__module__"), str) and isinstance(item.get("__class__"), str)
    }
    refused = sorted(name for name in names if not _plausibly_trusted(name))
    if refused:
        raise ModelFileError(
            "skops_untrusted_types",
            f"The skops file uses types that ModelDeck does not load: {', '.join(refused)}. {_UNTRUSTED_ADVICE}",
            {"types": refused},
        )


def _plausibly_trusted(name: str) -> bool:
    """The name-only part of is_trusted_type: a package and module path ModelDeck may load from."""
    if name.startswith("builtins."):
        return name in TRUSTED_BUILTINS
    if not name.startswith(TRUSTED_PACKAGES):
        return False
    parts = name.rpartition(".")[0].split(".")
    return not any(part.startswith("__") or part in _REFUSED_MODULE_PARTS for part in parts)


def load_estimator(path: Path) -> Any:
    """Load a skops file after refusing every type outside scikit-learn, numpy, scipy and plain data."""
    check_zip(path)
    import skops.io as sio

    try:
        untrusted: list[str] = sio.get_untrusted_types(file=str(path))
    except Exception as exc:
        # skops surfaces a malformed schema as whatever json/zipfile/KeyError it hits first.
        raise ModelFileError("invalid_skops", f"The skops file cannot be read: {error_summary(exc)}.") from exc
    refused = sorted(name for name in untrusted if not is_trusted_type(name))
    if refused:
        raise ModelFileError(
            "skops_untrusted_types",
            f"The skops file uses types that ModelDeck does not load: {', '.join(refused)}. {_UNTRUSTED_ADVICE}",
            {"types": refused},
        )
    try:
        estimator = sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ModelFileError("invalid_skops", f"The skops file could not be loaded: {error_summary(exc)}.") from exc
    return estimator


def is_trusted_type(name: str) -> bool:
    """Tell whether a type named in a skops file is a plain builtin or a scikit-learn, numpy or scipy class."""
    if not _plausibly_trusted(name):
        return False
    if name.startswith("builtins."):
        return True
    module_name, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    obj = getattr(module, attribute, None)
    # Functions are refused: skops calls a trusted name with arguments from the file (numpy.load, for one).
    if not isinstance(obj, type):
        return False
    return not issubclass(obj, np.memmap)


def estimator_inspection(estimator: Any) -> Inspection:
    """Describe a fitted scikit-learn estimator with the tensor names skl2onnx gives it (zipmap disabled)."""
    import sklearn

    kind = f"{type(estimator).__module__}.{type(estimator).__qualname__}"
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is None:
        raise ModelFileError(
            "sklearn_not_fitted",
            f"The {kind} object is not a fitted estimator (it has no n_features_in_); fit it before saving.",
            {"estimator": kind},
        )
    metadata: dict[str, Any] = {"estimator": kind}
    columns = getattr(estimator, "feature_names_in_", None)
    if columns is not None:
        # Fitted on a pandas DataFrame: one [N, 1] input per column, as skl2onnx's ColumnTransformer tutorial
        # converts it, typed by what the column holds (encoders know their categories: strings or integers).
        categories = _column_categories(estimator)
        names = [str(name) for name in columns]
        inputs = [
            TensorSpec(name=name, datatype=_category_datatype(categories.get(name)), shape=[-1, 1]) for name in names
        ]
        metadata["columns"] = names
        if categories:
            metadata["categories"] = {name: [_plain(v) for v in values] for name, values in categories.items()}
    else:
        inputs = [TensorSpec(name="input", datatype="FP32", shape=[-1, int(n_features)])]
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        if isinstance(classes, list):
            raise ModelFileError(
                "sklearn_unsupported",
                f"The {kind} is a multi-output classifier, which ModelDeck cannot serve yet.",
                {"estimator": kind},
            )
        classes = np.asarray(classes)
        outputs = [TensorSpec(name="label", datatype=_label_datatype(classes), shape=[-1])]
        if hasattr(estimator, "predict_proba"):
            outputs.append(TensorSpec(name="probabilities", datatype="FP32", shape=[-1, len(classes)]))
        metadata["classes"] = [str(c) for c in classes.tolist()]
    elif _is_clusterer(estimator):
        # skl2onnx's k-means graph: the cluster of each row and its distance to every centre (`transform`).
        clusters = int(final_step(estimator).n_clusters)
        outputs = [
            TensorSpec(name="label", datatype="INT64", shape=[-1]),
            TensorSpec(name="scores", datatype="FP32", shape=[-1, clusters]),
        ]
    elif hasattr(estimator, "predict"):
        outputs = [TensorSpec(name="variable", datatype="FP32", shape=[-1, _n_outputs(estimator)])]
    else:
        raise ModelFileError(
            "sklearn_not_a_predictor",
            f"The {kind} object has no predict method; ModelDeck serves classifiers and regressors.",
            {"estimator": kind},
        )
    return Inspection(
        signature=Signature(inputs=inputs, outputs=outputs),
        framework="sklearn",
        framework_version=sklearn.__version__,
        metadata=metadata,
    )


def _column_categories(estimator: Any) -> dict[str, Any]:
    """The categories of each DataFrame column an encoder (OneHotEncoder, OrdinalEncoder) of the model reads."""
    found: dict[str, Any] = {}
    for transformer in _column_transformers(estimator):
        indices = getattr(transformer, "_transformer_to_input_indices", {})
        names = [str(name) for name in getattr(transformer, "feature_names_in_", [])]
        for name, step, _ in transformer.transformers_:
            encoder = final_step(step) if hasattr(step, "steps") else step
            categories = getattr(encoder, "categories_", None)
            if categories is None:
                continue
            for column, values in zip((names[i] for i in indices.get(name, [])), categories, strict=False):
                found[column] = values
    return found


def _column_transformers(estimator: Any) -> list[Any]:
    steps = [step for _, step in getattr(estimator, "steps", [])] or [estimator]
    return [step for step in steps if hasattr(step, "transformers_")]


def _category_datatype(categories: Any) -> str:
    if categories is None:
        return "FP32"
    kind = np.asarray(categories).dtype.kind
    if kind in "OUS":
        return "BYTES"
    return "INT64" if kind in "iub" else "FP32"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def final_step(estimator: Any) -> Any:
    """The estimator that makes a pipeline's outputs (its last step, recursively), or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    return final_step(steps[-1][1]) if steps else estimator


def _is_clusterer(estimator: Any) -> bool:
    from sklearn.base import is_clusterer

    final = final_step(estimator)
    return is_clusterer(final) and hasattr(final, "cluster_centers_") and hasattr(final, "transform")


def _label_datatype(classes: Any) -> str:
    kind = classes.dtype.kind
    if kind in "US" or (kind == "O" and any(isinstance(c, str | bytes) for c in classes.tolist())):
        return "BYTES"
    if kind == "f":
        return "FP32"
    return "INT64"


def _n_outputs(estimator: Any) -> int:
    steps = getattr(estimator, "steps", None)
    if steps:
        # A Pipeline predicts with its last step, which is the one that knows its outputs.
        return _n_outputs(steps[-1][1])
    n_outputs = getattr(estimator, "n_outputs_", None)
    if n_outputs is not None:
        return int(n_outputs)
    # Linear models keep one row of coefficients per target when fitted on a 2-D y.
    coef = getattr(estimator, "coef_", None)
    if coef is not None and getattr(coef, "ndim", 1) == 2:
        return int(coef.shape[0])
    return 1


FORMAT = SklearnFormat()

"""Check that a converted model answers like its parent: run both on the same inputs and compare every output.

Runners load each format with the library that serves or made it: ONNX and TFLite with the serving runtimes
(runtimes/), the original formats with their own frameworks. TensorFlow, Keras and scikit-learn are imported inside
the runners that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from registry.formats import keras as keras_format
from registry.formats import pickled as pickled_format
from registry.formats import savedmodel as savedmodel_format
from registry.formats import sklearn as sklearn_format
from registry.formats.archive import check_zip
from registry.formats.base import ConversionError, ModelFileError, Recipe, error_summary
from registry.samples import sample_check
from runtimes import litert as litert_runtime
from runtimes import onnx as onnx_runtime
from runtimes.base import Runtime
from runtimes.onnx import text_tensor
from runtimes.tensors import DATATYPE_TO_NUMPY, Signature

# Rows of a probability output sum to 1 within this.
_PROBABILITY_SUM_SLACK = 1e-3


class Runner(Protocol):
    """A loaded model of any format that runs on named inputs."""

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs and return its outputs by name."""
        ...


@dataclass(frozen=True)
class Tolerance:
    """How close a converted model's outputs must stay to its parent's, for one quantization."""

    quantization: str
    max_abs: float | None  # float outputs: max |diff| <= max_abs + max_rel * max |parent|
    max_rel: float | None
    mean_rel: float | None  # int8: mean |diff| <= mean_rel * (mean |parent| + 1e-6)
    top1_agreement: float | None  # int8: share of rows whose argmax agrees, for probability outputs
    label_agreement: float  # integer, boolean and string outputs: share of equal elements

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TOLERANCES = {
    # float32 to float32 only reorders arithmetic: the measured drift is 1e-7 to 1e-6.
    "none": Tolerance("none", max_abs=1e-4, max_rel=1e-4, mean_rel=None, top1_agreement=None, label_agreement=0.99),
    # float16 weights keep about 3 decimal digits: the measured drift is 3e-4 to 6e-4 on probabilities.
    "float16": Tolerance(
        "float16", max_abs=1e-2, max_rel=1e-2, mean_rel=None, top1_agreement=None, label_agreement=0.99
    ),
    # int8 weights move single outputs by up to a few percent, so int8 is judged by decisions and average drift.
    "int8": Tolerance("int8", max_abs=None, max_rel=None, mean_rel=0.05, top1_agreement=0.95, label_agreement=0.95),
}


def load_runner(format_name: str, path: Path) -> Runner:
    """Load the model file at path with the library for its format, ready to run."""
    if format_name == "onnx":
        return PickedRuntime(onnx_runtime.load(path))
    if format_name == "tflite":
        # One interpreter: parity runs one batch at a time, and a big model's pool would cost its size again per copy.
        return PickedRuntime(litert_runtime.load(path, pool_size=1))
    if format_name == "keras":
        return KerasRunner(path)
    if format_name == "savedmodel":
        return SavedModelRunner(path)
    if format_name == "sklearn":
        return SklearnRunner(sklearn_format.load_estimator(path))
    if format_name == "pickle":
        # The caller has checked that the team opted in to trusted pickle: loading runs the file's code.
        return SklearnRunner(pickled_format.load_estimator(path))
    raise ConversionError(
        "parity_unsupported_format", f"ModelDeck cannot run {format_name} models to check parity.", {}
    )


class PickedRuntime:
    """Run a serving runtime (onnxruntime, LiteRT) on the inputs its model takes, picked by name.

    Parity runs ONNX and TFLite files with the runtimes that serve them (runtimes/), so a converted model is judged
    by the code that will answer its requests; only the pick (a sample may hold more inputs) is parity's own.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the runtime on its own inputs; a missing one is a parity_input_mismatch."""
        return self._runtime.run(_pick(inputs, self._runtime.input_names))


class KerasRunner:
    """Run a Keras model in inference mode; outputs are named output_0, output_1, ... as its inspection names them."""

    def __init__(self, path: Path) -> None:
        self._model = keras_format.load_model(path)
        self._input_names = [tensor.name for tensor in self._model.inputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the model with training=False on the named inputs."""
        import keras

        arguments = keras_format.model_arguments(self._model, _pick(inputs, self._input_names))
        outputs = keras.tree.flatten(self._model(arguments, training=False))
        return {f"output_{i}": np.asarray(keras.ops.convert_to_numpy(out)) for i, out in enumerate(outputs)}


class SavedModelRunner:
    """Run a zipped SavedModel through its serving_default signature."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        # Kept open for the runner's life: assets a SavedModel reads lazily stay on disk until it is dropped.
        self._folder = tempfile.TemporaryDirectory(prefix="modeldeck-parity-")
        model_dir = savedmodel_format.extract_model(path, Path(self._folder.name))
        try:
            # The loaded object owns the variables; its signature function only holds weak references to them.
            self._loaded = tf.saved_model.load(str(model_dir))
            self._function = self._loaded.signatures[savedmodel_format.SIGNATURE_KEY]
        except Exception as exc:
            raise ModelFileError(
                "invalid_savedmodel", f"The SavedModel could not be loaded: {error_summary(exc)}."
            ) from exc
        self._input_names = list(self._function.structured_input_signature[1])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call the serving signature with the named inputs."""
        import tensorflow as tf

        feed = {name: tf.constant(value) for name, value in _pick(inputs, self._input_names).items()}
        return {name: np.asarray(value.numpy()) for name, value in self._function(**feed).items()}


class SklearnRunner:
    """Run a fitted scikit-learn estimator with the output names skl2onnx gives it."""

    def __init__(self, estimator: Any) -> None:
        self._estimator = estimator
        inspection = sklearn_format.estimator_inspection(estimator)
        self._input_names = [spec.name for spec in inspection.signature.inputs]
        self._columns = inspection.metadata.get("columns")
        self._outputs = {spec.name: spec for spec in inspection.signature.outputs}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predict labels and probabilities (classifiers) or values (regressors)."""
        picked = _pick(inputs, self._input_names)
        x: Any
        if self._columns is not None:
            import pandas as pd

            # Fitted on a DataFrame, it selects its columns by name: give it one, a [N, 1] input per column.
            x = pd.DataFrame({name: _column(picked[name]) for name in self._columns})
        else:
            x = picked[self._input_names[0]]
        outputs: dict[str, np.ndarray] = {}
        if "label" in self._outputs:
            outputs["label"] = np.asarray(self._estimator.predict(x))
            if "probabilities" in self._outputs:
                outputs["probabilities"] = np.asarray(self._estimator.predict_proba(x), dtype=np.float32)
            if "scores" in self._outputs:  # k-means: the distance of each row to every centre
                outputs["scores"] = np.asarray(self._estimator.transform(x), dtype=np.float32)
        else:
            width = self._outputs["variable"].shape[1]
            outputs["variable"] = np.asarray(self._estimator.predict(x), dtype=np.float32).reshape(-1, width)
        return outputs


def _column(array: np.ndarray) -> np.ndarray:
    # Strings may come as bytes (a sample file); scikit-learn was fitted on str, as onnxruntime reads them.
    return text_tensor(np.asarray(array)).reshape(-1)


def _pick(inputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    missing = [name for name in names if name not in inputs]
    if missing:
        raise ConversionError(
            "parity_input_mismatch",
            f"The model takes inputs {names}, but the inputs given are {sorted(inputs)}.",
            {"expected": names, "given": sorted(inputs)},
        )
    return {name: inputs[name] for name in names}


def sample_inputs(path: Path, signature: Signature) -> dict[str, np.ndarray]:
    """Read the sample saved with a version (.npz, named JSON arrays or OIP JSON) as arrays of the input dtypes."""
    if zipfile.is_zipfile(path):
        arrays = _npz_arrays(path)
    else:
        try:
            data = json.loads(path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _invalid_sample(f"it is neither an .npz file nor valid JSON ({exc})") from exc
        arrays = _json_arrays(data)
    problem = sample_check({name: list(array.shape) for name, array in arrays.items()}, signature)
    if problem:
        raise ConversionError("parity_sample_mismatch", problem, {"inputs": sorted(arrays)})
    cast: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        try:
            cast[spec.name] = arrays[spec.name].astype(DATATYPE_TO_NUMPY[spec.datatype])
        except (ValueError, TypeError) as exc:
            raise _invalid_sample(f"input '{spec.name}' cannot be read as {spec.datatype} ({exc})") from exc
    return cast


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    check_zip(path)
    try:
        # allow_pickle=False: an object array in a sample must never run code.
        with np.load(path, allow_pickle=False) as npz:
            return {name: np.asarray(npz[name]) for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise _invalid_sample(f"it is not a readable .npz of arrays ({exc})") from exc


def _json_arrays(data: Any) -> dict[str, np.ndarray]:
    if isinstance(data, dict) and isinstance(data.get("inputs"), list):
        arrays = {}
        for item in data["inputs"]:
            if not isinstance(item, dict) or not {"name", "shape", "data"} <= set(item):
                raise _invalid_sample("each of 'inputs' needs a name, a shape and data")
            dtype = DATATYPE_TO_NUMPY.get(str(item.get("datatype", "FP32")), np.float32)
            try:
                # OIP sends data flat or nested; either way its shape field says how to lay it out.
                arrays[str(item["name"])] = np.asarray(item["data"], dtype=dtype).reshape(item["shape"])
            except (ValueError, TypeError) as exc:
                raise _invalid_sample(f"input '{item['name']}' does not fit its shape {item['shape']} ({exc})") from exc
        return arrays
    if isinstance(data, dict) and data:
        arrays = {}
        for name, value in data.items():
            try:
                array = np.asarray(value)
            except ValueError as exc:
                raise _invalid_sample(f"input '{name}' is not a rectangular array") from exc
            if array.dtype == object:
                raise _invalid_sample(f"input '{name}' is not a rectangular array")
            arrays[str(name)] = array
        return arrays
    raise _invalid_sample('expected named arrays, e.g. {"x": [[0.1, 0.2]]}, or an Open Inference Protocol request')


def _invalid_sample(why: str) -> ConversionError:
    return ConversionError("parity_invalid_sample", f"The sample input cannot be used: {why}.")


def parity_report(
    *,
    parent: Runner,
    child: Runner,
    parent_signature: Signature,
    child_signature: Signature,
    recipe: Recipe,
    inputs: dict[str, np.ndarray],
    input_source: str,
) -> dict[str, Any]:
    """Run parent and child on the same inputs, compare each output under the recipe's tolerance, and report."""
    tolerance = TOLERANCES[recipe.quantization]
    report: dict[str, Any] = {
        "passed": False,
        "reason": "",
        "input_source": input_source,
        "rows": _rows(inputs),
        "recipe": recipe.to_dict(),
        "tolerance": tolerance.to_dict(),
        "matched_by": None,
        "outputs": [],
    }
    results = {}
    for role, runner in (("source", parent), ("converted", child)):
        try:
            results[role] = runner.run(inputs)
        except Exception as exc:  # noqa: BLE001
            # A model that cannot run on the inputs is a failed check to report, not a crash of the job.
            report["reason"] = f"The {role} model failed to run on the {input_source} inputs: {error_summary(exc)}."
            return report
    parent_names = [spec.name for spec in parent_signature.outputs]
    child_names = [spec.name for spec in child_signature.outputs]
    if not parent_names:
        report["reason"] = "The source model's signature lists no outputs, so there is nothing to compare."
        return report
    if sorted(parent_names) == sorted(child_names):
        pairs, matched_by = [(name, name) for name in parent_names], "name"
    elif len(parent_names) == len(child_names):
        pairs, matched_by = list(zip(parent_names, child_names, strict=True)), "position"
    else:
        report["reason"] = (
            f"The converted model's outputs {child_names} cannot be matched to the source model's {parent_names}: "
            "their names and their number differ."
        )
        return report
    report["matched_by"] = matched_by
    for parent_name, child_name in pairs:
        for role, name, outputs in (
            ("source", parent_name, results["source"]),
            ("converted", child_name, results["converted"]),
        ):
            if name not in outputs:
                report["reason"] = (
                    f"The {role} model did not return its output '{name}' (it returned {sorted(outputs)})."
                )
                return report
    compared = [
        _compare(parent_name, child_name, results["source"][parent_name], results["converted"][child_name], tolerance)
        for parent_name, child_name in pairs
    ]
    report["outputs"] = [entry for entry, _ in compared]
    report["passed"] = all(entry["passed"] for entry in report["outputs"])
    notes = [note for entry, note in compared if entry["passed"] == report["passed"]]
    verdict = "Passed" if report["passed"] else "Failed"
    how = f"{len(inputs)} input{'s' if len(inputs) != 1 else ''}, {report['rows']} {input_source} rows"
    report["reason"] = f"{verdict} ({how}, {recipe.quantization} tolerance): {'; '.join(notes)}."
    if matched_by == "position":
        report["reason"] += f" Outputs were matched by position because their names differ ({pairs})."
    return report


def _rows(inputs: dict[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()), None)
    if first is None or np.ndim(first) == 0:
        return 1
    return int(np.shape(first)[0])


def _compare(
    parent_name: str, child_name: str, parent: np.ndarray, child: np.ndarray, tolerance: Tolerance
) -> tuple[dict[str, Any], str]:
    """Compare one pair of outputs; return the report entry and a sentence fragment saying why it passed or not."""
    entry: dict[str, Any] = {
        "parent": parent_name,
        "child": child_name,
        "max_abs_diff": None,
        "mean_abs_diff": None,
        "top1_agreement": None,
        "agreement": None,
        "passed": False,
    }
    label = f"'{parent_name}'" if parent_name == child_name else f"'{parent_name}'/'{child_name}'"
    parent, child = np.asarray(parent), np.asarray(child)
    if parent.shape != child.shape:
        return (
            entry,
            f"{label} has shape {list(child.shape)} in the converted model, {list(parent.shape)} in the source",
        )
    if parent.dtype.kind not in "fc" or child.dtype.kind not in "fc":
        agreement = _exact_agreement(parent, child)
        entry["agreement"] = agreement
        entry["passed"] = agreement >= tolerance.label_agreement
        relation = "at least" if entry["passed"] else "below the required"
        return entry, (
            f"{label} agrees on {_percent(agreement)} of its values, {relation} {_percent(tolerance.label_agreement)}"
        )
    p, c = parent.astype(np.float64), child.astype(np.float64)
    p_finite, c_finite = np.isfinite(p), np.isfinite(c)
    # Non-finite values only match the same non-finite value in the same place (NaN with NaN, inf with inf).
    same_non_finite = ~p_finite & ~c_finite & ((np.isnan(p) & np.isnan(c)) | (p == c))
    stray = int(np.count_nonzero((~p_finite | ~c_finite) & ~same_non_finite))
    if stray:
        return entry, f"{label} has {stray} NaN or infinite values that the other model does not have in the same place"
    both = p_finite & c_finite
    if not both.any():
        entry["passed"] = True
        return entry, f"{label} is NaN or infinite in the same places in both models"
    diff = np.abs(p[both] - c[both])
    max_diff, mean_diff = float(diff.max()), float(diff.mean())
    entry["max_abs_diff"], entry["mean_abs_diff"] = max_diff, mean_diff
    magnitude = np.abs(p[both])
    probabilities = _is_probabilities(p)
    if p.ndim == 2 and p.shape[1] > 1:
        entry["top1_agreement"] = float(np.mean(np.argmax(p, axis=1) == np.argmax(c, axis=1)))
    if tolerance.max_abs is not None:
        allowed = tolerance.max_abs + (tolerance.max_rel or 0.0) * float(magnitude.max())
        entry["passed"] = max_diff <= allowed
        relation = "within" if entry["passed"] else "above"
        return (
            entry,
            f"{label} differs by at most {_num(max_diff)} (mean {_num(mean_diff)}), {relation} {_num(allowed)}",
        )
    allowed = (tolerance.mean_rel or 0.0) * (float(magnitude.mean()) + 1e-6)
    drift_ok = mean_diff <= allowed
    top1 = entry["top1_agreement"]
    top1_ok = not probabilities or tolerance.top1_agreement is None or top1 >= tolerance.top1_agreement
    entry["passed"] = drift_ok and top1_ok
    fragment = f"{label} drifts by {_num(mean_diff)} on average (max {_num(max_diff)}), "
    fragment += f"{'within' if drift_ok else 'above'} {_num(allowed)}"
    if probabilities and tolerance.top1_agreement is not None:
        relation = "at least" if top1_ok else "below the required"
        fragment += (
            f", and its top-1 class agrees on {_percent(top1)} of rows, {relation} {_percent(tolerance.top1_agreement)}"
        )
    return entry, fragment


def _exact_agreement(parent: np.ndarray, child: np.ndarray) -> float:
    if parent.size == 0:
        return 1.0
    if parent.dtype.kind in "biuf" and child.dtype.kind in "biuf":
        return float(np.mean(parent == child))
    equal = [_plain(a) == _plain(b) for a, b in zip(parent.ravel(), child.ravel(), strict=True)]
    return sum(equal) / len(equal)


def _plain(value: Any) -> Any:
    # ONNX returns string labels as str objects, scikit-learn as numpy str_, files may hold bytes.
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if isinstance(value, np.generic) else value


def _is_probabilities(values: np.ndarray) -> bool:
    if values.ndim != 2 or values.shape[1] < 2 or values.size == 0:
        return False
    in_range = bool(np.all((values >= 0) & (values <= 1)))
    return in_range and bool(np.all(np.abs(values.sum(axis=1) - 1) <= _PROBABILITY_SUM_SLACK))


def _num(value: float) -> str:
    return f"{value:.2g}" if math.isfinite(value) else str(value)


def _percent(value: float) -> str:
    return f"{value * 100:.4g}%"

"""Every format against every other: sniffing, detection, exact signatures, name mismatches, broken and random files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.formats import FORMATS, detect
from registry.formats.base import Inspection, ModelFileError
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files

ROOT = Path(__file__).resolve().parents[3]

# sample name -> (file name, format that owns it)
SAMPLES = {
    "onnx": ("model.onnx", "onnx"),
    "tflite": ("model.tflite", "tflite"),
    "keras_v3": ("model.keras", "keras"),
    "keras_h5": ("model.h5", "keras"),
    "savedmodel": ("model.zip", "savedmodel"),
    "skops": ("model.skops", "sklearn"),
    "pickle": ("model.pkl", "pickle"),
    "joblib_zlib": ("model.joblib", "pickle"),
}
EXTENSIONS = [".onnx", ".tflite", ".keras", ".h5", ".hdf5", ".zip", ".skops", ".pkl", ".pickle", ".joblib", ""]

X = TensorSpec(name="x", datatype="FP32", shape=[-1, 4])
OUTPUT_0 = TensorSpec(name="output_0", datatype="FP32", shape=[-1, 3])
SKLEARN_SIGNATURE = Signature(
    inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 4])],
    outputs=[
        TensorSpec(name="label", datatype="INT64", shape=[-1]),
        TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3]),
    ],
)
LOGREG_METADATA = {"estimator": "sklearn.linear_model._logistic.LogisticRegression", "classes": ["0", "1", "2"]}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build one file of every format (and container) once for the module."""
    folder = tmp_path_factory.mktemp("samples")
    model = model_files.keras_model()
    return {
        "onnx": model_files.onnx_file(folder / "model.onnx"),
        "tflite": model_files.tflite_file(folder / "model.tflite", model),
        "keras_v3": model_files.keras_file(folder / "model.keras", model),
        "keras_h5": model_files.keras_h5_file(folder / "model.h5", model),
        "savedmodel": model_files.savedmodel_zip(folder / "model.zip", model),
        "skops": model_files.skops_file(folder / "model.skops"),
        "pickle": model_files.pickle_file(folder / "model.pkl"),
        "joblib_zlib": model_files.pickle_file(folder / "model.joblib", compress=True),
    }


def expected_inspections() -> dict[str, Inspection]:
    import keras
    import sklearn
    import tensorflow as tf

    return {
        "onnx": Inspection(
            signature=Signature(inputs=[X], outputs=[TensorSpec(name="probs", datatype="FP32", shape=[-1, 3])]),
            framework="onnx",
            framework_version="1.0",
            metadata={"opset": 17, "ir_version": 8, "producer": "modeldeck-tests"},
        ),
        "tflite": Inspection(
            signature=Signature(inputs=[X], outputs=[OUTPUT_0]),
            framework="tflite",
            metadata={"signature_key": "serving_default"},
        ),
        "keras_v3": Inspection(
            signature=Signature(inputs=[X], outputs=[OUTPUT_0]),
            framework="keras",
            framework_version=keras.__version__,
            metadata={"container": "keras_v3"},
        ),
        "keras_h5": Inspection(
            signature=Signature(inputs=[X], outputs=[OUTPUT_0]),
            framework="keras",
            framework_version=keras.__version__,
            metadata={"container": "h5"},
        ),
        "savedmodel": Inspection(
            signature=Signature(inputs=[X], outputs=[OUTPUT_0]),
            framework="tensorflow",
            framework_version=tf.__version__,
            metadata={"signature_key": "serving_default"},
        ),
        "skops": Inspection(
            signature=SKLEARN_SIGNATURE,
            framework="sklearn",
            framework_version=sklearn.__version__,
            metadata=LOGREG_METADATA,
        ),
        "pickle": Inspection(
            signature=SKLEARN_SIGNATURE,
            framework="sklearn",
            framework_version=sklearn.__version__,
            metadata=LOGREG_METADATA,
        ),
        "joblib_zlib": Inspection(
            signature=SKLEARN_SIGNATURE,
            framework="sklearn",
            framework_version=sklearn.__version__,
            metadata=LOGREG_METADATA,
        ),
    }


def test_formats_are_registered_by_name() -> None:
    assert sorted(FORMATS) == ["keras", "onnx", "pickle", "savedmodel", "sklearn", "tflite"]
    assert {name: fmt.needs_worker for name, fmt in FORMATS.items()} == {
        "onnx": False,
        "tflite": False,
        "keras": True,
        "savedmodel": True,
        "sklearn": True,
        "pickle": True,
    }
    assert {name: fmt.extensions for name, fmt in FORMATS.items()} == {
        "onnx": (".onnx",),
        "tflite": (".tflite",),
        "keras": (".keras", ".h5", ".hdf5"),
        "savedmodel": (".zip",),
        "sklearn": (".skops",),
        "pickle": (".pkl", ".pickle", ".joblib"),
    }


@pytest.mark.parametrize("format_name", sorted(FORMATS))
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_each_format_sniffs_its_own_files_and_no_other(samples: dict[str, Path], format_name: str, sample: str) -> None:
    assert FORMATS[format_name].sniff(samples[sample]) is (SAMPLES[sample][1] == format_name)


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_detect_finds_the_format_with_its_name_without_a_name_and_in_capitals(
    samples: dict[str, Path], sample: str
) -> None:
    filename, format_name = SAMPLES[sample]
    assert detect(samples[sample], filename).name == format_name
    assert detect(samples[sample], "model").name == format_name
    assert detect(samples[sample], filename.upper()).name == format_name
    assert detect(samples[sample], "model.bin").name == format_name


@pytest.mark.parametrize("sample", list(SAMPLES))
def test_inspect_reads_the_exact_signature(samples: dict[str, Path], sample: str) -> None:
    fmt = detect(samples[sample], SAMPLES[sample][0])
    assert fmt.inspect(samples[sample]) == expected_inspections()[sample]


def test_mismatch_names_both_formats(samples: dict[str, Path]) -> None:
    with pytest.raises(ModelFileError) as caught:
        detect(samples["tflite"], "m.onnx")
    assert caught.value.code == "format_mismatch"
    assert (
        caught.value.message == "The file is named 'm.onnx' (an ONNX name) but its content is a TensorFlow Lite model."
    )
    assert caught.value.detail == {"extension": ".onnx", "extension_format": "onnx", "content_format": "tflite"}


@pytest.mark.parametrize(
    ("sample", "filename", "extension_format"),
    [
        ("onnx", "m.tflite", "tflite"),
        ("onnx", "m.pkl", "pickle"),
        ("keras_v3", "m.skops", "sklearn"),
        ("keras_h5", "m.onnx", "onnx"),
        ("savedmodel", "m.keras", "keras"),
        ("skops", "m.zip", "savedmodel"),
        ("pickle", "m.h5", "keras"),
        ("joblib_zlib", "M.TFLITE", "tflite"),
    ],
)
def test_every_mismatch_is_refused(samples: dict[str, Path], sample: str, filename: str, extension_format: str) -> None:
    content_format = SAMPLES[sample][1]
    with pytest.raises(ModelFileError) as caught:
        detect(samples[sample], filename)
    assert caught.value.code == "format_mismatch"
    assert caught.value.detail == {
        "extension": Path(filename).suffix.lower(),
        "extension_format": extension_format,
        "content_format": content_format,
    }
    assert FORMATS[extension_format].label in caught.value.message
    assert FORMATS[content_format].label in caught.value.message


@pytest.mark.parametrize("extension", EXTENSIONS)
@pytest.mark.parametrize("sample", list(SAMPLES))
def test_truncated_files_are_refused_with_a_model_file_error(
    samples: dict[str, Path], tmp_path: Path, sample: str, extension: str
) -> None:
    broken = model_files.truncated(samples[sample], tmp_path / "broken")
    with pytest.raises(ModelFileError) as caught:
        detect(broken, f"model{extension}").inspect(broken)
    assert caught.value.code in {"unknown_format", "format_mismatch", "zip_corrupt"} or caught.value.code.startswith(
        "invalid_"
    )
    assert "Traceback" not in caught.value.message


@pytest.mark.parametrize("extension", EXTENSIONS)
def test_random_bytes_are_an_unknown_format_under_every_name(tmp_path: Path, extension: str) -> None:
    noise = model_files.random_bytes(tmp_path / "noise", size=64 * 1024)
    with pytest.raises(ModelFileError) as caught:
        detect(noise, f"model{extension}")
    assert caught.value.code == "unknown_format"
    assert f"'model{extension}'" in caught.value.message
    for fmt in FORMATS.values():
        assert fmt.label in caught.value.message
        assert all(ext in caught.value.message for ext in fmt.extensions)


@pytest.mark.parametrize("content", [b"", b"\x00", b"PK", b"hello world\n"])
def test_tiny_files_are_an_unknown_format(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        detect(path, path.name)
    assert caught.value.code == "unknown_format"


def test_a_zip_that_is_no_model_is_an_unknown_format(tmp_path: Path) -> None:
    path = model_files.zip_with_member(tmp_path / "notes.zip", "notes.txt", b"hello")
    with pytest.raises(ModelFileError) as caught:
        detect(path, path.name)
    assert caught.value.code == "unknown_format"


@pytest.mark.parametrize("filename", ["m.keras", "m.zip", "m.skops", "m.onnx", "m"])
def test_hostile_zips_are_refused_whatever_they_are_named(tmp_path: Path, filename: str) -> None:
    traversal = model_files.zip_with_member(tmp_path / "t", "../config.json", b"{}")
    with pytest.raises(ModelFileError) as caught:
        detect(traversal, filename)
    assert caught.value.code == "zip_traversal"
    symlink = model_files.zip_with_symlink(tmp_path / "s", name="schema.json")
    with pytest.raises(ModelFileError) as caught:
        detect(symlink, filename)
    assert caught.value.code == "zip_symlink"


def test_importing_the_formats_loads_no_framework() -> None:
    code = (
        "import sys, registry.formats; "
        "heavy = {'tensorflow', 'keras', 'sklearn', 'skops', 'onnx', 'ai_edge_litert', 'joblib', 'h5py'}; "
        "loaded = sorted(heavy & set(sys.modules)); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

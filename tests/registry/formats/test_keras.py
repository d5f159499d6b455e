"""Keras: both containers, safe mode against Lambda layers, and files that only look like Keras models."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest

from registry.formats import detect
from registry.formats.base import ModelFileError
from registry.formats.keras import FORMAT as KERAS
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files

SIGNATURE = Signature(
    inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4])],
    outputs=[TensorSpec(name="output_0", datatype="FP32", shape=[-1, 3])],
)


@pytest.fixture(scope="module")
def model() -> Any:
    return model_files.keras_model()


@pytest.fixture(scope="module")
def keras_path(tmp_path_factory: pytest.TempPathFactory, model: Any) -> Path:
    return model_files.keras_file(tmp_path_factory.mktemp("keras") / "model.keras", model)


@pytest.mark.parametrize("filename", ["artifact", "model.bin", "model.KERAS"])
def test_a_stored_artifact_without_the_keras_name_still_loads(tmp_path: Path, keras_path: Path, filename: str) -> None:
    # Workers read artifacts from storage keys, which carry no extension.
    stored = tmp_path / filename
    shutil.copyfile(keras_path, stored)
    inspection = KERAS.inspect(stored)
    assert inspection.signature == SIGNATURE
    assert inspection.metadata == {"container": "keras_v3"}


def test_the_version_comes_from_the_archive_metadata(tmp_path: Path, keras_path: Path) -> None:
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(keras_path) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "keras_version": "3.9.9"}).encode()
            dst.writestr(info, data)
    assert KERAS.inspect(path).framework_version == "3.9.9"


@pytest.mark.parametrize("extension", [".h5", ".hdf5"])
def test_both_hdf5_extensions_are_keras(tmp_path: Path, model: Any, extension: str) -> None:
    path = model_files.keras_h5_file(tmp_path / f"m{extension}", model)
    assert detect(path, path.name).name == "keras"
    assert KERAS.inspect(path).signature == SIGNATURE


def test_hdf5_with_a_user_block_is_sniffed(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "userblock.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("d", data=[1, 2, 3])
    assert path.read_bytes()[:8] != b"\x89HDF\r\n\x1a\n"
    assert KERAS.sniff(path)


@pytest.mark.parametrize("h5", [False, True], ids=["keras_v3", "h5"])
def test_a_lambda_layer_is_refused_as_unsafe(tmp_path: Path, h5: bool) -> None:
    path = model_files.keras_lambda_file(tmp_path / ("lambda.h5" if h5 else "lambda.keras"), h5=h5)
    assert detect(path, path.name).name == "keras"
    with pytest.raises(ModelFileError) as caught:
        KERAS.inspect(path)
    assert caught.value.code == "unsafe_keras_model"
    assert "Lambda" in caught.value.message
    assert "Traceback" not in caught.value.message


def test_an_hdf5_file_without_a_model_is_refused(tmp_path: Path, model: Any) -> None:
    path = model_files.keras_weights_file(tmp_path / "weights.h5", model)
    assert KERAS.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        KERAS.inspect(path)
    assert caught.value.code == "invalid_keras"
    assert caught.value.message == "The file is an HDF5 file without a Keras model in it."


def test_a_keras_archive_naming_a_class_keras_does_not_know_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps({"class_name": "NoSuchLayer", "config": {}}))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    assert KERAS.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        KERAS.inspect(path)
    # A subclassed keras.Model or a custom layer looks the same: a class whose code is not in the file.
    assert caught.value.code == "keras_custom_code"
    assert caught.value.detail == {"class": "NoSuchLayer"}
    assert caught.value.message.startswith("The Keras file needs 'NoSuchLayer', which is your own code")
    assert "model.export('exported')" in caught.value.message
    assert "Traceback" not in caught.value.message


def test_a_keras_archive_with_a_broken_config_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "broken.keras"
    with zipfile.ZipFile(path, "w") as zf:
        config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": 3}}
        zf.writestr("config.json", json.dumps({**config, "registered_name": None}))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
    with pytest.raises(ModelFileError) as caught:
        KERAS.inspect(path)
    assert caught.value.code == "invalid_keras"
    assert caught.value.message.startswith("The Keras model could not be loaded: ")
    assert "\n" not in caught.value.message


def test_a_zip_with_only_a_config_is_not_keras(tmp_path: Path) -> None:
    path = model_files.zip_with_member(tmp_path / "config.keras", "config.json", b"{}")
    assert not KERAS.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        detect(path, path.name)
    assert caught.value.code == "unknown_format"


def test_a_hostile_keras_archive_is_refused_before_keras_opens_it(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_TOTAL_BYTES = 1024 * 1024
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", bytes(2 * 1024 * 1024))
    with pytest.raises(ModelFileError) as caught:
        KERAS.inspect(path)
    assert caught.value.code == "zip_bomb"


def test_a_file_that_is_not_keras_at_all_is_invalid(tmp_path: Path) -> None:
    path = model_files.onnx_file(tmp_path / "m.onnx")
    with pytest.raises(ModelFileError) as caught:
        KERAS.inspect(path)
    assert caught.value.code == "invalid_keras"

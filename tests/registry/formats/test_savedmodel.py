"""TensorFlow SavedModel: where the model folder may sit in the zip, the serving signature, and safe extraction."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from registry.formats import detect
from registry.formats.base import ModelFileError
from registry.formats.savedmodel import FORMAT as SAVEDMODEL
from registry.formats.savedmodel import model_folder
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["saved_model.pb", "variables/variables.index"], ""),
        (["m/", "m/saved_model.pb", "m/variables/variables.index"], "m"),
        (["m/saved_model.pb", "__MACOSX/m/._saved_model.pb"], "m"),
        (["m/saved_model.pb", "other/readme.txt"], None),
        (["m/inner/saved_model.pb"], None),
        (["m/saved_model.pbtxt"], None),
        ([], None),
    ],
)
def test_the_model_folder_is_the_top_or_the_single_top_folder(names: list[str], expected: str | None) -> None:
    assert model_folder(names) == expected


def test_a_zip_without_a_savedmodel_is_not_sniffed(tmp_path: Path) -> None:
    path = model_files.zip_with_member(tmp_path / "m.zip", "a/b/saved_model.pb", b"")
    assert not SAVEDMODEL.sniff(path)
    with pytest.raises(ModelFileError) as caught:
        SAVEDMODEL.inspect(path)
    assert caught.value.code == "invalid_savedmodel"


def test_a_savedmodel_without_serving_default_names_the_signatures_it_has(tmp_path: Path) -> None:
    path = model_files.savedmodel_zip_without_serving_default(tmp_path / "predict.zip")
    assert detect(path, path.name).name == "savedmodel"  # saved_model.pb at the archive's top
    with pytest.raises(ModelFileError) as caught:
        SAVEDMODEL.inspect(path)
    assert caught.value.code == "savedmodel_no_serving_default"
    assert caught.value.detail == {"signatures": ["predict"]}
    assert "'serving_default'" in caught.value.message
    assert "'predict'" in caught.value.message


def test_a_broken_saved_model_pb_is_invalid(tmp_path: Path) -> None:
    path = model_files.zip_with_member(tmp_path / "m.zip", "saved_model.pb", b"not a protobuf")
    with pytest.raises(ModelFileError) as caught:
        SAVEDMODEL.inspect(path)
    assert caught.value.code == "invalid_savedmodel"
    assert caught.value.message.startswith("The SavedModel could not be loaded: ")


def test_a_savedmodel_with_a_traversing_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("m/saved_model.pb", b"")
        zf.writestr("m/../../evil.txt", b"x")
    with pytest.raises(ModelFileError) as caught:
        SAVEDMODEL.inspect(path)
    assert caught.value.code == "zip_traversal"
    assert not (tmp_path.parent / "evil.txt").exists()


def test_a_savedmodel_bomb_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_TOTAL_BYTES = 1024 * 1024
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/saved_model.pb", b"")
        zf.writestr("m/variables/variables.data-00000-of-00001", bytes(2 * 1024 * 1024))
    with pytest.raises(ModelFileError) as caught:
        SAVEDMODEL.inspect(path)
    assert caught.value.code == "zip_bomb"


def test_a_savedmodel_at_the_archive_top_inspects(tmp_path: Path) -> None:
    path = model_files.savedmodel_zip(tmp_path / "m.zip", folder="exported")
    flat = tmp_path / "flat.zip"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(flat, "w") as dst:
        for info in src.infolist():
            name = info.filename.removeprefix("exported/")
            if name:
                dst.writestr(name, src.read(info))
    assert SAVEDMODEL.inspect(flat).signature == Signature(
        inputs=[TensorSpec(name="x", datatype="FP32", shape=[-1, 4])],
        outputs=[TensorSpec(name="output_0", datatype="FP32", shape=[-1, 3])],
    )

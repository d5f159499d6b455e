"""Pickle and joblib: recognised raw and compressed so they can be refused, and inspected only when trusted."""

from __future__ import annotations

import bz2
import gzip
import lzma
import pickle
import zlib
from pathlib import Path

import pytest

from registry.formats import detect
from registry.formats.base import Inspection, ModelFileError
from registry.formats.pickled import FORMAT as PICKLE
from registry.formats.pickled import PICKLE_REFUSAL_MESSAGE, is_pickle_header
from runtimes.tensors import Signature, TensorSpec
from tests.registry import model_files


@pytest.mark.parametrize("compress", [False, True, "zlib", "gzip", "bz2", "lzma", "xz"])
@pytest.mark.parametrize("filename", ["model.joblib", "model.pkl", "model.pickle", "model"])
def test_raw_and_joblib_compressed_files_are_pickle(tmp_path: Path, compress: bool | str, filename: str) -> None:
    path = model_files.pickle_file(tmp_path / filename, compress=compress)
    assert PICKLE.sniff(path)
    assert detect(path, filename).name == "pickle"


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_protocol_with_a_header_is_sniffed(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=protocol))
    assert PICKLE.sniff(path)


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"\x80\x02", True), (b"\x80\x05\x95", True), (b"\x80\x01", False), (b"\x80\x06", False), (b"\x80", False)],
)
def test_the_header_is_the_proto_opcode(data: bytes, expected: bool) -> None:
    assert is_pickle_header(data) is expected


@pytest.mark.parametrize(
    "compress",
    [zlib.compress, gzip.compress, bz2.compress, lzma.compress, lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)],
)
def test_compressed_data_that_is_not_a_pickle_is_not_sniffed(tmp_path: Path, compress: object) -> None:
    path = tmp_path / "notes.gz"
    path.write_bytes(compress(b"just some text, " * 100))  # type: ignore[operator]
    assert not PICKLE.sniff(path)


def test_a_large_bzip2_pickle_is_sniffed_from_its_first_block(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl.bz2"
    path.write_bytes(bz2.compress(pickle.dumps(bytes(range(256)) * 4000, protocol=4)))
    assert PICKLE.sniff(path)


def test_broken_compressed_headers_are_not_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "x"
    for content in (b"\x1f\x8b" + bytes(30), b"\x78\x9c\xff\xff", b"BZh9" + bytes(30), b"\xfd7zXZ\x00" + bytes(30)):
        path.write_bytes(content)
        assert not PICKLE.sniff(path)


def test_the_refusal_message_points_to_skops() -> None:
    assert PICKLE_REFUSAL_MESSAGE == (
        "Pickle and joblib files can run arbitrary code when opened, so ModelDeck does not open them. "
        "Save scikit-learn models with skops (skops.io.dump(model, 'model.skops')) and upload the .skops file, "
        "or ask a team admin to turn on trusted pickle for the team."
    )


@pytest.mark.parametrize("compress", [False, True])
def test_a_trusted_pickle_is_inspected_like_skops(tmp_path: Path, compress: bool) -> None:
    import sklearn

    path = model_files.pickle_file(tmp_path / "m.joblib", compress=compress)
    assert PICKLE.inspect(path) == Inspection(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 4])],
            outputs=[
                TensorSpec(name="label", datatype="INT64", shape=[-1]),
                TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3]),
            ],
        ),
        framework="sklearn",
        framework_version=sklearn.__version__,
        metadata={"estimator": "sklearn.linear_model._logistic.LogisticRegression", "classes": ["0", "1", "2"]},
    )


def test_a_pickle_of_something_else_is_not_an_estimator(tmp_path: Path) -> None:
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with pytest.raises(ModelFileError) as caught:
        PICKLE.inspect(path)
    assert caught.value.code == "sklearn_not_fitted"
    assert "builtins.dict" in caught.value.message


def test_a_broken_pickle_is_invalid(tmp_path: Path) -> None:
    path = tmp_path / "b.pkl"
    path.write_bytes(b"\x80\x04\x95\xff\xff\xff\x00\x00\x00\x00\x00")
    with pytest.raises(ModelFileError) as caught:
        PICKLE.inspect(path)
    assert caught.value.code == "invalid_pickle"

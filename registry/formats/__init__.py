"""Model formats by name, and `detect`, which tells an upload's format from its bytes and checks its name agrees."""

from __future__ import annotations

from pathlib import Path, PurePath

from registry.formats import keras, onnx, pickled, savedmodel, sklearn, tflite
from registry.formats.archive import check_zip, is_zip
from registry.formats.base import ModelFileError, ModelFormat

FORMATS: dict[str, ModelFormat] = {
    fmt.name: fmt
    for fmt in (
        onnx.FORMAT,
        tflite.FORMAT,
        keras.FORMAT,
        savedmodel.FORMAT,
        sklearn.FORMAT,
        pickled.FORMAT,
    )
}

# A zip is decided by its members. Other files by their first bytes: the fixed signatures first, then HDF5 (which
# may also sit after a user block at 512-2048), and pickle last, as its header is only two bytes.
_ZIP_FORMATS: tuple[ModelFormat, ...] = (keras.FORMAT, sklearn.FORMAT, savedmodel.FORMAT)
_FILE_FORMATS: tuple[ModelFormat, ...] = (tflite.FORMAT, onnx.FORMAT, keras.FORMAT, pickled.FORMAT)

EXTENSION_FORMATS: dict[str, ModelFormat] = {ext: fmt for fmt in FORMATS.values() for ext in fmt.extensions}


def detect(path: Path, filename: str) -> ModelFormat:
    """Tell the file's format from its content, refusing hostile zips and names that claim another format."""
    if is_zip(path):
        # Refuse a hostile archive before any format reads its members, whatever it claims to be.
        check_zip(path)
        candidates = _ZIP_FORMATS
    else:
        candidates = _FILE_FORMATS
    content_format = next((fmt for fmt in candidates if fmt.sniff(path)), None)
    extension = PurePath(filename).suffix.lower()
    extension_format = EXTENSION_FORMATS.get(extension)
    if content_format is None:
        raise ModelFileError(
            "unknown_format",
            f"'{filename}' is not a model file ModelDeck recognises. Accepted formats: {accepted_formats()}.",
            {"extension": extension, "accepted": {fmt.name: list(fmt.extensions) for fmt in FORMATS.values()}},
        )
    if extension_format is not None and extension_format.name != content_format.name:
        raise ModelFileError(
            "format_mismatch",
            f"The file is named '{filename}' ({_article(extension_format.label)} {extension_format.label} name) "
            f"but its content is {_article(content_format.label)} {content_format.label} model.",
            {
                "extension": extension,
                "extension_format": extension_format.name,
                "content_format": content_format.name,
            },
        )
    return content_format


def precheck(fmt: ModelFormat, path: Path) -> None:
    """Judge in the request what can be judged without the worker's libraries: code a file would run on load."""
    if fmt.name == "sklearn":
        sklearn.precheck(path)
    elif fmt.name == "keras":
        keras.precheck(path)


def accepted_formats() -> str:
    """Describe every accepted format with its file name extensions, for messages."""
    return "; ".join(f"{fmt.label} ({', '.join(fmt.extensions)})" for fmt in FORMATS.values())


def _article(label: str) -> str:
    return "an" if label[:1].lower() in "aeiou" else "a"

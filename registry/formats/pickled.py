"""Pickle and joblib files: recognised so they can be refused, and loaded only for teams that trust pickle."""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.formats.base import Inspection, ModelFileError, error_summary
from registry.formats.sklearn import estimator_inspection

PICKLE_REFUSAL_MESSAGE = (
    "Pickle and joblib files can run arbitrary code when opened, so ModelDeck does not open them. "
    "Save scikit-learn models with skops (skops.io.dump(model, 'model.skops')) and upload the .skops file, "
    "or ask a team admin to turn on trusted pickle for the team."
)

_PROTOCOLS = frozenset({2, 3, 4, 5})
_HEAD_BYTES = 512
# bzip2 yields nothing until a whole block (up to 900 kB) is in, so it may read this much compressed input.
_BZ2_MAX_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class PickleFormat:
    """pickle / joblib: a raw pickle stream, or one compressed the ways joblib compresses."""

    name = "pickle"
    label = "pickle / joblib"
    extensions: tuple[str, ...] = (".pkl", ".pickle", ".joblib")
    needs_worker = True

    def sniff(self, path: Path) -> bool:
        """Tell whether the file starts with a pickle protocol 2-5 header, raw or after decompression."""
        try:
            with path.open("rb") as f:
                head = f.read(_HEAD_BYTES)
                if is_pickle_header(head):
                    return True
                decompressor = _decompressor_for(head)
                if decompressor is None:
                    return False
                data = head
                limit = _BZ2_MAX_BYTES if head.startswith(b"BZh") else _HEAD_BYTES
                read = len(data)
                while True:
                    out = decompressor(data)
                    if len(out) >= 2 or read >= limit or not data:
                        return is_pickle_header(out)
                    data = f.read(_CHUNK)
                    read += len(data)
        except (OSError, zlib.error, lzma.LZMAError, ValueError, EOFError):
            return False

    def inspect(self, path: Path) -> Inspection:
        """Load the file with joblib and describe the estimator; call only for a team that trusts pickle."""
        return estimator_inspection(load_estimator(path))


def load_estimator(path: Path) -> Any:
    """Load a pickle or joblib file with joblib; call only for a team that trusts pickle."""
    import joblib

    try:
        # The caller has checked that the team opted in to trusted pickle: this runs the file's code.
        return joblib.load(path)
    except Exception as exc:
        # A pickle stream can raise anything while it runs, by design.
        raise ModelFileError("invalid_pickle", f"The pickle file could not be loaded: {error_summary(exc)}.") from exc


def is_pickle_header(data: bytes) -> bool:
    """Tell whether bytes open with the PROTO opcode of pickle protocol 2 to 5."""
    return len(data) >= 2 and data[0] == 0x80 and data[1] in _PROTOCOLS


def _decompressor_for(head: bytes) -> Callable[[bytes], bytes] | None:
    """Return a function that decompresses successive chunks into at most a few bytes, for joblib's compressors."""
    if head.startswith(b"\x1f\x8b"):
        gz = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return lambda data: gz.decompress(data, 16)
    if len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0:
        zl = zlib.decompressobj()
        return lambda data: zl.decompress(data, 16)
    if head.startswith(b"BZh"):
        bz = bz2.BZ2Decompressor()
        return lambda data: bz.decompress(data, 16)
    if head.startswith(b"\xfd7zXZ\x00"):
        xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return lambda data: xz.decompress(data, 16)
    if head.startswith(b"\x5d\x00\x00"):
        alone = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        return lambda data: alone.decompress(data, 16)
    return None


FORMAT = PickleFormat()

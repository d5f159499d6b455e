"""Zip archives from users: refuse hostile ones from the central directory, and extract the rest with a byte budget.

A zip's headers are written by whoever made it, so `check_zip` only decides what is worth opening, and
`safe_extract` still counts the bytes it really writes.
"""

from __future__ import annotations

import json
import re
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from registry.formats.base import ModelFileError, error_summary

MIB = 1024 * 1024
# A compression ratio says little about small members (a 1 KiB JSON of zeros is harmless), so only larger ones count.
RATIO_MIN_BYTES = MIB

_LOCAL_HEADER = b"PK\x03\x04"
_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_END = b"PK\x06\x06"
_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, cd disk, entries here, entries total, cd size, cd offset, comment
_ZIP64_LOCATOR_RECORD = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 end record, disks
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")  # ..., entries here, entries total, cd size, cd offset
# The smallest central directory entry is 46 bytes; allow generous names and extra fields on top.
_MAX_CENTRAL_DIRECTORY_BYTES_PER_MEMBER = 46 + 4096
_DRIVE = re.compile(r"^[A-Za-z]:")
_ENCRYPTED_FLAG = 0x1
_COPY_CHUNK = MIB


def is_zip(path: Path) -> bool:
    """Tell whether the file starts like a zip archive (a local file header, or the end record of an empty one)."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return False
    # Only the first bytes count: zipfile.is_zipfile looks for an end record anywhere in the last 64 KiB,
    # which random weights in an ONNX or TFLite file can contain by chance.
    return head in (_LOCAL_HEADER, _END_OF_CENTRAL_DIRECTORY)


def zip_names(path: Path) -> list[str]:
    """Return the member names of a zip from its central directory, or [] when it is not a readable zip."""
    if not is_zip(path):
        return []
    try:
        _refuse_oversized_directory(path)
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, ModelFileError, OSError, ValueError, EOFError, struct.error):
        return []


def zip_json(path: Path, member: str, code: str, archive: str) -> Any:
    """Read one JSON member of an archive, or refuse the file (`code`) saying which member could not be read."""
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read(member))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelFileError(code, f"The {archive} has no readable {member}: {error_summary(exc)}.") from exc


def json_objects(document: Any) -> Iterator[dict[str, Any]]:
    """Yield every object (dict) in a JSON document, however deeply nested, without recursion."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check_zip(path: Path) -> list[zipfile.ZipInfo]:
    """Read a zip's central directory and refuse it if it is corrupt, too big, or escapes its folder; return members."""
    _refuse_oversized_directory(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as exc:
        raise ModelFileError(
            "zip_corrupt", f"The archive is corrupt or truncated: {error_summary(exc)}.", {"reason": error_summary(exc)}
        ) from exc
    _check_members(infos)
    return infos


def safe_extract(path: Path, dest: Path) -> None:
    """Extract a checked zip into dest member by member, counting the bytes really written against the total limit."""
    infos = check_zip(path)
    limit = settings.MODELDECK_ZIP_MAX_TOTAL_BYTES
    root = dest.resolve()
    written = 0
    with zipfile.ZipFile(path) as zf:
        for info in infos:
            target = _target(root, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(_COPY_CHUNK):
                        written += len(chunk)
                        # The header sizes were checked already, but they are the archive's own claim.
                        if written > limit:
                            raise ModelFileError(
                                "zip_bomb",
                                f"The archive expands to more than the limit of {_size(limit)} "
                                f"(stopped while extracting '{info.filename}').",
                                {
                                    "limit": "total_bytes",
                                    "member": info.filename,
                                    "limit_bytes": limit,
                                    "written_bytes": written,
                                },
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, EOFError, struct.error, NotImplementedError, RuntimeError) as exc:
                raise ModelFileError(
                    "zip_corrupt",
                    f"The archive member '{info.filename}' could not be read: {error_summary(exc)}.",
                    {"member": info.filename, "reason": error_summary(exc)},
                ) from exc
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise ModelFileError(
                    "zip_corrupt",
                    f"The archive member '{info.filename}' clashes with another member of the same path.",
                    {"member": info.filename},
                ) from exc


def _check_members(infos: list[zipfile.ZipInfo]) -> None:
    max_members = settings.MODELDECK_ZIP_MAX_MEMBERS
    if len(infos) > max_members:
        raise _too_many(len(infos), max_members)
    for info in infos:
        _check_name(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelFileError(
                "zip_symlink",
                f"The archive member '{info.filename}' is a symbolic link; archives may hold only files and folders.",
                {"member": info.filename},
            )
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise ModelFileError(
                "zip_encrypted",
                f"The archive member '{info.filename}' is encrypted; ModelDeck cannot open encrypted archives.",
                {"member": info.filename},
            )
    _check_sizes(infos)


def _check_name(name: str) -> None:
    parts = name.split("/")
    unsafe = name.startswith("/") or "\\" in name or bool(_DRIVE.match(name)) or ".." in parts
    if unsafe:
        raise ModelFileError(
            "zip_traversal",
            f"The archive member '{name}' has a path that could write outside the folder it is extracted into "
            "(absolute, a drive letter, a backslash or '..').",
            {"member": name},
        )


def _check_sizes(infos: list[zipfile.ZipInfo]) -> None:
    max_total = settings.MODELDECK_ZIP_MAX_TOTAL_BYTES
    max_ratio = settings.MODELDECK_ZIP_MAX_RATIO
    total = sum(info.file_size for info in infos)
    if total > max_total:
        raise ModelFileError(
            "zip_bomb",
            f"The archive would expand to {_size(total)}, more than the limit of {_size(max_total)}.",
            {"limit": "total_bytes", "total_bytes": total, "limit_bytes": max_total},
        )
    for info in infos:
        if info.file_size <= RATIO_MIN_BYTES:
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > max_ratio:
            raise ModelFileError(
                "zip_bomb",
                f"The archive member '{info.filename}' expands {ratio:.0f} times ({_size(info.compress_size)} to "
                f"{_size(info.file_size)}), more than the limit of {max_ratio} times.",
                {
                    "limit": "ratio",
                    "member": info.filename,
                    "ratio": round(ratio, 1),
                    "limit_ratio": max_ratio,
                    "file_size": info.file_size,
                    "compress_size": info.compress_size,
                },
            )


def _refuse_oversized_directory(path: Path) -> None:
    """Refuse a zip whose end record announces too many members, before zipfile builds an object for each."""
    counts = _directory_counts(path)
    if counts is None:
        return  # no end record found here; zipfile will say the archive is corrupt
    entries, directory_bytes = counts
    max_members = settings.MODELDECK_ZIP_MAX_MEMBERS
    if entries > max_members:
        raise _too_many(entries, max_members)
    # The entry count in the end record can lie; the directory's size bounds how many entries zipfile would parse.
    if directory_bytes > max_members * _MAX_CENTRAL_DIRECTORY_BYTES_PER_MEMBER:
        raise ModelFileError(
            "zip_too_many_members",
            f"The archive's central directory is {_size(directory_bytes)}, more than {max_members} members can need.",
            {"limit_members": max_members, "central_directory_bytes": directory_bytes},
        )


def _directory_counts(path: Path) -> tuple[int, int] | None:
    """Return (entries, central directory bytes) from the end records, or None when there is no end record."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        tail_start = max(0, size - (_EOCD.size + 0xFFFF))
        f.seek(tail_start)
        tail = f.read()
        at = tail.rfind(_END_OF_CENTRAL_DIRECTORY)
        if at < 0 or at + _EOCD.size > len(tail):
            return None
        fields = _EOCD.unpack_from(tail, at)
        entries, directory_bytes = fields[4], fields[5]
        locator_at = at - _ZIP64_LOCATOR_RECORD.size
        if (entries == 0xFFFF or directory_bytes == 0xFFFFFFFF) and locator_at >= 0:
            locator = _ZIP64_LOCATOR_RECORD.unpack_from(tail, locator_at)
            if locator[0] == _ZIP64_LOCATOR:
                f.seek(locator[2])
                record = f.read(_ZIP64_END_RECORD.size)
                if len(record) == _ZIP64_END_RECORD.size and record[:4] == _ZIP64_END:
                    zip64 = _ZIP64_END_RECORD.unpack(record)
                    entries, directory_bytes = zip64[7], zip64[8]
        return entries, directory_bytes


def _target(root: Path, name: str) -> Path:
    target = (root / PurePosixPath(name)).resolve()
    # check_zip refused traversal already; this holds even if a symlink appeared inside dest meanwhile.
    if target != root and root not in target.parents:
        raise ModelFileError(
            "zip_traversal", f"The archive member '{name}' would be written outside its folder.", {"member": name}
        )
    return target


def _too_many(count: int, limit: int) -> ModelFileError:
    return ModelFileError(
        "zip_too_many_members",
        f"The archive has {count} members, more than the limit of {limit}.",
        {"members": count, "limit_members": limit},
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"

"""Hostile zips are refused from the central directory, and extraction counts the bytes it really writes."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from registry.formats import archive
from registry.formats.archive import MIB, check_zip, is_zip, safe_extract, zip_names
from registry.formats.base import ModelFileError
from tests.registry import model_files


def written_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def set_end_record_entries(path: Path, entries: int) -> None:
    """Overwrite the member counts in the end-of-central-directory record (a lying archive)."""
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, at + 8, entries, entries)
    path.write_bytes(bytes(data))


def test_a_plain_zip_passes_and_lists_its_members(tmp_path: Path) -> None:
    path = tmp_path / "ok.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/saved_model.pb", b"pb")
        zf.writestr("model/variables/", b"")
        zf.writestr("model/variables/variables.index", b"index")
    assert is_zip(path)
    assert zip_names(path) == ["model/saved_model.pb", "model/variables/", "model/variables/variables.index"]
    assert [info.filename for info in check_zip(path)] == zip_names(path)


def test_is_zip_looks_at_the_first_bytes_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    assert is_zip(empty)
    assert check_zip(empty) == []
    # An end record hidden at the tail of another file does not make it a zip.
    tail = tmp_path / "weights.bin"
    tail.write_bytes(b"\x08\x08" + bytes(100) + empty.read_bytes())
    assert not is_zip(tail)
    assert zip_names(tail) == []
    assert not is_zip(tmp_path / "missing")


@pytest.mark.parametrize(
    "name",
    ["../evil.txt", "model/../../evil.txt", "..", "/etc/cron.d/evil", "C:/evil.txt", "c:evil", "model\\evil.txt"],
)
def test_paths_that_leave_the_folder_are_refused_by_name(tmp_path: Path, name: str) -> None:
    path = model_files.zip_with_member(tmp_path / "t.zip", name)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_traversal"
    assert caught.value.detail == {"member": name}
    assert f"'{name}'" in caught.value.message


@pytest.mark.parametrize("name", ["a..b.txt", "model/..hidden", "model/v..1/x"])
def test_dots_inside_a_name_are_fine(tmp_path: Path, name: str) -> None:
    path = model_files.zip_with_member(tmp_path / "t.zip", name)
    assert [info.filename for info in check_zip(path)] == [name]


def test_symlinks_are_refused_by_name(tmp_path: Path) -> None:
    path = model_files.zip_with_symlink(tmp_path / "s.zip", name="model/link")
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_symlink"
    assert caught.value.detail == {"member": "model/link"}
    assert "'model/link'" in caught.value.message


def test_too_many_members_are_refused(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_MEMBERS = 10
    check_zip(model_files.zip_many_members(tmp_path / "ten.zip", 10))
    path = model_files.zip_many_members(tmp_path / "eleven.zip", 11)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_too_many_members"
    assert caught.value.detail == {"members": 11, "limit_members": 10}
    assert "11 members" in caught.value.message
    assert "limit of 10" in caught.value.message


def test_an_end_record_that_understates_the_member_count_is_still_caught(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_MEMBERS = 10
    path = model_files.zip_many_members(tmp_path / "liar.zip", 11)
    set_end_record_entries(path, 1)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_too_many_members"
    assert caught.value.detail == {"members": 11, "limit_members": 10}


def test_a_central_directory_too_big_for_the_member_limit_is_refused_before_parsing(
    settings: Any, tmp_path: Path
) -> None:
    settings.MODELDECK_ZIP_MAX_MEMBERS = 1
    path = tmp_path / "long-names.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}-" + "n" * 3000, b"")
    set_end_record_entries(path, 1)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_too_many_members"
    assert "central directory" in caught.value.message


def test_a_zip_bomb_over_the_total_limit_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_TOTAL_BYTES = 5 * MIB
    path = model_files.zip_bomb(tmp_path / "bomb.zip", megabytes=6)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_bomb"
    assert caught.value.detail == {"limit": "total_bytes", "total_bytes": 6 * MIB, "limit_bytes": 5 * MIB}
    assert "6.0 MiB" in caught.value.message
    assert "5.0 MiB" in caught.value.message


def test_a_member_that_expands_too_many_times_is_refused(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_RATIO = 200
    path = model_files.zip_bomb(tmp_path / "bomb.zip", megabytes=2)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_bomb"
    detail = caught.value.detail
    assert (detail["limit"], detail["member"], detail["limit_ratio"], detail["file_size"]) == (
        "ratio",
        "zeros.bin",
        200,
        2 * MIB,
    )
    assert detail["ratio"] > 200
    assert "'zeros.bin'" in caught.value.message
    assert "limit of 200 times" in caught.value.message


def test_small_members_may_compress_well(tmp_path: Path) -> None:
    # 1 MiB of zeros compresses ~1000x, but a member this small cannot exhaust anything.
    path = model_files.zip_bomb(tmp_path / "small.zip", megabytes=1)
    assert [info.file_size for info in check_zip(path)] == [MIB]


@pytest.mark.parametrize("content", [b"PK\x03\x04", b"PK\x03\x04" + bytes(200), b"PK\x05\x06" + bytes(5)])
def test_broken_zips_are_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_corrupt"


def test_a_truncated_zip_is_corrupt(tmp_path: Path) -> None:
    path = model_files.truncated(model_files.zip_many_members(tmp_path / "full.zip", 50), tmp_path / "half.zip")
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_corrupt"
    assert zip_names(path) == []


def test_encrypted_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "locked.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("secret.bin", b"x")
        zf.infolist()[0].flag_bits |= 0x1  # the central directory then says "encrypted"
    with pytest.raises(ModelFileError) as caught:
        check_zip(path)
    assert caught.value.code == "zip_encrypted"
    assert caught.value.detail == {"member": "secret.bin"}


def test_safe_extract_writes_every_member_inside_dest(tmp_path: Path) -> None:
    path = tmp_path / "ok.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/", b"")
        zf.writestr("model/saved_model.pb", b"pb" * 1000)
        zf.writestr("model/variables/variables.index", b"index")
        zf.writestr("model/assets/", b"")
    dest = tmp_path / "out"
    dest.mkdir()
    safe_extract(path, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "model",
        "model/assets",
        "model/saved_model.pb",
        "model/variables",
        "model/variables/variables.index",
    ]
    assert (dest / "model/saved_model.pb").read_bytes() == b"pb" * 1000


def test_safe_extract_refuses_hostile_archives_before_writing(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "inner"
    dest.mkdir(parents=True)
    with pytest.raises(ModelFileError) as caught:
        safe_extract(model_files.zip_with_member(tmp_path / "t.zip", "../escaped.txt"), dest)
    assert caught.value.code == "zip_traversal"
    assert not (tmp_path / "out" / "escaped.txt").exists()
    assert written_bytes(tmp_path / "out") == 0


def test_safe_extract_refuses_a_member_larger_than_its_header_says(settings: Any, tmp_path: Path) -> None:
    settings.MODELDECK_ZIP_MAX_TOTAL_BYTES = MIB
    path = model_files.zip_with_understated_size(tmp_path / "liar.zip", real_bytes=3 * MIB, claimed_bytes=1024)
    assert [info.file_size for info in check_zip(path)] == [1024]  # the header alone passes the checks
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ModelFileError) as caught:
        safe_extract(path, dest)
    # zipfile stops at the size the directory claims, so the lie surfaces as a checksum failure.
    assert caught.value.code == "zip_corrupt"
    assert caught.value.detail["member"] == "data.bin"
    assert written_bytes(dest) <= MIB


def test_safe_extract_counts_real_bytes_when_the_headers_got_past_the_checks(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.MODELDECK_ZIP_MAX_TOTAL_BYTES = 2 * MIB
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", bytes(MIB + 10))
        zf.writestr("b.bin", bytes(MIB + 10))

    def unchecked(path: Path) -> list[zipfile.ZipInfo]:
        with zipfile.ZipFile(path) as zf:
            return zf.infolist()

    # Stand in for headers that lie in a way zipfile cannot see, so only the running count is left to stop it.
    monkeypatch.setattr(archive, "check_zip", unchecked)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ModelFileError) as caught:
        safe_extract(path, dest)
    assert caught.value.code == "zip_bomb"
    assert caught.value.detail["member"] == "b.bin"
    assert caught.value.detail["limit_bytes"] == 2 * MIB
    assert written_bytes(dest) <= 2 * MIB


def test_safe_extract_reports_members_that_clash(tmp_path: Path) -> None:
    path = tmp_path / "clash.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model", b"a file")
        zf.writestr("model/saved_model.pb", b"pb")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ModelFileError) as caught:
        safe_extract(path, dest)
    assert caught.value.code == "zip_corrupt"
    assert caught.value.detail == {"member": "model/saved_model.pb"}

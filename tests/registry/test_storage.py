"""Artifact storage: orphans left by a crash between storing a file and committing its row are collected."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from registry.models import ModelVersion
from registry.services.versions import Upload, model_version_create, registered_model_create
from registry.storage import artifact_key, artifact_orphans_delete, artifact_put
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.conftest import stored_files
from tests.registry.model_files import onnx_file
from tests.teams.factories import create_membership

pytestmark = pytest.mark.django_db


def _age(path: Path, seconds: int) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_only_old_unreferenced_objects_are_collected(tmp_path: Path, artifact_dir: Path) -> None:
    membership = create_membership(role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="m")
    kept = onnx_file(tmp_path / "kept.onnx", seed=1)
    digest = hashlib.sha256(kept.read_bytes()).hexdigest()
    model_version_create(actor=actor, model=model, upload=Upload(kept, "kept.onnx", digest, kept.stat().st_size))
    # A crash after storing but before the row: an orphan. And a fresh one an upload is still committing.
    orphan, fresh = tmp_path / "orphan.bin", tmp_path / "fresh.bin"
    orphan.write_bytes(b"orphan")
    fresh.write_bytes(b"fresh")
    orphan_key, _ = artifact_put(path=orphan, sha256=hashlib.sha256(b"orphan").hexdigest())
    artifact_put(path=fresh, sha256=hashlib.sha256(b"fresh").hexdigest())
    for path in stored_files(artifact_dir):
        if path.name != hashlib.sha256(b"fresh").hexdigest():
            _age(path, 7200)

    assert artifact_orphans_delete(older_than=timedelta(hours=1)) == [orphan_key]
    names = {p.name for p in stored_files(artifact_dir)}
    assert names == {digest, hashlib.sha256(b"fresh").hexdigest()}
    assert ModelVersion.objects.get().artifact_key == artifact_key(digest)


def test_no_storage_folder_yet_is_fine(artifact_dir: Path) -> None:
    assert artifact_orphans_delete(older_than=timedelta(0)) == []


def test_stale_job_scratch_folders_are_removed(tmp_path: Path) -> None:
    from registry.signals import stale_temp_dirs_delete

    old, fresh, other = tmp_path / "modeldeck-old", tmp_path / "modeldeck-fresh", tmp_path / "someone-else"
    for folder in (old, fresh, other):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"x")
    _age(old, 7200)
    _age(other, 7200)
    assert stale_temp_dirs_delete(tmp_path) == [old]
    assert not old.exists()
    assert fresh.exists()
    assert other.exists()

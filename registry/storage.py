"""Artifact storage: model files and samples under content-addressed keys, through Django's storage API."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db.models import Q
from django.utils import timezone

from registry.models import ModelVersion

HASH_CHUNK = 1024 * 1024


def artifact_storage() -> Storage:
    return storages["artifacts"]


def artifact_key(sha256: str) -> str:
    """Name the stored object by its content: identical uploads share one key (and one copy)."""
    return f"sha256/{sha256[:2]}/{sha256}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_put(*, path: Path, sha256: str) -> tuple[str, bool]:
    """Store the file under its content key unless it is there already; return (key, whether we wrote it)."""
    storage = artifact_storage()
    key = artifact_key(sha256)
    if storage.exists(key):
        return key, False
    with path.open("rb") as handle:
        saved = storage.save(key, File(handle, name=key))
    if saved != key:
        # A concurrent upload of the same bytes stored the key first; ours got a fresh name. Keep one copy.
        storage.delete(saved)
        return key, False
    return key, True


def artifact_delete_if_unreferenced(key: str) -> None:
    """Remove a stored object no version or sample points to (cleanup after a failed create)."""
    referenced = ModelVersion.objects.filter(Q(artifact_key=key) | Q(sample_key=key)).exists()
    if not referenced:
        artifact_storage().delete(key)


def artifact_orphans_delete(*, older_than: timedelta) -> list[str]:
    """Delete stored objects no version points to and older than `older_than` (left by a crash mid-upload).

    The age guard keeps this from racing an upload whose file is stored but whose row is not committed yet.
    """
    storage = artifact_storage()
    cutoff = timezone.now() - older_than
    deleted: list[str] = []
    try:
        prefixes, _ = storage.listdir("sha256")
    except FileNotFoundError:  # nothing stored yet (local disk; object stores list an empty prefix)
        return deleted
    for prefix in prefixes:
        _, names = storage.listdir(f"sha256/{prefix}")
        for name in names:
            key = f"sha256/{prefix}/{name}"
            if storage.get_modified_time(key) >= cutoff:
                continue
            if not ModelVersion.objects.filter(Q(artifact_key=key) | Q(sample_key=key)).exists():
                storage.delete(key)
                deleted.append(key)
    return deleted


@contextmanager
def artifact_local_path(key: str) -> Iterator[Path]:
    """Give a local file path for a stored object (the file itself on local disk, else a temporary copy)."""
    storage = artifact_storage()
    try:
        local: str | None = storage.path(key)
    except NotImplementedError:  # remote storage (S3): no local path
        local = None
    if local is not None:
        yield Path(local)
        return
    with tempfile.NamedTemporaryFile(prefix="modeldeck-artifact-") as copy, storage.open(key, "rb") as source:
        shutil.copyfileobj(source, copy, HASH_CHUNK)
        copy.flush()
        yield Path(copy.name)

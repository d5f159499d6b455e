"""The artifact store works the same on S3-compatible object storage (an in-process S3 from moto)."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from registry.storage import (
    artifact_key,
    artifact_local_path,
    artifact_orphans_delete,
    artifact_put,
    artifact_storage,
)

BUCKET = "modeldeck-test"


@pytest.fixture
def s3(settings, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        settings.STORAGES = {
            **settings.STORAGES,
            "artifacts": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {
                    "bucket_name": BUCKET,
                    "region_name": "us-east-1",
                    "file_overwrite": False,
                    "default_acl": None,
                },
            },
        }
        yield boto3.client("s3", region_name="us-east-1")


def test_put_is_content_addressed_and_once_only(s3, tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert artifact_put(path=path, sha256=digest) == (artifact_key(digest), True)
    assert artifact_put(path=path, sha256=digest) == (artifact_key(digest), False)
    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert [o["Key"] for o in listed] == [artifact_key(digest)]
    with artifact_local_path(artifact_key(digest)) as local:
        assert local.read_bytes() == path.read_bytes()
    with artifact_storage().open(artifact_key(digest), "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == digest


@pytest.mark.django_db
def test_orphans_are_listed_and_deleted_on_s3(s3, tmp_path: Path) -> None:
    path = tmp_path / "orphan.bin"
    path.write_bytes(b"left by a crash")
    key, _ = artifact_put(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    # A negative age puts the cutoff in the future, so the object just written counts as old enough.
    assert artifact_orphans_delete(older_than=timedelta(seconds=-60)) == [key]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0

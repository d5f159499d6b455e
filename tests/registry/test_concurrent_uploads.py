"""Concurrent uploads to one model on real PostgreSQL: numbers 1..N with no gaps or repeats, one copy per content."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from registry.models import ModelVersion, RegisteredModel
from registry.services.versions import Upload, model_version_create, registered_model_create
from teams.choices import Role
from teams.permissions import Actor
from tests.registry.conftest import stored_files
from tests.registry.model_files import onnx_file
from tests.teams.factories import create_membership

pytestmark = pytest.mark.django_db(transaction=True)

UPLOADS = 12


def test_concurrent_uploads_number_without_gaps_and_dedupe(tmp_path: Path, artifact_dir: Path) -> None:
    assert connection.vendor == "postgresql"
    membership = create_membership(role=Role.DEVELOPER)
    actor = Actor(user=membership.user)
    model = registered_model_create(actor=actor, team=membership.team, name="busy")
    # Four distinct files, each uploaded three times at once.
    files = [onnx_file(tmp_path / f"m{seed}.onnx", seed=seed) for seed in range(4)]

    def push(index: int) -> int:
        path = files[index % len(files)]
        try:
            upload = Upload(
                path=path,
                filename=path.name,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                size=path.stat().st_size,
            )
            return model_version_create(
                actor=Actor(user=membership.user), model=RegisteredModel.objects.get(pk=model.pk), upload=upload
            ).number
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        numbers = list(pool.map(push, range(UPLOADS)))
    assert sorted(numbers) == list(range(1, UPLOADS + 1))
    assert sorted(ModelVersion.objects.values_list("number", flat=True)) == list(range(1, UPLOADS + 1))
    assert ModelVersion.objects.values("sha256").distinct().count() == len(files)
    assert len(stored_files(artifact_dir)) == len(files)

"""Concurrent uploads to one model on real PostgreSQL: numbers 1..N with no gaps or repeats, one version and one
stored copy per content (the same bytes sent at once make one version; the others are told which)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connection

from common.errors import ApplicationError
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

    def push(index: int) -> int | str:
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
        except ApplicationError as exc:
            return f"{exc.code}: v{exc.detail.get('version')} ({path.name})"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(push, range(UPLOADS)))
    numbers = [outcome for outcome in outcomes if isinstance(outcome, int)]
    assert sorted(numbers) == list(range(1, len(files) + 1))
    assert sorted(ModelVersion.objects.values_list("number", flat=True)) == list(range(1, len(files) + 1))
    assert ModelVersion.objects.values("sha256").distinct().count() == len(files)
    # Every other upload of a file was told the version that holds it.
    by_file = {v.filename: v.number for v in ModelVersion.objects.all()}
    duplicates = [outcome for outcome in outcomes if isinstance(outcome, str)]
    expected = [f"duplicate_version: v{number} ({name})" for name, number in by_file.items() for _ in (1, 2)]
    assert sorted(duplicates) == sorted(expected)
    assert len(stored_files(artifact_dir)) == len(files)

"""Archive and unarchive models and versions; collect the files of versions archived long enough that nothing keeps.

Archiving hides a model or a version from the default lists and refuses it for new versions and deployments; nothing
is lost and it can be undone. What a higher layer still uses (an endpoint's live release) cannot be archived: the
registry asks through `registry.signals.versions_in_use` (deployments answers), as it sits below deployments.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common.errors import ApplicationError
from common.events import team_event_publish
from registry.models import ModelVersion, RegisteredModel
from registry.services.version_events import version_publish
from registry.signals import versions_in_use
from registry.storage import artifact_delete_if_unreferenced
from teams.choices import Action
from teams.permissions import Actor, actor_require
from teams.services import audit_record

logger = logging.getLogger(__name__)


def version_uses(*, version_ids: list[int], purpose: str) -> list[dict[str, Any]]:
    """What the layers above still do with these versions: [{"version", "endpoint", "role"}, ...] (see the signal)."""
    uses: list[dict[str, Any]] = []
    for _receiver, answer in versions_in_use.send(sender=ModelVersion, versions=version_ids, purpose=purpose):
        if isinstance(answer, list):
            uses.extend(answer)
    return uses


def _uses_text(uses: list[dict[str, Any]], numbers: dict[int, int]) -> str:
    return ", ".join(f"{use['endpoint']} (v{numbers[use['version']]} {use['role']})" for use in uses)


def _uses_detail(uses: list[dict[str, Any]], numbers: dict[int, int]) -> list[dict[str, Any]]:
    return [{"endpoint": use["endpoint"], "version": numbers[use["version"]], "role": use["role"]} for use in uses]


def _model_publish(model: RegisteredModel) -> None:
    """Tell the team's live stream that a model was archived or unarchived; a stream that is away fails nothing."""
    data = {"model": model.name, "archived": model.archived_at is not None}
    try:
        team_event_publish(team=model.team.slug, kind="model", data=data)
    except Exception:
        logger.warning("Could not publish model %s to the team stream", model.pk, exc_info=True)


def version_archive(*, actor: Actor, version: ModelVersion) -> ModelVersion:
    """Archive a version: hidden from default lists and never newly deployed. Refused while an endpoint's live release
    serves it (primary, canary or shadow); archiving an archived version changes nothing."""
    model = version.model
    actor_require(actor=actor, team=model.team, action=Action.DEVELOP)
    with transaction.atomic():
        # The row lock orders this against a promote of the same version (deployments locks it too, then checks
        # `archived_at`): whichever commits first, the other sees it.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.archived_at is not None:
            return model_version_refresh(version)
        uses = version_uses(version_ids=[locked.pk], purpose="archive")
        if uses:
            numbers = {locked.pk: locked.number}
            raise ApplicationError(
                "version_in_use",
                f"v{locked.number} of '{model.name}' is live on {_uses_text(uses, numbers)}: promote another version "
                "there, or delete the endpoint, before archiving it.",
                {"endpoints": _uses_detail(uses, numbers)},
                status=409,
            )
        now = timezone.now()
        ModelVersion.objects.filter(pk=locked.pk).update(
            archived_at=now, archived_by=actor.authenticated_user, updated_at=now
        )
        audit_record(
            team=model.team,
            actor=actor,
            action="version.archive",
            target=locked,
            data={"model": model.name, "number": locked.number},
        )
        archived = model_version_refresh(version)
        transaction.on_commit(lambda: version_publish(archived))
    return archived


def version_unarchive(*, actor: Actor, version: ModelVersion) -> ModelVersion:
    """Bring an archived version back. Refused once its files were collected, and while its model is archived."""
    model = version.model
    actor_require(actor=actor, team=model.team, action=Action.DEVELOP)
    with transaction.atomic():
        # The version's row alone: model_archive locks the model, then its versions; joining the model here would
        # take them the other way round.
        locked = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if locked.archived_at is None:
            return model_version_refresh(version)
        if locked.artifacts_deleted_at is not None:
            raise ApplicationError(
                "artifacts_deleted",
                f"v{locked.number} of '{model.name}' cannot be unarchived: its files were deleted on "
                f"{locked.artifacts_deleted_at:%Y-%m-%d}, {settings.MODELDECK_ARTIFACT_RETENTION_DAYS} days or more "
                "after it was archived (MODELDECK_ARTIFACT_RETENTION_DAYS). Upload the file again as a new version.",
                {"artifacts_deleted_at": locked.artifacts_deleted_at.isoformat()},
                status=409,
            )
        if RegisteredModel.objects.filter(pk=model.pk, archived_at__isnull=False).exists():
            raise ApplicationError(
                "model_archived",
                f"'{model.name}' is archived: unarchive the model first (that brings back the versions archived with "
                "it).",
                status=409,
            )
        now = timezone.now()
        ModelVersion.objects.filter(pk=locked.pk).update(archived_at=None, archived_by=None, updated_at=now)
        audit_record(
            team=model.team,
            actor=actor,
            action="version.unarchive",
            target=locked,
            data={"model": model.name, "number": locked.number, "archived_at": locked.archived_at.isoformat()},
        )
        unarchived = model_version_refresh(version)
        transaction.on_commit(lambda: version_publish(unarchived))
    return unarchived


def model_archive(*, actor: Actor, model: RegisteredModel) -> RegisteredModel:
    """Archive a model and, with it, its versions not archived yet: hidden from default lists, no new versions, no
    deployments. Refused while any endpoint serves one of its versions (an endpoint is bound to its model)."""
    actor_require(actor=actor, team=model.team, action=Action.DEVELOP)
    with transaction.atomic():
        # Model row first (uploads and endpoint creation lock it), then the versions' rows (promotes lock them).
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        if locked.archived_at is not None:
            return _model_refresh(model)
        versions = list(
            ModelVersion.objects.select_for_update()
            .filter(model=locked)
            .order_by("number")
            .values_list("pk", "number", "archived_at")
        )
        numbers = {pk: number for pk, number, _ in versions}
        uses = version_uses(version_ids=list(numbers), purpose="archive")
        if uses:
            endpoints = sorted({use["endpoint"] for use in uses})
            raise ApplicationError(
                "model_in_use",
                f"'{locked.name}' is still served by {_uses_text(uses, numbers)}: delete "
                f"{'that endpoint' if len(endpoints) == 1 else 'those endpoints'} before archiving the model.",
                {"endpoints": _uses_detail(uses, numbers)},
                status=409,
            )
        now = timezone.now()
        user = actor.authenticated_user
        RegisteredModel.objects.filter(pk=locked.pk).update(archived_at=now, archived_by=user, updated_at=now)
        # The same instant as the model's: unarchiving the model brings back exactly these.
        with_it = [number for _, number, archived_at in versions if archived_at is None]
        ModelVersion.objects.filter(model=locked, archived_at__isnull=True).update(
            archived_at=now, archived_by=user, updated_at=now
        )
        audit_record(
            team=locked.team,
            actor=actor,
            action="model.archive",
            target=locked,
            data={"name": locked.name, "versions": with_it},
        )
        archived = _model_refresh(model)
        transaction.on_commit(lambda: _model_publish(archived))
    return archived


def model_unarchive(*, actor: Actor, model: RegisteredModel) -> RegisteredModel:
    """Bring an archived model back with the versions archived with it (not those archived on their own before, nor
    those whose files were collected: they stay archived)."""
    actor_require(actor=actor, team=model.team, action=Action.DEVELOP)
    with transaction.atomic():
        locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
        if locked.archived_at is None:
            return _model_refresh(model)
        with_it = ModelVersion.objects.select_for_update().filter(model=locked, archived_at=locked.archived_at)
        restored = sorted(with_it.filter(artifacts_deleted_at__isnull=True).values_list("number", flat=True))
        collected = sorted(with_it.exclude(artifacts_deleted_at=None).values_list("number", flat=True))
        now = timezone.now()
        with_it.filter(artifacts_deleted_at__isnull=True).update(archived_at=None, archived_by=None, updated_at=now)
        RegisteredModel.objects.filter(pk=locked.pk).update(archived_at=None, archived_by=None, updated_at=now)
        audit_record(
            team=locked.team,
            actor=actor,
            action="model.unarchive",
            target=locked,
            data={"name": locked.name, "versions": restored, "files_deleted": collected},
        )
        unarchived = _model_refresh(model)
        transaction.on_commit(lambda: _model_publish(unarchived))
    return unarchived


def model_version_refresh(version: ModelVersion) -> ModelVersion:
    return ModelVersion.objects.select_related(
        "model__team", "created_by", "parent", "parity_override_by", "archived_by"
    ).get(pk=version.pk)


def _model_refresh(model: RegisteredModel) -> RegisteredModel:
    return RegisteredModel.objects.select_related("team", "created_by", "archived_by").get(pk=model.pk)


def artifacts_collect(*, now: datetime | None = None) -> list[ModelVersion]:
    """Delete the stored files of versions archived for MODELDECK_ARTIFACT_RETENTION_DAYS that no endpoint keeps (its
    live release, or what its rollback could bring back); the rows stay, marked `artifacts_deleted_at`. Audited.

    Safe to run twice at once: each version is marked under its row lock, once; a file is deleted only when no
    other version (of any model: storage is content-addressed) still points to it.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.MODELDECK_ARTIFACT_RETENTION_DAYS)
    due = ModelVersion.objects.filter(archived_at__lte=cutoff, artifacts_deleted_at__isnull=True)
    candidates = list(due.values_list("pk", flat=True))
    if not candidates:
        return []
    kept = {use["version"] for use in version_uses(version_ids=candidates, purpose="collect")}
    collected: list[ModelVersion] = []
    for pk in candidates:
        if pk in kept:
            continue
        with transaction.atomic():
            version = due.select_for_update().filter(pk=pk).first()
            # Gone from `due`: another collector took it, or it was unarchived since.
            if version is None or version_uses(version_ids=[pk], purpose="collect"):
                continue
            keys = [key for key in (version.artifact_key, version.sample_key) if key]
            ModelVersion.objects.filter(pk=pk).update(
                artifacts_deleted_at=now, artifact_key="", sample_key="", updated_at=now
            )
            model = version.model
            audit_record(
                team=model.team,
                actor=None,
                action="version.artifacts_delete",
                target=version,
                data={
                    "model": model.name,
                    "number": version.number,
                    "sha256": version.sha256,
                    "size": version.size,
                    "keys": keys,
                    "archived_at": version.archived_at.isoformat() if version.archived_at else None,
                    "retention_days": settings.MODELDECK_ARTIFACT_RETENTION_DAYS,
                },
            )
        # After the commit: a crash here leaves only unreferenced files, which the orphan sweep removes.
        for key in keys:
            artifact_delete_if_unreferenced(key)
        collected.append(model_version_refresh(version))
    if collected:
        logger.info("Deleted the files of %d archived version(s)", len(collected))
    return collected

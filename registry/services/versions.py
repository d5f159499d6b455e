"""Writes of the registry: create models, add versions from uploads, finish inspections in the worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from common.errors import ApplicationError
from registry.choices import VersionStatus
from registry.formats import FORMATS, detect, precheck
from registry.formats.base import Inspection, ModelFileError
from registry.formats.pickled import PICKLE_REFUSAL_MESSAGE
from registry.load_check import is_servable, runtime_load_check
from registry.models import ModelVersion, RegisteredModel
from registry.samples import sample_check, sample_summarize
from registry.services.benchmarks import auto_benchmark
from registry.services.conversions import auto_conversions_enqueue
from registry.services.jobs import Heartbeat, task_send
from registry.services.version_events import version_publish
from registry.storage import artifact_delete_if_unreferenced, artifact_local_path, artifact_put
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_require
from teams.services import audit_record

logger = logging.getLogger(__name__)

MAX_TAGS = 20
# A version processing with no sign of a live inspection (its worker touches updated_at) this long is sent again:
# its message never reached the broker (it was away at upload), was lost with it, or its worker died.
INSPECTION_LOST_AFTER = timedelta(seconds=60)
# A version still processing this long after its upload is failed: its inspection keeps dying.
INSPECTION_GIVE_UP_AFTER = timedelta(hours=3)
# The Celery task that inspects an uploaded version in the worker (registry/tasks.py declares it under this name).
INSPECT_TASK = "registry.tasks.model_version_inspect_task"


@dataclass(frozen=True)
class Upload:
    """A received file: where it sits on local disk, the name it came with, and its hash and size."""

    path: Path
    filename: str
    sha256: str
    size: int


def registered_model_create(*, actor: Actor, team: Team, name: str, description: str = "") -> RegisteredModel:
    """Register a model name in the team."""
    actor_require(actor=actor, team=team, action=Action.DEVELOP)
    model = RegisteredModel(team=team, name=name, description=description, created_by=actor.authenticated_user)
    try:
        model.full_clean(exclude=["team", "created_by"], validate_unique=False)
    except ValidationError as exc:
        raise ApplicationError("invalid", "Invalid model.", exc.message_dict) from exc
    try:
        with transaction.atomic():
            model.save()
            audit_record(team=team, actor=actor, action="model.create", target=model, data={"name": name})
    except IntegrityError as exc:
        raise ApplicationError(
            "already_exists", f"Team '{team.slug}' already has a model named '{name}'.", status=409
        ) from exc
    return model


def _clean_tags(tags: list[str]) -> list[str]:
    cleaned = sorted({t.strip() for t in tags if t.strip()})
    if len(cleaned) > MAX_TAGS or any(len(t) > 64 for t in cleaned):
        raise ApplicationError("invalid", f"Use at most {MAX_TAGS} tags of at most 64 characters.")
    return cleaned


def model_version_create(
    *,
    actor: Actor,
    model: RegisteredModel,
    upload: Upload,
    sample: Upload | None = None,
    description: str = "",
    tags: list[str] | None = None,
) -> ModelVersion:
    """Add a version from an uploaded file: sniff it, inspect it here or queue it for a worker, store it once.

    A bad file raises before anything is stored. The row and the stored file appear together: a failure
    after storing removes what this call stored unless another version already points to it.
    """
    team = model.team
    actor_require(actor=actor, team=team, action=Action.DEVELOP)
    tags = _clean_tags(tags or [])
    _refuse_archived(model)
    _refuse_duplicate(model, upload.sha256)
    fmt = detect(upload.path, upload.filename)
    if fmt.name == "pickle" and not team.trusted_pickle:
        raise ModelFileError("pickle_refused", PICKLE_REFUSAL_MESSAGE, {"team": team.slug})
    precheck(fmt, upload.path)
    inline = not fmt.needs_worker and upload.size <= settings.MODELDECK_INLINE_INSPECT_MAX_BYTES
    inspection = fmt.inspect(upload.path) if inline else None
    sample_summary = sample_summarize(sample.path, sample.filename) if sample else None
    if inspection is not None and sample_summary is not None:
        problem = sample_check(sample_summary, inspection.signature)
        if problem:
            raise ModelFileError("sample_mismatch", problem)
    if inspection is not None:
        _check_loads(fmt.name, upload.path, inspection, upload.sha256)

    stored: list[str] = []
    try:
        key, wrote = artifact_put(path=upload.path, sha256=upload.sha256)
        if wrote:
            stored.append(key)
        sample_key = ""
        if sample is not None:
            sample_key, wrote = artifact_put(path=sample.path, sha256=sample.sha256)
            if wrote:
                stored.append(sample_key)
        with transaction.atomic():
            # Lock the model row: concurrent uploads take numbers one after another, with no gaps.
            RegisteredModel.objects.select_for_update().filter(pk=model.pk).exists()
            _refuse_archived(model)  # again under the lock: model_archive takes it too
            _refuse_duplicate(model, upload.sha256)  # again under the lock: the same bytes uploaded twice at once
            last = model.versions.aggregate(last=Max("number"))["last"] or 0
            version = ModelVersion(
                model=model,
                number=last + 1,
                format=fmt.name,
                artifact_key=key,
                filename=upload.filename[:255],
                sha256=upload.sha256,
                size=upload.size,
                description=description,
                tags=tags,
                created_by=actor.authenticated_user,
                sample_key=sample_key,
                sample_filename=sample.filename[:255] if sample else "",
                metadata={"sample": sample_summary} if sample_summary is not None else {},
            )
            if inspection is not None:
                _apply_inspection(version, inspection)
            else:
                version.status = VersionStatus.PROCESSING
            version.save()
            audit_record(
                team=team,
                actor=actor,
                action="version.create",
                target=version,
                data={"model": model.name, "number": version.number, "format": fmt.name, "sha256": upload.sha256},
            )
            if version.status == VersionStatus.PROCESSING:
                version_id = version.pk
                transaction.on_commit(lambda: task_send(INSPECT_TASK, version_id))
            elif version.metadata.get("serving_rewrite"):
                auto_conversions_enqueue(version)
            else:
                auto_benchmark(version)
    except BaseException:
        for stored_key in stored:
            artifact_delete_if_unreferenced(stored_key)
        raise
    # A concurrent failed upload of the same bytes may have removed the shared object between our
    # existence check and our commit; put it back from our copy, which is still at hand.
    for path, digest in [(upload.path, upload.sha256)] + ([(sample.path, sample.sha256)] if sample else []):
        artifact_put(path=path, sha256=digest)
    version_publish(version)
    return version


def _refuse_archived(model: RegisteredModel) -> None:
    """Refuse a new version of an archived model: an archived model takes nothing new until it is unarchived."""
    if RegisteredModel.objects.filter(pk=model.pk, archived_at__isnull=False).exists():
        raise ApplicationError(
            "model_archived",
            f"'{model.name}' is archived: unarchive it first to add versions.",
            {"model": model.name},
            status=409,
        )


def _refuse_duplicate(model: RegisteredModel, sha256: str) -> None:
    """Refuse bytes that a version of this model already holds (an upload or a conversion's result), naming it: a
    second version of the same file would only be a copy. A failed version does not count (uploading it again, with
    another sample, is how it is fixed), nor one whose files were collected (uploading it again brings it back)."""
    same = (
        model.versions.filter(sha256=sha256, artifacts_deleted_at__isnull=True)
        .exclude(status=VersionStatus.FAILED)
        .order_by("number")
        .first()
    )
    if same is not None:
        made = f" (converted from v{same.parent.number})" if same.parent is not None else ""
        use = f"unarchive v{same.number} (it is archived)" if same.archived_at is not None else f"use v{same.number}"
        raise ApplicationError(
            "duplicate_version",
            f"This file is identical to v{same.number}{made} of '{model.name}' (sha256 {sha256[:12]}…): no version "
            f"was added. {use[0].upper()}{use[1:]}, or upload the changed file.",
            {"version": same.number, "sha256": sha256},
            status=409,
        )


def _check_loads(format_name: str, path: Path, inspection: Inspection, sha256: str) -> None:
    """Refuse a servable file its serving runtime cannot load and run (in a child process, within limits)."""
    if is_servable(format_name, inspection.metadata):
        runtime_load_check(format_name=format_name, path=path, signature=inspection.signature, sha256=sha256)


def _apply_inspection(version: ModelVersion, inspection: Inspection) -> None:
    fields = inspection.to_fields()
    version.signature = fields["signature"]
    version.framework = fields["framework"]
    version.framework_version = fields["framework_version"]
    version.metadata = {**version.metadata, **fields["metadata"]}
    version.status = VersionStatus.READY
    version.status_message = ""


def model_version_inspect(*, version_id: int) -> ModelVersion | None:
    """Inspect a `processing` version in the worker, check it loads where it is served, and mark it `ready` or
    `failed` with the reason."""
    version = ModelVersion.objects.select_related("model__team").filter(pk=version_id).first()
    if version is None or version.status != VersionStatus.PROCESSING:
        return version  # already finished (a retry or a duplicate delivery)
    fmt = FORMATS[version.format]
    processing = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.PROCESSING)
    processing.update(updated_at=timezone.now())  # alive: the reaper leaves a running inspection alone
    try:
        if fmt.name == "pickle" and not version.model.team.trusted_pickle:
            raise ModelFileError("pickle_refused", PICKLE_REFUSAL_MESSAGE)
        with artifact_local_path(version.artifact_key) as path, Heartbeat(processing, field="updated_at"):
            inspection = fmt.inspect(path)
            sample = version.metadata.get("sample")
            problem = sample_check(sample, inspection.signature) if sample is not None else None
            if problem:
                raise ModelFileError("sample_mismatch", problem)
            _check_loads(fmt.name, path, inspection, version.sha256)
    except ModelFileError as exc:
        key = version.artifact_key
        # A model whose sample does not fit it is not a bad file: only the file's own refusals delete it.
        refused = exc.code != "sample_mismatch"
        finished = _finish(version, VersionStatus.FAILED, exc.message, refused=refused)
        if finished.status == VersionStatus.FAILED and not finished.artifact_key:
            # A file the worker refused (code it would run, a corrupt model) is not kept: nothing can use it.
            artifact_delete_if_unreferenced(key)
        return finished
    except Exception:
        logger.exception("Inspecting %s failed", version)
        return _finish(version, VersionStatus.FAILED, "Inspection failed unexpectedly; the error has been logged.")
    _apply_inspection(version, inspection)
    return _finish(version, VersionStatus.READY, "", inspection)


def versions_inspect_resend(*, now: Any = None) -> list[int]:
    """Send the inspection of versions stuck processing again; fail those processing past INSPECTION_GIVE_UP_AFTER.

    A duplicate inspection is harmless: only a version still processing is finished, once.
    """
    now = now or timezone.now()
    stuck = ModelVersion.objects.filter(status=VersionStatus.PROCESSING, updated_at__lt=now - INSPECTION_LOST_AFTER)
    given_up = stuck.filter(created_at__lt=now - INSPECTION_GIVE_UP_AFTER).update(
        status=VersionStatus.FAILED,
        status_message="Its inspection never finished (a worker kept dying on it, or none was running); "
        "upload it again.",
        updated_at=now,
    )
    if given_up:
        logger.warning("%d version(s) failed: inspection never finished", given_up)
    sent = []
    for pk, updated_at in stuck.values_list("pk", "updated_at"):
        # Conditional on what we read: an inspection that started meanwhile is left alone.
        if ModelVersion.objects.filter(pk=pk, status=VersionStatus.PROCESSING, updated_at=updated_at).update(
            updated_at=now
        ) and task_send(INSPECT_TASK, pk):
            sent.append(pk)
    return sent


def _finish(
    version: ModelVersion, status: str, message: str, inspection: Inspection | None = None, *, refused: bool = False
) -> ModelVersion:
    fields: dict[str, object] = {"status": status, "status_message": message}
    if refused:
        fields["artifact_key"] = ""  # the row stays, with why; its file is deleted by the caller
    if inspection is not None:
        fields |= {
            "signature": version.signature,
            "framework": version.framework,
            "framework_version": version.framework_version,
            "metadata": version.metadata,
        }
    # Conditional: only a version still processing is finished, so two deliveries of the task cannot race.
    finished = ModelVersion.objects.filter(pk=version.pk, status=VersionStatus.PROCESSING).update(**fields)
    version.refresh_from_db()
    if finished:
        version_publish(version)
    return version

"""Conversions as jobs: request one, run it in a worker (convert, inspect, check parity, store), auto-convert."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from common.errors import ApplicationError
from registry.choices import JobKind, VersionStatus
from registry.converters import conversion_supported, convert, supported_recipes
from registry.formats import FORMATS
from registry.formats.base import ConversionError, Recipe, describe_differences
from registry.models import Job, ModelVersion, RegisteredModel
from registry.selectors import version_archived_reason, version_signature
from registry.services.benchmarks import auto_benchmark
from registry.services.jobs import JobOutcome, job_create, job_progress
from registry.services.parity import load_runner, parity_report, sample_inputs
from registry.services.version_events import version_publish
from registry.storage import artifact_delete_if_unreferenced, artifact_local_path, artifact_put, file_sha256
from registry.synthetic_inputs import synthesize_inputs
from teams.choices import Action
from teams.permissions import Actor, actor_require
from teams.services import audit_record

# Formats the serving runtimes cannot run directly; uploads of these are converted automatically.
NEEDS_SERVING_FORMAT = ("keras", "savedmodel", "sklearn", "pickle")
EXTENSIONS = {"onnx": ".onnx", "tflite": ".tflite"}
PARITY_ROWS = 64


def version_convert_request(*, actor: Actor, version: ModelVersion, recipe: Recipe) -> Job:
    """Queue a conversion of a ready version (an identical queued or running one is returned instead)."""
    actor_require(actor=actor, team=version.model.team, action=Action.DEVELOP)
    archived = version_archived_reason(version)
    if archived:
        raise ApplicationError("archived", archived, status=409)
    if version.status != VersionStatus.READY:
        raise ApplicationError(
            "version_not_ready",
            f"Version {version.number} is {version.status}; only ready versions convert.",
            status=409,
        )
    if version.recipe.get("quantization", "none") != "none":
        raise ConversionError(
            "already_quantized",
            f"Version {version.number} is already quantized ({version.recipe_key}); convert its parent instead.",
        )
    if not conversion_supported(version.format, recipe, version.metadata):
        supported = [r.key for r in supported_recipes(version.format, version.metadata)]
        raise ConversionError(
            "unsupported_conversion",
            f"A {FORMATS[version.format].label} version cannot be converted to {recipe.key}; "
            f"supported: {', '.join(supported) or 'none'}.",
            {"supported": supported},
        )
    return job_create(actor=actor, version=version, kind=JobKind.CONVERT, params=recipe.to_dict())


def auto_conversions_enqueue(version: ModelVersion) -> list[Job]:
    """Convert a fresh upload that serving cannot run to the team's automatic targets (or to its served form)."""
    if version.status != VersionStatus.READY or version.recipe_key:
        return []
    if version.metadata.get("serving_rewrite"):
        # A file that must be rewritten to be served (an ONNX ZipMap export) always gets its served form.
        recipes = list(supported_recipes(version.format, version.metadata))
    elif version.format in NEEDS_SERVING_FORMAT:
        recipes = [Recipe(target=target) for target in version.model.team.auto_convert_targets]
    else:
        return []
    jobs = []
    for recipe in recipes:
        # Once per upload: a redelivered inspection must not queue the conversions again.
        asked_before = Job.objects.filter(version=version, kind=JobKind.CONVERT, params=recipe.to_dict()).exists()
        if conversion_supported(version.format, recipe, version.metadata) and not asked_before:
            jobs.append(job_create(actor=None, version=version, kind=JobKind.CONVERT, params=recipe.to_dict()))
    return jobs


def conversion_job_run(job: Job) -> JobOutcome:
    """Convert the job's version, inspect the result, check its parity against the parent, and store it."""
    parent = job.version
    recipe = Recipe(**job.params)
    existing = ModelVersion.objects.filter(parent=parent, recipe_key=recipe.key).first()
    if existing is not None:
        job_progress(job, 100, f"already converted as v{existing.number}; nothing to do")
        return {"reused": True, "parity": existing.parity}, existing
    signature = version_signature(parent)
    job_progress(job, 5, f"converting v{parent.number} ({parent.format}) to {recipe.key}")
    with artifact_local_path(parent.artifact_key) as source, tempfile.TemporaryDirectory(prefix="modeldeck-") as tmp:
        conversion = convert(parent.format, source, recipe, Path(tmp) / "out", signature, parent.metadata)
        inspection = conversion.inspection
        for rewrite in conversion.rewrites:
            job_progress(job, 50, rewrite)
        job_progress(job, 60, "converted; checking parity against the parent")
        if parent.sample_key:
            with artifact_local_path(parent.sample_key) as sample:
                inputs, input_source = sample_inputs(sample, signature), "sample"
        else:
            # 64 rows: enough that one flipped top-1 row among near-ties does not fail an int8 report on its own.
            categories = parent.metadata.get("categories")
            inputs = synthesize_inputs(signature, seed=0, rows=PARITY_ROWS, categories=categories)
            input_source = "synthetic"
        report = parity_report(
            parent=load_runner(parent.format, source),
            child=load_runner(recipe.target, conversion.path),
            parent_signature=signature,
            child_signature=inspection.signature,
            recipe=recipe,
            inputs=inputs,
            input_source=input_source,
        )
        report["signature"] = signature_report(conversion.signature_changes, conversion.rewrites)
        job_progress(job, 85, f"parity {'passed' if report['passed'] else 'FAILED'}: {report['reason']}")
        job_progress(job, 86, report["signature"]["summary"])
        fields = inspection.to_fields()
        if conversion.rewrites:
            fields["metadata"] = {**fields["metadata"], "rewrites": conversion.rewrites}
        child = _converted_version_store(job, parent, recipe, conversion.path, fields, report)
    job_progress(job, 95, f"stored as v{child.number}; queueing its benchmark")
    auto_benchmark(child)
    return {"parity": report}, child


def signature_report(changes: list[dict[str, Any]], rewrites: list[str]) -> dict[str, Any]:
    """What the parity report says of the converted version's signature: kept, or exactly how it changed."""
    if changes:
        summary = f"The converted version's signature differs from its parent's: {describe_differences(changes)}."
    else:
        summary = "The converted version keeps its parent's input and output names, datatypes and shapes."
    if rewrites:
        summary += f" Edits made to the converted file: {'; '.join(rewrites)}."
    return {"kept": not changes, "changes": changes, "rewrites": rewrites, "summary": summary}


def _converted_version_store(
    job: Job, parent: ModelVersion, recipe: Recipe, path: Path, fields: dict[str, Any], report: dict[str, Any]
) -> ModelVersion:
    sha256 = file_sha256(path)
    key, wrote = artifact_put(path=path, sha256=sha256)
    model = parent.model
    suffix = "" if recipe.quantization == "none" else f"-{recipe.quantization}"
    try:
        with transaction.atomic():
            # Under the model's lock (model_archive takes it): a model archived while the conversion ran gets its
            # child archived with it, at the same instant, so unarchiving the model brings the child back too.
            archived = (
                RegisteredModel.objects.select_for_update().filter(pk=model.pk).values("archived_at", "archived_by")
            )
            last = model.versions.aggregate(last=Max("number"))["last"] or 0
            child = ModelVersion.objects.create(
                model=model,
                number=last + 1,
                format=recipe.target,
                artifact_key=key,
                filename=f"{model.name}-v{parent.number}{suffix}{EXTENSIONS[recipe.target]}",
                sha256=sha256,
                size=path.stat().st_size,
                status=VersionStatus.READY,
                description=f"v{parent.number} converted to {recipe.key}",
                created_by=job.created_by,
                parent=parent,
                recipe=recipe.to_dict(),
                recipe_key=recipe.key,
                parity=report,
                sample_key=parent.sample_key,
                sample_filename=parent.sample_filename,
                archived_at=archived[0]["archived_at"],
                archived_by_id=archived[0]["archived_by"],
                **fields,
            )
            actor = Actor(user=job.created_by) if job.created_by is not None else None
            audit_record(
                team=model.team,
                actor=actor,
                action="version.convert",
                target=child,
                data={
                    "parent": parent.number,
                    "number": child.number,
                    "recipe": recipe.key,
                    "parity": report["passed"],
                },
            )
    except IntegrityError:
        # A concurrent run of the same conversion stored it first: use that one, and drop our copy if unused.
        if wrote:
            artifact_delete_if_unreferenced(key)
        return ModelVersion.objects.get(parent=parent, recipe_key=recipe.key)
    version_publish(child)
    return child


def parity_override(*, actor: Actor, version: ModelVersion, reason: str) -> ModelVersion:
    """Let an admin accept a version whose parity failed, with a reason (audited)."""
    actor_require(actor=actor, team=version.model.team, action=Action.MANAGE)
    reason = reason.strip()
    if not reason:
        raise ApplicationError("invalid", "Say why the parity failure is acceptable.", {"reason": ["Required."]})
    if not version.parity or version.parity.get("passed"):
        raise ApplicationError(
            "nothing_to_override", f"Version {version.number} has no failed parity report.", status=409
        )
    with transaction.atomic():
        version.parity_override_reason = reason
        version.parity_override_by = actor.authenticated_user
        version.parity_override_at = timezone.now()
        version.save(update_fields=["parity_override_reason", "parity_override_by", "parity_override_at", "updated_at"])
        audit_record(
            team=version.model.team,
            actor=actor,
            action="version.parity_override",
            target=version,
            data={"number": version.number, "reason": reason, "report": version.parity.get("reason", "")},
        )
    version_publish(version)  # open pages offer the version for release now
    return version

"""Reads of the registry, always through the permission layer."""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Count, Max, Model, Q, QuerySet

from common.errors import NotFoundError
from registry.models import Job, ModelVersion, RegisteredModel
from runtimes.tensors import Signature
from teams.choices import Action
from teams.permissions import Actor
from teams.selectors import team_get_for_actor, team_list_for_actor

M = TypeVar("M", bound=Model)


# What a list shows of archived objects: "false" hides them (the default), "true" shows only them, "all" both.
ARCHIVED_CHOICES = ("false", "true", "all")


def archived_filter(objects: QuerySet[M], archived: str = "false") -> QuerySet[M]:
    """Keep the active objects (`archived="false"`), the archived ones (`"true"`) or all (`"all"`)."""
    if archived == "all":
        return objects
    return objects.filter(archived_at__isnull=archived != "true")


def registered_model_list(
    *, actor: Actor, team_slug: str | None = None, search: str = "", archived: str = "false"
) -> QuerySet[RegisteredModel]:
    """List the models of the actor's teams (or one team), with version counts, optionally filtered by name; archived
    models only when `archived` asks for them."""
    if team_slug:
        models = RegisteredModel.objects.filter(team=team_get_for_actor(actor=actor, slug=team_slug))
    else:
        models = RegisteredModel.objects.filter(team__in=team_list_for_actor(actor=actor).values("pk"))
    if search:
        models = models.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return (
        archived_filter(models, archived)
        .select_related("team", "created_by", "archived_by")
        .annotate(version_count=Count("versions"), latest_version=Max("versions__number"))
        .order_by("team__slug", "name")
    )


def registered_model_get(*, actor: Actor, team_slug: str, name: str, action: str = Action.VIEW) -> RegisteredModel:
    team = team_get_for_actor(actor=actor, slug=team_slug, action=action)
    model = RegisteredModel.objects.select_related("team").filter(team=team, name=name).first()
    if model is None:
        raise NotFoundError(f"Model '{team_slug}/{name}' not found.")
    return model


def model_version_list(*, model: RegisteredModel, archived: str = "all") -> QuerySet[ModelVersion]:
    """The model's versions, newest first: all of them, or as `archived` asks (see ARCHIVED_CHOICES)."""
    versions = model.versions.select_related(
        "model__team", "created_by", "parent", "parity_override_by", "archived_by"
    ).order_by("-number")
    return archived_filter(versions, archived)


def registered_model_archived_count(*, actor: Actor, team_slug: str) -> int:
    """How many of the team's models are archived (the model list's "Show archived (N)")."""
    return registered_model_list(actor=actor, team_slug=team_slug, archived="true").count()


def model_version_get(*, actor: Actor, team_slug: str, name: str, number: int) -> ModelVersion:
    model = registered_model_get(actor=actor, team_slug=team_slug, name=name)
    version = model_version_list(model=model).filter(number=number).first()
    if version is None:
        raise NotFoundError(f"Model '{team_slug}/{name}' has no version {number}.")
    return version


def job_list(*, actor: Actor, team_slug: str | None = None, status: str | None = None) -> QuerySet[Job]:
    """List jobs of the actor's teams (or one team), newest first."""
    if team_slug:
        jobs = Job.objects.filter(team=team_get_for_actor(actor=actor, slug=team_slug))
    else:
        jobs = Job.objects.filter(team__in=team_list_for_actor(actor=actor).values("pk"))
    if status:
        jobs = jobs.filter(status=status)
    return jobs.select_related("team", "version__model", "result_version", "created_by").order_by("-created_at", "-id")


def job_get(*, actor: Actor, job_id: int) -> Job:
    """Return one of the actor's teams' jobs; anyone else's is 404, like a job that does not exist."""
    job = job_list(actor=actor).filter(pk=job_id).first()
    if job is None:
        raise NotFoundError(f"Job {job_id} not found.")
    return job


def version_parity_blocks(version: ModelVersion) -> bool:
    """Whether a failed parity report, which no admin accepted, keeps the version from being released."""
    parity = version.parity or {}
    return bool(parity) and not parity.get("passed") and not version.parity_override_at


def version_archived_reason(version: ModelVersion) -> str:
    """Why an archived version (or a version of an archived model) cannot be used anew, for messages ("" when it
    can)."""
    model = version.model
    if version.artifacts_deleted_at is not None:
        return (
            f"v{version.number} of '{model.name}' is archived and its files were deleted on "
            f"{version.artifacts_deleted_at:%Y-%m-%d}; it can no longer be used. Upload the file again as a new "
            "version."
        )
    if model.archived_at is not None:
        return f"'{model.name}' is archived: unarchive it first."
    if version.archived_at is not None:
        return f"v{version.number} of '{model.name}' is archived: unarchive it first."
    return ""


def version_not_servable_reason(version: ModelVersion) -> str:
    """Why the serving runtimes cannot run this version as it is, for messages ("" when they can)."""
    from registry.benchmark import SERVED_FORMATS

    if version.format not in SERVED_FORMATS:
        return f"v{version.number} is a {version.format} file; deploy one of its ONNX or TFLite versions."
    if version.metadata.get("serving_rewrite"):
        return (
            f"v{version.number} returns probabilities as ZipMap sequences of maps, which no inference protocol "
            "carries; deploy the ONNX version ModelDeck made from it, which serves them as a tensor."
        )
    return ""


def version_signature(version: ModelVersion) -> Signature:
    """The version's inputs and outputs as a Signature (an empty one before its inspection gave it any)."""
    return Signature.from_dict(version.signature or {"inputs": [], "outputs": []})

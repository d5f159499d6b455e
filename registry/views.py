"""Browser pages of the registry: model list, model page with uploads, version page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.errors import ApplicationError, PermissionDeniedError
from registry.choices import ACTIVE_JOB_STATUSES, VersionStatus
from registry.converters import supported_recipes
from registry.formats.base import ModelFileError, Recipe
from registry.models import ModelVersion, RegisteredModel
from registry.selectors import (
    model_version_get,
    model_version_list,
    registered_model_archived_count,
    registered_model_get,
    registered_model_list,
    version_not_servable_reason,
    version_parity_blocks,
    version_signature,
)
from registry.services.archive import model_archive, model_unarchive, version_archive, version_unarchive
from registry.services.benchmarks import version_benchmark_request
from registry.services.conversions import parity_override, version_convert_request
from registry.services.versions import registered_model_create
from teams.choices import Action
from teams.context_processors import CURRENT_TEAM_SESSION_KEY
from teams.permissions import Actor, actor_can, actor_require
from teams.selectors import team_get_for_actor
from teams.views import domain_errors_as_http


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def model_list(request: HttpRequest, team: str) -> HttpResponse:
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    request.session[CURRENT_TEAM_SESSION_KEY] = obj.slug
    error = ""
    if request.method == "POST":
        actor_require(actor=actor, team=obj, action=Action.DEVELOP)  # 403 for viewers, as the API answers
        try:
            model = registered_model_create(
                actor=actor,
                team=obj,
                name=request.POST.get("name", "").strip(),
                description=request.POST.get("description", "").strip(),
            )
            return redirect("model-detail", team=obj.slug, model=model.name)
        except ApplicationError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.detail.items()) if exc.detail else ""
            error = f"{exc.message} {details}".strip()
    search = request.GET.get("q", "").strip()
    show_archived = request.GET.get("archived") == "true"
    context = {
        "team": obj,
        "models": registered_model_list(
            actor=actor, team_slug=obj.slug, search=search, archived="true" if show_archived else "false"
        ),
        "show_archived": show_archived,
        "archived_count": registered_model_archived_count(actor=actor, team_slug=obj.slug),
        "search": search,
        "error": error,
        "can_develop": actor_can(actor=actor, team=obj, action=Action.DEVELOP),
    }
    return render(request, "registry/model_list.html", context, status=400 if error else 200)


@require_GET
@login_required
@domain_errors_as_http
def model_detail(request: HttpRequest, team: str, model: str) -> HttpResponse:
    actor = Actor(user=request.user)
    obj = registered_model_get(actor=actor, team_slug=team, name=model)
    return render(request, "registry/model_detail.html", _model_context(actor, obj))


def _model_context(actor: Actor, model: RegisteredModel, archive_error: str = "") -> dict[str, object]:
    return {
        "team": model.team,
        "model": model,
        "versions": model_version_list(model=model),
        "can_develop": actor_can(actor=actor, team=model.team, action=Action.DEVELOP),
        "archive_error": archive_error,
        "retention_days": settings.MODELDECK_ARTIFACT_RETENTION_DAYS,
    }


@require_POST
@login_required
@domain_errors_as_http
def model_archive_page(request: HttpRequest, team: str, model: str) -> HttpResponse:
    """Archive or unarchive the model (`action`) from its page; a refusal is shown on the page, with why."""
    actor = Actor(user=request.user)
    obj = registered_model_get(actor=actor, team_slug=team, name=model)
    archive = request.POST.get("action") != "unarchive"
    try:
        obj = (model_archive if archive else model_unarchive)(actor=actor, model=obj)
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        return render(request, "registry/model_detail.html", _model_context(actor, obj, exc.message), status=409)
    if archive:
        messages.success(
            request,
            f"{obj.name} is archived, with its versions: hidden from the model list, no new versions or endpoints. "
            "Unarchive it to undo.",
        )
    else:
        messages.success(request, f"{obj.name} is active again, with the versions archived with it.")
    return redirect("model-detail", team=team, model=obj.name)


def _version_context(
    actor: Actor, version: ModelVersion, error: str = "", archive_error: str = ""
) -> dict[str, object]:
    team = version.model.team
    jobs = list(version.jobs.select_related("result_version", "created_by").order_by("-created_at")[:20])
    not_servable = version_not_servable_reason(version)
    return {
        "team": team,
        "model": version.model,
        "version": version,
        "signature": version_signature(version),
        "processing": version.status == VersionStatus.PROCESSING,
        "jobs": jobs,
        "jobs_active": any(j.status in ACTIVE_JOB_STATUSES for j in jobs),
        "conversions": _offered_conversions(version),
        "benchmarkable": version.status == VersionStatus.READY and not not_servable and not version.archived_at,
        "not_servable": not_servable,
        "can_develop": actor_can(actor=actor, team=team, action=Action.DEVELOP),
        "can_manage": actor_can(actor=actor, team=team, action=Action.MANAGE),
        "children": version.children.order_by("number"),
        # A failed parity report blocks deploying until an admin accepts it (deployments refuses it otherwise).
        "parity_blocks": version_parity_blocks(version),
        "error": error,
        "archive_error": archive_error,
        "retention_days": settings.MODELDECK_ARTIFACT_RETENTION_DAYS,
        "version_label": f"v{version.number}",
    }


def _offered_conversions(version: ModelVersion) -> tuple[Recipe, ...]:
    """The conversions a ready, not yet quantized, unarchived version can have."""
    if (
        version.status != VersionStatus.READY
        or version.recipe.get("quantization", "none") != "none"
        or version.archived_at is not None
    ):
        return ()
    return supported_recipes(version.format, version.metadata)


# The version page's parts that refresh themselves (htmx), by the name their hx-get asks for.
FRAGMENTS = {
    "main": "registry/_version_main.html",
    "jobs": "registry/_jobs.html",
    "files": "registry/_version_files.html",
}


@require_GET
@login_required
@domain_errors_as_http
def version_detail(request: HttpRequest, team: str, model: str, number: int) -> HttpResponse:
    actor = Actor(user=request.user)
    version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
    fragment = request.GET.get("fragment", "main") if request.headers.get("HX-Request") else ""
    template = FRAGMENTS.get(fragment, "registry/version_detail.html")
    return render(request, template, _version_context(actor, version))


@require_POST
@login_required
@domain_errors_as_http
def version_convert(request: HttpRequest, team: str, model: str, number: int) -> HttpResponse:
    """Start a conversion or a benchmark from the version page; answer with the refreshed job list."""
    actor = Actor(user=request.user)
    version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
    error = ""
    try:
        if request.POST.get("kind") == "benchmark":
            version_benchmark_request(actor=actor, version=version)
        else:
            recipe = Recipe(
                target=request.POST.get("target", ""), quantization=request.POST.get("quantization", "none")
            )
            version_convert_request(actor=actor, version=version, recipe=recipe)
    except ValueError as exc:
        error = f"Unknown conversion: {exc}."
    except (ModelFileError, ApplicationError) as exc:
        if isinstance(exc, PermissionDeniedError):
            raise
        error = exc.message
    if request.headers.get("HX-Request"):
        return render(
            request, "registry/_jobs.html", _version_context(actor, version, error), status=400 if error else 200
        )
    return redirect("version-detail", team=team, model=model, number=number)


@require_POST
@login_required
@domain_errors_as_http
def version_parity_accept(request: HttpRequest, team: str, model: str, number: int) -> HttpResponse:
    """An admin accepts a failed parity report with a reason (audited); answers with the refreshed version summary."""
    actor = Actor(user=request.user)
    version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
    error = ""
    try:
        version = parity_override(actor=actor, version=version, reason=request.POST.get("reason", ""))
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        error = exc.message
    if request.headers.get("HX-Request"):
        context = _version_context(actor, version, error)
        return render(request, "registry/_version_main.html", context, status=400 if error else 200)
    return redirect("version-detail", team=team, model=model, number=number)


@require_POST
@login_required
@domain_errors_as_http
def version_archive_page(request: HttpRequest, team: str, model: str, number: int) -> HttpResponse:
    """Archive or unarchive the version (`action`) from its page; a refusal (it is live, its files are gone) is shown
    on the page, with why."""
    actor = Actor(user=request.user)
    version = model_version_get(actor=actor, team_slug=team, name=model, number=number)
    archive = request.POST.get("action") != "unarchive"
    try:
        version = (version_archive if archive else version_unarchive)(actor=actor, version=version)
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        context = _version_context(actor, version, archive_error=exc.message)
        return render(request, "registry/version_detail.html", context, status=409)
    if archive:
        messages.success(
            request,
            f"v{number} is archived: hidden from lists and never newly deployed. Its files are deleted "
            f"{settings.MODELDECK_ARTIFACT_RETENTION_DAYS} days from now unless it is unarchived.",
        )
    else:
        messages.success(request, f"v{number} is active again.")
    return redirect("version-detail", team=team, model=model, number=number)

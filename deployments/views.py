"""Browser pages of the control plane: endpoint list, endpoint page with one-click promote/canary/rollback."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from common.errors import ApplicationError, NotFoundError, PermissionDeniedError
from deployments.models import Endpoint
from deployments.selectors import endpoint_get, endpoint_list, release_current, release_list
from deployments.services import endpoint_create, release_promote, release_rollback
from registry.benchmark import SERVED_FORMATS
from registry.choices import VersionStatus
from registry.models import ModelVersion
from registry.selectors import model_version_get
from teams.choices import Action
from teams.context_processors import CURRENT_TEAM_SESSION_KEY
from teams.permissions import Actor, actor_can
from teams.selectors import team_get_for_actor
from teams.views import domain_errors_as_http


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@require_GET
@login_required
@domain_errors_as_http
def endpoint_list_page(request: HttpRequest, team: str) -> HttpResponse:
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    request.session[CURRENT_TEAM_SESSION_KEY] = obj.slug
    endpoints = [(e, release_current(endpoint=e)) for e in endpoint_list(actor=actor).filter(team=obj)]
    return render(request, "deployments/endpoint_list.html", {"team": obj, "endpoints": endpoints})


def _endpoint_context(actor: Actor, endpoint: Endpoint, error: str = "") -> dict[str, object]:
    current = release_current(endpoint=endpoint)
    releases = list(release_list(endpoint=endpoint)[:50])
    previous = releases[1] if len(releases) > 1 else None
    action = Action.CHANGE_PROTECTED if endpoint.protected else Action.DEVELOP
    ready = endpoint.model.versions.filter(status=VersionStatus.READY, format__in=SERVED_FORMATS)
    deployable = ready.order_by("-number")
    return {
        "team": endpoint.team,
        "endpoint": endpoint,
        "current": current,
        "previous": previous,
        "releases": releases,
        "versions": deployable,
        "can_change": actor_can(actor=actor, team=endpoint.team, action=action),
        "error": error,
    }


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def endpoint_page(request: HttpRequest, name: str) -> HttpResponse:
    """Show the live release and its history; POST promotes, starts a canary or rolls back."""
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    error = ""
    if request.method == "POST":
        try:
            operation = request.POST.get("operation")
            reason = request.POST.get("reason", "").strip()
            if operation == "rollback":
                release_rollback(actor=actor, endpoint=endpoint, reason=reason)
            elif operation in ("promote", "canary"):
                number = _int(request.POST.get("version"))
                version = endpoint.model.versions.filter(number=number).first() if number is not None else None
                if version is None:
                    raise NotFoundError(f"'{endpoint.model.name}' has no version {request.POST.get('version')}.")
                percent = _int(request.POST.get("canary_percent")) if operation == "canary" else None
                if operation == "canary" and percent is None:
                    raise ApplicationError("invalid", "Give the canary a share of traffic, 1 to 99 percent.")
                release_promote(actor=actor, endpoint=endpoint, version=version, canary_percent=percent, reason=reason)
            else:
                raise ApplicationError("invalid", "Unknown operation.")
            return redirect("endpoint-page", name=endpoint.name)
        except PermissionDeniedError:
            raise
        except ApplicationError as exc:
            error = exc.message
    context = _endpoint_context(actor, endpoint, error)
    return render(request, "deployments/endpoint_page.html", context, status=400 if error else 200)


@require_http_methods(["POST"])
@login_required
@domain_errors_as_http
def version_deploy(request: HttpRequest, team: str, model: str, number: int) -> HttpResponse:
    """Create an endpoint serving this version (from the version page)."""
    actor = Actor(user=request.user)
    version: ModelVersion = model_version_get(actor=actor, team_slug=team, name=model, number=number)
    try:
        endpoint = endpoint_create(
            actor=actor,
            model=version.model,
            name=request.POST.get("name", "").strip(),
            version=version,
            protected=request.POST.get("protected") == "on",
            public=request.POST.get("public") == "on",
            reason=request.POST.get("reason", "").strip(),
        )
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.detail.items() if isinstance(v, list))
        return render(
            request,
            "deployments/deploy_error.html",
            {"team": version.model.team, "version": version, "error": f"{exc.message} {details}".strip()},
            status=400,
        )
    return redirect("endpoint-page", name=endpoint.name)

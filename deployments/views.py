"""Browser pages of the control plane: team dashboard, endpoint list, endpoint page (promote/canary/rollback)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.errors import ApplicationError, NotFoundError, PermissionDeniedError
from deployments.approvals import change_requests_pending, release_promote_or_request, rollout_create_or_request
from deployments.compatibility import tensor_text
from deployments.models import Endpoint, Rollout
from deployments.rollouts import (
    GATE_LABELS,
    ROLLOUT_GATE_DEFAULTS,
    rollout_abort,
    rollout_advance,
    rollout_pause,
    rollout_resume,
    rollout_seconds_left,
    rollout_steps_parse,
)
from deployments.selectors import (
    change_request_pending,
    endpoint_change_action,
    endpoint_get,
    endpoint_list,
    release_current,
    release_list,
    release_live_list_for_team,
    release_rollback_plan,
    rollout_active,
    rollout_active_by_endpoint,
    rollout_list,
    version_recent_list,
    version_signature_differences,
)
from deployments.services import endpoint_create, endpoint_delete, endpoint_update, release_rollback
from registry.benchmark import SERVED_FORMATS
from registry.choices import ACTIVE_JOB_STATUSES, VersionStatus
from registry.models import ModelVersion
from registry.selectors import job_list, model_version_get, version_not_servable_reason, version_parity_blocks
from teams.choices import Action
from teams.context_processors import CURRENT_TEAM_SESSION_KEY
from teams.permissions import Actor, actor_can, actor_role
from teams.selectors import audit_event_list, membership_list, team_get_for_actor
from teams.views import domain_errors_as_http


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


# The team dashboard's parts that refresh themselves (htmx, static/js/live.js), by the name their hx-get asks for.
TEAM_FRAGMENTS = {
    "tiles": "teams/_endpoint_tiles.html",
    "jobs": "teams/_running_jobs.html",
    "uploads": "teams/_recent_uploads.html",
    "activity": "teams/_recent_activity.html",
    "approvals": "teams/_pending_approvals.html",
}
DASHBOARD_ROWS = 8


@require_GET
@login_required
@domain_errors_as_http
def team_detail(request: HttpRequest, team: str) -> HttpResponse:
    """The team dashboard: each endpoint live with its release, running jobs, recent uploads, activity, members.

    It reads teams, registry and deployments, so it lives in the highest of them (STYLE 16), not in teams; its
    recent alerts card is monitoring's own fragment, which the page loads (monitoring.pages.team_alerts_card).
    """
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    request.session[CURRENT_TEAM_SESSION_KEY] = obj.slug
    context = {
        "team": obj,
        "role": actor_role(actor=actor, team=obj),
        "can_develop": actor_can(actor=actor, team=obj, action=Action.DEVELOP),
        "members": membership_list(actor=actor, team=obj),
        "recent_events": audit_event_list(actor=actor, team=obj)[:10],
        "releases": _releases_with_rollouts(obj),
        "jobs": job_list(actor=actor, team_slug=obj.slug).filter(status__in=ACTIVE_JOB_STATUSES)[:DASHBOARD_ROWS],
        "versions": version_recent_list(team=obj)[:DASHBOARD_ROWS],
        "approvals": change_requests_pending(team_id=obj.pk)[:DASHBOARD_ROWS],
    }
    fragment = TEAM_FRAGMENTS.get(request.GET.get("fragment", "")) if request.headers.get("HX-Request") else None
    return render(request, fragment or "teams/team_detail.html", context)


def _releases_with_rollouts(team: Any) -> list[Any]:
    """The team's live releases, each with its endpoint's active rollout (or None) for the tiles: two queries."""
    rollouts = rollout_active_by_endpoint(team=team)
    releases = list(release_live_list_for_team(team=team))
    for release in releases:
        release.rollout = rollouts.get(release.endpoint_id)  # type: ignore[attr-defined]
    return releases


@require_GET
@login_required
@domain_errors_as_http
def endpoint_list_page(request: HttpRequest, team: str) -> HttpResponse:
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    request.session[CURRENT_TEAM_SESSION_KEY] = obj.slug
    endpoints = [(e, release_current(endpoint=e)) for e in endpoint_list(actor=actor).filter(team=obj)]
    return render(request, "deployments/endpoint_list.html", {"team": obj, "endpoints": endpoints})


PROBLEMS = {
    "missing": "missing from this version",
    "added": "added by this version",
    "datatype": "different datatype",
    "shape": "different shape",
}


def _difference_rows(differences: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Signature differences as the confirm step's table shows them (the template escapes every cell)."""
    return [
        {
            "tensor": d["tensor"],
            "name": d["name"],
            "problem": PROBLEMS.get(d["problem"], d["problem"]),
            "primary": tensor_text(d["primary"]),
            "version": tensor_text(d["version"]),
        }
        for d in differences
    ]


def release_changes(releases: list[Any]) -> list[tuple[Any, str]]:
    """Each release (newest first, as listed) with what it changed from the one before it, in words."""
    described = []
    for index, release in enumerate(releases):
        before = releases[index + 1] if index + 1 < len(releases) else None
        described.append((release, _release_change(before, release)))
    return described


def _release_change(before: Any, after: Any) -> str:
    def number(version: Any) -> int | None:
        return version.number if version is not None else None

    if before is None:
        return f"serves v{after.primary.number}"
    parts = []
    if after.primary_id != before.primary_id:
        parts.append(f"v{after.primary.number} replaces v{before.primary.number}")
    old_canary, new_canary = number(before.canary), number(after.canary)
    if new_canary != old_canary:
        if new_canary is None:
            parts.append(f"canary v{old_canary} removed")
        else:
            parts.append(f"canary v{new_canary} takes {after.canary_percent} %")
    elif new_canary is not None and after.canary_percent != before.canary_percent:
        parts.append(f"canary v{new_canary}: {before.canary_percent} % → {after.canary_percent} %")
    old_shadow, new_shadow = number(before.shadow), number(after.shadow)
    if new_shadow != old_shadow:
        parts.append(f"shadow v{old_shadow} removed" if new_shadow is None else f"shadow v{new_shadow} gets copies")
    return "; ".join(parts) or "no change in what serves"


def _releasable(endpoint: Endpoint) -> QuerySet[ModelVersion]:
    """The versions a page offers to release on the endpoint: ready, servable, not archived (the services refuse
    an archived one; the pages do not offer it)."""
    return endpoint.model.versions.filter(
        status=VersionStatus.READY, format__in=SERVED_FORMATS, archived_at__isnull=True
    )


def _endpoint_context(actor: Actor, endpoint: Endpoint, error: str = "") -> dict[str, object]:
    current = release_current(endpoint=endpoint)
    releases = list(release_list(endpoint=endpoint)[:50])
    action = endpoint_change_action(endpoint)
    ready = _releasable(endpoint)
    # Each version that could be released, with how its signature differs from the primary's (shown before the
    # confirm step, not after a refusal).
    choices = [
        {
            "version": version,
            "differences": _difference_rows(version_signature_differences(primary=current.primary, version=version)),
            # A live canary's share moves without being checked again: its change was allowed when it started.
            "live_canary": version.pk == current.canary_id,
        }
        for version in ready.order_by("-number")
        if version.pk != current.primary_id
        and not version_not_servable_reason(version)
        and not version_parity_blocks(version)
    ]
    return {
        "team": endpoint.team,
        "endpoint": endpoint,
        "current": current,
        "rollback": release_rollback_plan(endpoint=endpoint, current=current),
        "releases": releases,
        "history": release_changes(releases),
        "choices": choices,
        # Who may release by hand (rollback; promote where no approval is needed), and who may ask for one.
        "can_release": actor_can(actor=actor, team=endpoint.team, action=action),
        "can_change": _may_change(actor, endpoint),
        "can_protect": actor_can(actor=actor, team=endpoint.team, action=Action.CHANGE_PROTECTED),
        "pending_request": change_request_pending(endpoint=endpoint) if endpoint.requires_approval else None,
        "error": error,
    }


def _may_change(actor: Actor, endpoint: Endpoint) -> bool:
    """Whether the endpoint's change cards offer anything: its change role, or a developer's request for approval."""
    if actor_can(actor=actor, team=endpoint.team, action=endpoint_change_action(endpoint)):
        return True
    return endpoint.requires_approval and actor_can(actor=actor, team=endpoint.team, action=Action.DEVELOP)


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def endpoint_page(request: HttpRequest, name: str) -> HttpResponse:
    """Show the live release and its history; POST promotes, starts a canary or rolls back.

    A version whose signature differs from the primary's is refused unless the form allows the change; the refusal
    shows the differences and offers to submit again with the change allowed.
    """
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    error = ""
    refused: dict[str, object] | None = None
    if request.method == "POST":
        operation = request.POST.get("operation")
        reason = request.POST.get("reason", "").strip()
        number = percent = None
        try:
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
                release_promote_or_request(
                    actor=actor,
                    endpoint=endpoint,
                    version=version,
                    canary_percent=percent,
                    allow_signature_change=request.POST.get("allow_signature_change") == "on",
                    reason=reason,
                )
            else:
                raise ApplicationError("invalid", "Unknown operation.")
            if request.headers.get("HX-Request"):
                # In place (static/js/release_confirm.js): the release, change and history cards refresh themselves
                # on this event, and the live charts keep running.
                return HttpResponse(status=204, headers={"HX-Trigger": "release-changed"})
            return redirect("endpoint-page", name=endpoint.name)
        except PermissionDeniedError:
            raise
        except ApplicationError as exc:
            error = exc.message
            if exc.code == "signature_mismatch":
                refused = {
                    "operation": operation,
                    "version": number,
                    "canary_percent": percent,
                    "reason": reason,
                    "primary": exc.detail["primary"],
                    "differences": _difference_rows(exc.detail["differences"]),
                }
    context = {
        **_endpoint_context(actor, endpoint, error),
        "refused": refused,
        # A version page's "roll it out" link names the version: the rollout form starts with it.
        "rollout_card": _rollout_context(actor, endpoint, form={"version": request.GET.get("rollout", "")}),
    }
    status = 200 if not error else 409 if refused else 400
    if request.method == "POST" and request.headers.get("HX-Request"):
        return render(request, "deployments/_release_refusal.html", context, status=status)
    fragment = ENDPOINT_FRAGMENTS.get(request.GET.get("fragment", "")) if request.headers.get("HX-Request") else None
    return render(request, fragment or "deployments/endpoint_page.html", context, status=status)


# The endpoint page's parts that refresh themselves (htmx, static/js/live.js), by the name their hx-get asks for.
ENDPOINT_FRAGMENTS = {
    "release": "deployments/_release_current.html",
    "change": "deployments/_release_change.html",
    "history": "deployments/_release_history.html",
}


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


@require_POST
@login_required
@domain_errors_as_http
def endpoint_settings(request: HttpRequest, name: str) -> HttpResponse:
    """Change an endpoint's settings from its page (public, protected, dynamic batching); answers with the settings
    card, and the badges and the "Call it" card updated in place."""
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    # Who may change it at all, even when the form changes nothing (endpoint_update checks each change again).
    if not actor_can(actor=actor, team=endpoint.team, action=endpoint_change_action(endpoint)):
        raise PermissionDeniedError(f"Changing {endpoint.name} needs a higher role in {endpoint.team.slug}.")
    error = saved = ""
    try:
        changes = _settings_changes(
            endpoint,
            request.POST,
            may_protect=actor_can(actor=actor, team=endpoint.team, action=Action.CHANGE_PROTECTED),
        )
        if changes:
            endpoint = endpoint_update(actor=actor, endpoint=endpoint, **changes)
            saved = ", ".join(f"{SETTING_NAMES[key]} {_shown(value)}" for key, value in changes.items())
        else:
            saved = "nothing changed"
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        error = exc.text()
    if not request.headers.get("HX-Request"):
        return redirect("endpoint-page", name=endpoint.name)
    context = {**_endpoint_context(actor, endpoint, error), "saved": saved, "oob": True}
    return render(request, "deployments/_endpoint_settings_answer.html", context, status=400 if error else 200)


SETTING_NAMES = {
    "public": "public",
    "protected": "protected",
    "max_batch_size": "batch rows",
    "max_queue_delay_ms": "batch wait (ms)",
    "requires_approval": "requires approval",
}


def _shown(value: object) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _settings_changes(endpoint: Endpoint, form: Any, *, may_protect: bool) -> dict[str, Any]:
    """The settings the form changes, typed; a number that is not one is refused with its field's name."""
    wanted: dict[str, Any] = {"public": form.get("public") == "on"}
    if may_protect:
        wanted["protected"] = form.get("protected") == "on"
        wanted["requires_approval"] = form.get("requires_approval") == "on"
    for field, kind in (("max_batch_size", int), ("max_queue_delay_ms", float)):
        raw = form.get(field, "").strip()
        try:
            wanted[field] = kind(raw)
        except ValueError:
            problem = {field: [f"'{raw}' is not a number."]}
            raise ApplicationError("invalid", "Invalid endpoint settings.", problem) from None
    return {key: value for key, value in wanted.items() if getattr(endpoint, key) != value}


@require_POST
@login_required
@domain_errors_as_http
def endpoint_delete_page(request: HttpRequest, name: str) -> HttpResponse:
    """Delete the endpoint once its name is typed again; then the team's endpoint list says it is gone."""
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    team = endpoint.team.slug
    try:
        endpoint_delete(actor=actor, endpoint=endpoint, confirm=request.POST.get("confirm", "").strip())
    except PermissionDeniedError:
        raise
    except ApplicationError as exc:
        context = {**_endpoint_context(actor, endpoint, exc.message), "refused": None}
        return render(request, "deployments/endpoint_page.html", context, status=exc.status_code)
    messages.success(request, f"Endpoint {name} is deleted: it no longer serves. Its model's versions stay.")
    return redirect("endpoint-list", team=team)


ROLLOUT_OPERATIONS = {"pause": rollout_pause, "resume": rollout_resume, "advance": rollout_advance}


def _gate_rows(rollout: Rollout | None) -> list[dict[str, Any]]:
    """Each gate that is on, with its threshold and its latest evaluation (empty until the rollout is judged)."""
    if rollout is None:
        return []
    latest = rollout.evaluations or {}
    return [
        {"gate": gate, "title": GATE_LABELS[gate], "set": value, **latest.get(gate, {})}
        for gate, value in rollout.gates.items()
        if value is not None and gate != "benchmark_p50_slower"
    ]


def _rollout_context(
    actor: Actor, endpoint: Endpoint, error: str = "", form: dict[str, str] | None = None
) -> dict[str, Any]:
    active = rollout_active(endpoint=endpoint)
    current = release_current(endpoint=endpoint)
    versions = _releasable(endpoint).exclude(pk=current.primary_id)
    return {
        "team": endpoint.team,
        "endpoint": endpoint,
        "rollout": active,
        "seconds_left": rollout_seconds_left(active) if active else None,
        "gate_rows": _gate_rows(active),
        "last": None if active else rollout_list(endpoint=endpoint).first(),
        "defaults": [(gate, GATE_LABELS[gate], value) for gate, value in ROLLOUT_GATE_DEFAULTS.items()],
        "versions": versions.order_by("-number"),
        "can_change": _may_change(actor, endpoint),
        "rollout_request": active.change_requests.order_by("-id").first() if active is not None else None,
        "error": error,
        "form": form or {},
    }


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def endpoint_rollout(request: HttpRequest, name: str) -> HttpResponse:
    """The endpoint page's rollout card; POST starts a rollout or pauses, resumes, advances or aborts the active one."""
    actor = Actor(user=request.user)
    endpoint = endpoint_get(actor=actor, name=name)
    error = ""
    form: dict[str, str] = {}
    if request.method == "POST":
        operation = request.POST.get("operation", "")
        try:
            if operation == "start":
                form = {key: request.POST.get(key, "") for key in ("version", "steps", "bake", "reason")}
                number = _int(form["version"])
                version = endpoint.model.versions.filter(number=number).first() if number is not None else None
                if version is None:
                    raise NotFoundError(f"'{endpoint.model.name}' has no version {form['version']}.")
                gates: dict[str, float | None] = {}
                for gate in ROLLOUT_GATE_DEFAULTS:
                    raw = request.POST.get(f"gate_{gate}", "").strip()
                    form[f"gate_{gate}"] = raw
                    if raw.lower() in ("", "off"):
                        gates[gate] = None
                        continue
                    try:
                        gates[gate] = float(raw)
                    except ValueError:
                        raise ApplicationError(
                            "invalid", f"The {GATE_LABELS[gate]} gate needs a number, or off."
                        ) from None
                rollout_create_or_request(
                    actor=actor,
                    endpoint=endpoint,
                    version=version,
                    steps=rollout_steps_parse(form["steps"], form["bake"]),
                    gates=gates,
                    allow_signature_change=request.POST.get("allow_signature_change") == "on",
                    reason=form["reason"].strip(),
                )
            else:
                active = rollout_active(endpoint=endpoint)
                if active is None:
                    raise ApplicationError("rollout_state", "No rollout is active on this endpoint.", status=409)
                if operation == "abort":
                    rollout_abort(actor=actor, rollout=active, reason=request.POST.get("reason", "").strip())
                elif operation in ROLLOUT_OPERATIONS:
                    ROLLOUT_OPERATIONS[operation](actor=actor, rollout=active)
                else:
                    raise ApplicationError("invalid", "Unknown operation.")
            if not request.headers.get("HX-Request"):
                return redirect("endpoint-page", name=endpoint.name)
            form = {}
        except PermissionDeniedError:
            raise
        except ApplicationError as exc:
            error = exc.text() if exc.code == "invalid" else exc.message
            status = exc.status_code
            if not request.headers.get("HX-Request"):
                messages.error(request, error)
                return redirect("endpoint-page", name=endpoint.name)
            return render(
                request, "deployments/_rollout.html", _rollout_context(actor, endpoint, error, form), status=status
            )
        response = render(request, "deployments/_rollout.html", _rollout_context(actor, endpoint))
        response["HX-Trigger"] = "release-changed"
        return response
    return render(request, "deployments/_rollout.html", _rollout_context(actor, endpoint))

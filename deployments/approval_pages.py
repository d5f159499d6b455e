"""The approval pages: a team's change requests, and one request with both versions side by side and the forms to
approve or reject it; plus the team dashboard's "Pending approvals" card (deployments.views.team_detail)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from common.errors import ApplicationError, NotFoundError, PermissionDeniedError
from deployments.approvals import change_request_approve, change_request_reject, change_requests_expire
from deployments.choices import ChangeRequestState
from deployments.compatibility import tensor_text
from deployments.models import ChangeRequest
from deployments.selectors import (
    change_request_get,
    change_request_list,
    release_current,
    version_signature_differences,
)
from deployments.views import PROBLEMS
from registry.models import ModelVersion
from teams.choices import Action
from teams.permissions import Actor, actor_can
from teams.selectors import team_get_for_actor
from teams.views import domain_errors_as_http

RECENT_DECISIONS = 30


def change_request_summary(request: ChangeRequest) -> str:
    """`promote v3`, `canary v3 at 10%`, `rollout of v3 (5, 25, 50%)`."""
    change = request.change
    if request.kind == "rollout":
        shares = ", ".join(str(step["percent"]) for step in change.get("steps", []))
        return f"rollout of v{request.version_number} ({shares}%)"
    if change.get("canary_percent"):
        return f"canary v{request.version_number} at {change['canary_percent']}%"
    text = f"promote v{request.version_number}"
    return text + (f" with shadow v{change['shadow_version']}" if change.get("shadow_version") else "")


@require_GET
@login_required
@domain_errors_as_http
def approvals_page(request: HttpRequest, team: str) -> HttpResponse:
    """The team's change requests: pending first, then recent decisions."""
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    change_requests_expire(team_id=obj.pk)
    pending = list(change_request_list(team=obj, state=ChangeRequestState.PENDING))
    decided = list(change_request_list(team=obj).exclude(state=ChangeRequestState.PENDING)[:RECENT_DECISIONS])
    return render(
        request,
        "deployments/approvals.html",
        {"team": obj, "pending": pending, "decided": decided, "summary": change_request_summary},
    )


def _version_facts(version: ModelVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    signature = version.signature or {}
    return {
        "version": version,
        "inputs": [_tensor(t) for t in signature.get("inputs", [])],
        "outputs": [_tensor(t) for t in signature.get("outputs", [])],
        "batches": (version.benchmark or {}).get("batches", []),
        "parity": version.parity or {},
    }


def _tensor(tensor: dict[str, Any]) -> dict[str, str]:
    return {"name": str(tensor.get("name", "")), "text": tensor_text(tensor)}


def _decision_context(actor: Actor, request: ChangeRequest, error: str = "") -> dict[str, Any]:
    is_admin = actor_can(actor=actor, team=request.team, action=Action.MANAGE)
    own = request.requested_by_id == actor.user_id
    pending = request.state == ChangeRequestState.PENDING
    if not pending:
        why_not = ""
    elif own:
        why_not = "You asked for this change: another admin must approve it (four eyes). You may withdraw it."
    elif not is_admin:
        why_not = f"Only an admin of {request.team.slug} other than the requester can approve or reject it."
    else:
        why_not = ""
    return {
        "team": request.team,
        "cr": request,
        "summary": change_request_summary(request),
        "can_decide": pending and is_admin and not own,
        "can_withdraw": pending and own,
        "why_not": why_not,
        "error": error,
    }


def _page_context(actor: Actor, request: ChangeRequest, error: str = "") -> dict[str, Any]:
    endpoint = request.endpoint
    current = release_current(endpoint=endpoint)
    wanted = (
        endpoint.model.versions.filter(number=request.version_number or 0)
        .select_related("parent", "parity_override_by")
        .first()
    )
    differences = (
        version_signature_differences(primary=current.primary, version=wanted)
        if wanted is not None and wanted.pk != current.primary_id
        else []
    )
    return {
        **_decision_context(actor, request, error),
        "endpoint": endpoint,
        "current": current,
        "sides": [
            ("Serving now", _version_facts(current.primary)),
            ("Requested", _version_facts(wanted)),
        ],
        "differences": [
            {
                "tensor": d["tensor"],
                "name": d["name"],
                "problem": PROBLEMS.get(d["problem"], d["problem"]),
                "primary": tensor_text(d["primary"]),
                "version": tensor_text(d["version"]),
            }
            for d in differences
        ],
    }


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def approval_page(request: HttpRequest, team: str, request_id: int) -> HttpResponse:
    """One change request: the change, both versions side by side, and (POST) approve or reject it with a reason."""
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    found = change_request_get(actor=actor, request_id=request_id)
    if found.team_id != obj.pk:
        raise NotFoundError(f"Change request {request_id} not found.")
    change_requests_expire(endpoint=found.endpoint)
    found = change_request_get(actor=actor, request_id=request_id)
    error = ""
    if request.method == "POST":
        operation = request.POST.get("operation", "")
        reason = request.POST.get("reason", "").strip()
        try:
            if operation == "approve":
                if not reason:
                    raise ApplicationError("invalid", "Say why you approve it.")
                found = change_request_approve(actor=actor, request=found, reason=reason)
            elif operation in ("reject", "withdraw"):
                if operation == "reject" and not reason:
                    raise ApplicationError("invalid", "Say why you reject it.")
                found = change_request_reject(actor=actor, request=found, reason=reason)
            else:
                raise ApplicationError("invalid", "Unknown operation.")
        except PermissionDeniedError:
            raise
        except ApplicationError as exc:
            error = exc.message
            found = change_request_get(actor=actor, request_id=request_id)
        if not request.headers.get("HX-Request"):
            return (
                redirect("approval-page", team=obj.slug, request_id=found.pk)
                if not error
                else render(request, "deployments/approval_page.html", _page_context(actor, found, error), status=400)
            )
        return render(
            request,
            "deployments/_approval_decision.html",
            _decision_context(actor, found, error),
            status=400 if error else 200,
        )
    return render(request, "deployments/approval_page.html", _page_context(actor, found))

"""Browser pages: home, tokens, audit log (the team dashboard shows endpoints too, so it is in deployments.views)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.errors import ApplicationError, NotFoundError, PermissionDeniedError
from teams.choices import Action, Role
from teams.context_processors import CURRENT_TEAM_SESSION_KEY
from teams.forms import ThrottledAuthenticationForm, TokenCreateForm
from teams.permissions import Actor, actor_can, actor_role
from teams.selectors import (
    api_token_get,
    api_token_list,
    audit_event_list,
    membership_list,
    team_get_for_actor,
    team_list_with_roles,
)
from teams.services import (
    AUTO_CONVERT_TARGETS,
    api_token_create,
    api_token_revoke,
    membership_remove,
    membership_set,
    team_settings_update,
)

View = Callable[..., HttpResponse]


def domain_errors_as_http(view: View) -> View:
    """Map the permission layer's 404/403 to Django's pages, so outsiders see exactly what a missing team gives."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotFoundError as exc:
            raise Http404(exc.message) from exc
        except PermissionDeniedError as exc:
            raise PermissionDenied(exc.message) from exc

    return wrapper


class LoginView(auth_views.LoginView):
    """Django's login page behind the failure throttle: a locked account or address gets 429 and Retry-After."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: ThrottledAuthenticationForm) -> HttpResponse:  # type: ignore[override]
        response = super().form_invalid(form)
        if form.lockout is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.lockout.retry_after)
        return response


@require_GET
@login_required
def team_list_page(request: HttpRequest) -> HttpResponse:
    return render(request, "teams/home.html", {"teams": team_list_with_roles(actor=Actor(user=request.user))})


@require_GET
@login_required
def landing(request: HttpRequest) -> HttpResponse:
    """The site's front page, where a login lands: the team the user last worked in, else their first; the team
    list (with what to do) for a user in no team."""
    teams = [entry.team for entry in team_list_with_roles(actor=Actor(user=request.user))]
    if not teams:
        return team_list_page(request)
    last = request.session.get(CURRENT_TEAM_SESSION_KEY)
    team = next((t for t in teams if t.slug == last), teams[0])
    return redirect("team-detail", team=team.slug)


def _tokens_context(actor: Actor, team: Any, form: TokenCreateForm, issued: Any = None) -> dict[str, Any]:
    return {
        "team": team,
        "form": form,
        "issued": issued,
        "tokens": api_token_list(actor=actor, team=team),
        "is_admin": actor_can(actor=actor, team=team, action=Action.MANAGE),
    }


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def token_list(request: HttpRequest, team: str) -> HttpResponse:
    """List the team's tokens and create one; the new secret is shown once, in this response only."""
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    request.session[CURRENT_TEAM_SESSION_KEY] = obj.slug
    max_role = actor_role(actor=actor, team=obj)
    assert max_role is not None
    form = TokenCreateForm(request.POST or None, max_role=max_role)
    issued = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                issued = api_token_create(
                    actor=actor,
                    team=obj,
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    expires_at=form.expires_at(),
                )
                form = TokenCreateForm(max_role=max_role)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
                status = 400
        else:
            status = 400
    template = "teams/_tokens_panel.html" if request.headers.get("HX-Request") else "teams/tokens.html"
    response = render(request, template, _tokens_context(actor, obj, form, issued), status=status)
    # The page that carries a secret must not be cached anywhere.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
@domain_errors_as_http
def token_revoke(request: HttpRequest, team: str, token_id: int) -> HttpResponse:
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    api_token_revoke(actor=actor, token=api_token_get(actor=actor, team=obj, token_id=token_id))
    if request.headers.get("HX-Request"):
        max_role = actor_role(actor=actor, team=obj)
        assert max_role is not None
        context = _tokens_context(actor, obj, TokenCreateForm(max_role=max_role))
        return render(request, "teams/_tokens_panel.html", context)
    return redirect("team-tokens", team=obj.slug)


@require_GET
@login_required
@domain_errors_as_http
def audit_log(request: HttpRequest, team: str) -> HttpResponse:
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    events = audit_event_list(actor=actor, team=obj)[:200]
    return render(request, "teams/audit.html", {"team": obj, "events": events})


@require_http_methods(["GET", "POST"])
@login_required
@domain_errors_as_http
def team_settings(request: HttpRequest, team: str) -> HttpResponse:
    """Members and roles, and the team's settings: everyone in the team reads them, admins change them (each change
    audited by the service it goes through). A POST names its operation: member, remove or settings."""
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    request.session[CURRENT_TEAM_SESSION_KEY] = obj.slug
    done = error = ""
    if request.method == "POST":
        operation = request.POST.get("operation", "")
        try:
            done = _settings_change(actor, obj, operation, request.POST)
        except PermissionDeniedError:
            raise
        except ApplicationError as exc:
            error = exc.message
        obj.refresh_from_db()
    context = {
        "team": obj,
        "members": membership_list(actor=actor, team=obj),
        "roles": Role.choices,
        "targets": AUTO_CONVERT_TARGETS,
        "is_admin": actor_can(actor=actor, team=obj, action=Action.MANAGE),
        "done": done,
        "error": error,
    }
    template = "teams/_settings_panel.html" if request.headers.get("HX-Request") else "teams/settings.html"
    return render(request, template, context, status=400 if error else 200)


def _settings_change(actor: Actor, team: Any, operation: str, form: Any) -> str:
    """Apply one change from the settings page; what to tell the user once it is done."""
    if operation == "settings":
        targets = [target for target in AUTO_CONVERT_TARGETS if form.get(f"convert_{target}") == "on"]
        team_settings_update(
            actor=actor, team=team, trusted_pickle=form.get("trusted_pickle") == "on", auto_convert_targets=targets
        )
        return "Settings saved."
    username = form.get("username", "").strip()
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFoundError(f"No user named '{username}': they need an account first (an admin of the site makes it).")
    if operation == "member":
        role = form.get("role", "")
        membership_set(actor=actor, team=team, user=user, role=role)
        return f"{username} is a {role} of {team.slug} now."
    if operation == "remove":
        membership_remove(actor=actor, team=team, user=user)
        return f"{username} left {team.slug}; their tokens for it are revoked."
    raise ApplicationError("invalid", f"Unknown operation '{operation}'.")

"""The Webhooks section of the team settings page: a fragment of its own (the settings page is teams', below us), loaded
and replaced in place with htmx. Everyone in the team sees that it exists; only admins see and change webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from common.errors import ApplicationError, NotFoundError, PermissionDeniedError
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor, actor_can
from teams.selectors import team_get_for_actor
from teams.views import domain_errors_as_http
from webhooks.choices import EVENT_KINDS, WebhookFormat
from webhooks.models import Webhook, WebhookDelivery
from webhooks.selectors import DELIVERIES_SHOWN, delivery_get, delivery_list, webhook_get, webhook_list
from webhooks.services import (
    CreatedWebhook,
    delivery_redeliver,
    webhook_create,
    webhook_delete,
    webhook_ping,
    webhook_update,
)


@dataclass
class WebhookRow:
    webhook: Webhook
    deliveries: list[WebhookDelivery]


@dataclass
class Outcome:
    done: str = ""
    created: CreatedWebhook | None = None


def _change(actor: Actor, team: Team, form: Any) -> Outcome:
    """Apply one change from the section; what to tell the user once it is done. A POST names its operation."""
    operation = form.get("operation", "")
    if operation == "create":
        created = webhook_create(
            actor=actor,
            team=team,
            name=form.get("name", ""),
            url=form.get("url", ""),
            events=form.getlist("events"),
            format=form.get("format", WebhookFormat.MODELDECK),
        )
        return Outcome(f"Webhook '{created.webhook.name}' created.", created)
    webhook = webhook_get(actor=actor, team=team, webhook_id=_id(form.get("webhook", "")))
    if operation == "enable":
        enabled = form.get("enabled") == "true"
        webhook_update(actor=actor, webhook=webhook, enabled=enabled)
        return Outcome(f"Webhook '{webhook.name}' {'enabled' if enabled else 'disabled'}.")
    if operation == "delete":
        webhook_delete(actor=actor, webhook=webhook)
        return Outcome(f"Webhook '{webhook.name}' deleted with its delivery log.")
    if operation == "test":
        webhook_ping(actor=actor, webhook=webhook)
        return Outcome(f"Test event queued for '{webhook.name}': its outcome shows in the deliveries below.")
    if operation == "redeliver":
        delivery = delivery_get(actor=actor, webhook=webhook, delivery_id=form.get("delivery", ""))
        delivery_redeliver(actor=actor, delivery=delivery)
        return Outcome(f"The {delivery.kind} event is queued again for '{webhook.name}'.")
    raise ApplicationError("invalid", f"Unknown operation '{operation}'.")


def _id(raw: str) -> int:
    if not raw.isdigit():
        raise ApplicationError("invalid", f"'{raw}' is not a webhook id.")
    return int(raw)


@require_http_methods(["GET", "POST"])
@domain_errors_as_http
def team_webhooks(request: HttpRequest, team: str) -> HttpResponse:
    """List the team's webhooks with their latest deliveries, and create, enable, disable, delete, test, redeliver."""
    if not request.user.is_authenticated:
        return HttpResponse(status=401)  # a fragment: no redirect to the login page inside the settings page
    actor = Actor(user=request.user)
    obj = team_get_for_actor(actor=actor, slug=team)
    is_admin = actor_can(actor=actor, team=obj, action=Action.MANAGE)
    outcome, error = Outcome(), ""
    form: QueryDict | None = None
    if request.method == "POST":
        try:
            outcome = _change(actor, obj, request.POST)
        except (PermissionDeniedError, NotFoundError):
            raise  # another team's webhook is not found, as on every page
        except ApplicationError as exc:
            error = exc.message
            form = request.POST  # a refused create keeps what was typed
    rows = []
    if is_admin:
        rows = [
            WebhookRow(webhook, list(delivery_list(actor=actor, webhook=webhook)[:DELIVERIES_SHOWN]))
            for webhook in webhook_list(actor=actor, team=obj)
        ]
    context = {
        "team": obj,
        "is_admin": is_admin,
        "rows": rows,
        "kinds": EVENT_KINDS,
        "formats": WebhookFormat.choices,
        "done": outcome.done,
        "created": outcome.created,
        "error": error,
        "form": form or {},
        "form_events": form.getlist("events") if form else ["release", "alert"],
    }
    response = render(request, "webhooks/_webhooks_panel.html", context, status=400 if error else 200)
    # The answer to a create carries the secret: never cached anywhere.
    response["Cache-Control"] = "no-store"
    return response

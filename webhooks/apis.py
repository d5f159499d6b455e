"""REST API for a team's webhooks: admins list, create, change, delete, test them and read their deliveries.

Only admins see webhooks at all: a URL can itself be a credential (a Slack incoming-webhook URL is one), so members
of weaker roles get 403 and outsiders 404. The signing secret is in the creation's answer and never again.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.openapi import error_responses
from teams.choices import Action
from teams.models import Team
from teams.permissions import Actor
from teams.selectors import team_get_for_actor
from webhooks.choices import EVENT_KINDS, DeliveryState, WebhookFormat
from webhooks.models import Webhook
from webhooks.selectors import delivery_get, delivery_list, webhook_get, webhook_list
from webhooks.services import delivery_redeliver, webhook_create, webhook_delete, webhook_ping, webhook_update


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_KINDS))
    format = serializers.ChoiceField(choices=WebhookFormat.choices)
    enabled = serializers.BooleanField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DeliveryOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    event_id = serializers.UUIDField(help_text="The body's `id`: the same for every delivery of one event.")
    kind = serializers.CharField(help_text="The event kind, or `ping` for a test.")
    # A string, not an enum component: `state` names the rollouts' choice set in the schema already.
    state = serializers.CharField(help_text=f"One of {', '.join(DeliveryState.values)}.")
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    response_ms = serializers.IntegerField(allow_null=True)
    attempt_log = serializers.ListField(
        source="log", child=serializers.DictField(), help_text="Each attempt: at, status_code, error, ms."
    )
    payload = serializers.JSONField(help_text="The ModelDeck body (a Slack webhook is sent a sentence made from it).")
    created_at = serializers.DateTimeField()


def _team(request: Request, team: str) -> tuple[Actor, Team]:
    actor = Actor.from_request(request)
    return actor, team_get_for_actor(actor=actor, slug=team, action=Action.MANAGE)


def _webhook(request: Request, team: str, webhook_id: int) -> tuple[Actor, Webhook]:
    actor, obj = _team(request, team)
    return actor, webhook_get(actor=actor, team=obj, webhook_id=webhook_id)


class WebhookListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        url = serializers.CharField(max_length=2000, help_text="http(s) URL, without credentials in it.")
        events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_KINDS), allow_empty=False)
        format = serializers.ChoiceField(choices=WebhookFormat.choices, default=WebhookFormat.MODELDECK)
        enabled = serializers.BooleanField(default=True)

    class CreatedSerializer(WebhookOutputSerializer):
        secret = serializers.CharField(help_text="The signing secret; shown only in this response.")

    @extend_schema(responses=WebhookOutputSerializer(many=True))
    def get(self, request: Request, team: str) -> Response:
        actor, obj = _team(request, team)
        return Response(WebhookOutputSerializer(webhook_list(actor=actor, team=obj), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer, **error_responses(409)})
    def post(self, request: Request, team: str) -> Response:
        """Create a webhook (admins only); its signing secret is in this response and never again."""
        actor, obj = _team(request, team)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = webhook_create(actor=actor, team=obj, **data.validated_data)
        body: dict[str, Any] = {**WebhookOutputSerializer(created.webhook).data, "secret": created.secret}
        response = Response(body, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response


class WebhookDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False)
        url = serializers.CharField(max_length=2000, required=False)
        events = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_KINDS), allow_empty=False, required=False
        )
        format = serializers.ChoiceField(choices=WebhookFormat.choices, required=False)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(responses=WebhookOutputSerializer)
    def get(self, request: Request, team: str, webhook_id: int) -> Response:
        _, webhook = _webhook(request, team, webhook_id)
        return Response(WebhookOutputSerializer(webhook).data)

    @extend_schema(request=InputSerializer, responses={200: WebhookOutputSerializer, **error_responses(409)})
    def patch(self, request: Request, team: str, webhook_id: int) -> Response:
        """Change a webhook's name, URL, events, format or enabled state (admins only)."""
        actor, webhook = _webhook(request, team, webhook_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        webhook = webhook_update(actor=actor, webhook=webhook, **data.validated_data)
        return Response(WebhookOutputSerializer(webhook).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team: str, webhook_id: int) -> Response:
        actor, webhook = _webhook(request, team, webhook_id)
        webhook_delete(actor=actor, webhook=webhook)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookTestApi(APIView):
    @extend_schema(request=None, responses={202: DeliveryOutputSerializer, **error_responses(409)})
    def post(self, request: Request, team: str, webhook_id: int) -> Response:
        """Send the webhook a `ping` event; the delivery is queued (read its outcome in the deliveries)."""
        actor, webhook = _webhook(request, team, webhook_id)
        delivery = webhook_ping(actor=actor, webhook=webhook)
        return Response(DeliveryOutputSerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryPagination(LimitOffsetPagination):
    default_limit = 20
    max_limit = 200


class WebhookDeliveryListApi(APIView):
    pagination_class = DeliveryPagination

    @extend_schema(responses=DeliveryOutputSerializer(many=True))
    def get(self, request: Request, team: str, webhook_id: int) -> Response:
        """The webhook's deliveries, newest first (kept 30 days)."""
        actor, webhook = _webhook(request, team, webhook_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(delivery_list(actor=actor, webhook=webhook), request, view=self)
        return paginator.get_paginated_response(DeliveryOutputSerializer(page, many=True).data)


class DeliveryRedeliverApi(APIView):
    @extend_schema(request=None, responses={202: DeliveryOutputSerializer, **error_responses(409)})
    def post(self, request: Request, team: str, webhook_id: int, delivery_id: UUID) -> Response:
        """Send a delivery's event again, as a new delivery with the same event id and body."""
        actor, webhook = _webhook(request, team, webhook_id)
        delivery = delivery_get(actor=actor, webhook=webhook, delivery_id=delivery_id)
        again = delivery_redeliver(actor=actor, delivery=delivery)
        return Response(DeliveryOutputSerializer(again).data, status=status.HTTP_202_ACCEPTED)

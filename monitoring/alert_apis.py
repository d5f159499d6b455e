"""REST API of alert rules and the alerts they fired, per endpoint."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.openapi import error_responses
from deployments.selectors import endpoint_get
from monitoring.alerts.firing import alert_list
from monitoring.alerts.rules import (
    MAX_WINDOW_SECONDS,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_get,
    alert_rule_list,
)
from monitoring.choices import AlertAction, AlertMetric
from teams.permissions import Actor

ALERTS_SHOWN = 200


class AlertRuleOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    metric = serializers.CharField()
    threshold = serializers.FloatField()
    window_seconds = serializers.IntegerField()
    min_requests = serializers.IntegerField()
    action = serializers.CharField()
    bake_seconds = serializers.IntegerField()
    enabled = serializers.BooleanField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()


class AlertRuleListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        metric = serializers.ChoiceField(choices=AlertMetric.choices)
        threshold = serializers.FloatField(
            min_value=0.0, help_text="A fraction for rates (0.05 = 5 %), milliseconds for p95_ms."
        )
        window_seconds = serializers.IntegerField(min_value=10, max_value=MAX_WINDOW_SECONDS, default=60)
        min_requests = serializers.IntegerField(min_value=1, default=50)
        action = serializers.ChoiceField(choices=AlertAction.choices, default=AlertAction.NOTIFY)
        bake_seconds = serializers.IntegerField(min_value=0, max_value=86400, default=600)
        enabled = serializers.BooleanField(default=True)

    @extend_schema(responses=AlertRuleOutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        return Response(AlertRuleOutputSerializer(alert_rule_list(endpoint=endpoint), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: AlertRuleOutputSerializer, **error_responses(409)})
    def post(self, request: Request, name: str) -> Response:
        """Add a rule: notify, or roll back a release that misbehaves within its bake period."""
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rule = alert_rule_create(actor=actor, endpoint=endpoint, **data.validated_data)
        return Response(AlertRuleOutputSerializer(rule).data, status=status.HTTP_201_CREATED)


class AlertRuleDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, name: str, pk: int) -> Response:
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        alert_rule_delete(actor=actor, rule=alert_rule_get(endpoint=endpoint, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.IntegerField(source="rule_id", allow_null=True)
    rule_name = serializers.CharField()
    metric = serializers.CharField()
    release = serializers.IntegerField()
    version = serializers.IntegerField()
    role = serializers.CharField()
    value = serializers.FloatField()
    threshold = serializers.FloatField()
    window_seconds = serializers.IntegerField()
    requests = serializers.IntegerField()
    fired_at = serializers.DateTimeField()
    action_taken = serializers.CharField()
    rollback_release = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()


class AlertListApi(APIView):
    @extend_schema(responses=AlertOutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        """The endpoint's alerts, newest first (the latest 200)."""
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        return Response(AlertOutputSerializer(alert_list(endpoint=endpoint)[:ALERTS_SHOWN], many=True).data)

"""REST API of monitoring: an endpoint's metric history."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import ApplicationError
from deployments.selectors import endpoint_get
from monitoring.selectors import HISTORY_RANGES, drift_latest, metric_history
from teams.permissions import Actor


class _MetricSeriesSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    role = serializers.CharField()
    # A dict of fields, not a class: a field named `errors` would shadow Serializer.errors.
    points = inline_serializer(
        "MetricPoint",
        fields={
            "t": serializers.DateTimeField(),
            "count": serializers.IntegerField(),
            "errors": serializers.IntegerField(help_text="Requests answered 5xx."),
            "client_errors": serializers.IntegerField(help_text="Requests answered 4xx (the caller's fault)."),
            "disagreements": serializers.IntegerField(),
            "latency_buckets": serializers.ListField(
                child=serializers.IntegerField(),
                help_text="Requests per latency bucket: one per bound of `bounds_ms`, then one past the last.",
            ),
            "p50_ms": serializers.FloatField(allow_null=True),
            "p95_ms": serializers.FloatField(allow_null=True),
            "p99_ms": serializers.FloatField(allow_null=True),
        },
        many=True,
    )


class _MetricReleaseSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    action = serializers.CharField()
    primary = serializers.IntegerField()
    canary = serializers.IntegerField(allow_null=True)
    canary_percent = serializers.IntegerField()
    shadow = serializers.IntegerField(allow_null=True)
    at = serializers.DateTimeField()


class MetricHistorySerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    range = serializers.ChoiceField(choices=list(HISTORY_RANGES))
    bucket_seconds = serializers.IntegerField()
    bounds_ms = serializers.ListField(child=serializers.FloatField(), help_text="Latency bucket upper bounds, in ms.")
    series = _MetricSeriesSerializer(many=True)
    releases = _MetricReleaseSerializer(many=True)


class EndpointMetricsApi(APIView):
    """An endpoint's traffic history per version and role, in buckets, with the releases made in that time."""

    @extend_schema(
        parameters=[OpenApiParameter("range", str, enum=list(HISTORY_RANGES), default="1h")],
        responses=MetricHistorySerializer,
    )
    def get(self, request: Request, name: str) -> Response:
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        range_name = request.query_params.get("range", "1h")
        if range_name not in HISTORY_RANGES:
            raise ApplicationError(
                "invalid",
                f"Unknown range '{range_name}'.",
                {"range": [f"Use one of: {', '.join(HISTORY_RANGES)}."]},
            )
        # The selector already returns plain JSON values; the serializer above documents the shape.
        return Response(metric_history(endpoint=endpoint, range_name=range_name))


class _DriftVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    rows = serializers.IntegerField(help_text="Sampled rows the PSI is computed from.")
    psi = serializers.DictField(child=serializers.FloatField(), help_text="PSI per feature, e.g. {'x[0]': 0.02}.")
    ended_at = serializers.DateTimeField()
    process = serializers.CharField()


class DriftLatestSerializer(serializers.Serializer):
    endpoint = serializers.CharField()
    versions = _DriftVersionSerializer(many=True)


class EndpointDriftApi(APIView):
    """The newest input-drift window of each version: PSI per feature against the version's sample input."""

    @extend_schema(responses=DriftLatestSerializer)
    def get(self, request: Request, name: str) -> Response:
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        return Response({"endpoint": endpoint.name, "versions": drift_latest(endpoint=endpoint)})

"""REST API of the control plane: endpoints, their releases, promote and rollback."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import ApplicationError, NotFoundError
from common.idempotency import idempotent
from common.openapi import error_responses
from deployments.models import Endpoint, Release
from deployments.selectors import endpoint_get, endpoint_list, release_current, release_list
from deployments.services import endpoint_create, endpoint_delete, endpoint_update, release_promote, release_rollback
from registry.models import ModelVersion, RegisteredModel
from registry.selectors import registered_model_get
from teams.models import slug_validator
from teams.permissions import Actor


class ReleaseOutputSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    action = serializers.CharField()
    primary = serializers.IntegerField(source="primary.number")
    canary = serializers.IntegerField(source="canary.number", default=None, allow_null=True)
    canary_percent = serializers.IntegerField()
    shadow = serializers.IntegerField(source="shadow.number", default=None, allow_null=True)
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)
    by = serializers.CharField(
        allow_null=True, help_text='Who made it: a username, or "automatic (rule NAME)" for an automatic rollback.'
    )
    rule = serializers.SerializerMethodField(help_text="The alert rule that rolled back automatically, else null.")
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_rule(self, release: Release) -> str | None:
        return release.rule_name or None


class EndpointOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    team = serializers.CharField(source="team.slug")
    model = serializers.SerializerMethodField()
    protected = serializers.BooleanField()
    public = serializers.BooleanField()
    max_batch_size = serializers.IntegerField()
    max_queue_delay_ms = serializers.FloatField()
    release = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_model(self, endpoint: Endpoint) -> str:
        return f"{endpoint.team.slug}/{endpoint.model.name}"

    @extend_schema_field(ReleaseOutputSerializer)
    def get_release(self, endpoint: Endpoint) -> dict[str, object]:
        return dict(ReleaseOutputSerializer(release_current(endpoint=endpoint)).data)


def _model(actor: Actor, reference: str) -> RegisteredModel:
    team, _, name = reference.partition("/")
    if not team or not name:
        raise ApplicationError("invalid", "Name the model as 'team/model'.", {"model": ["Use 'team/model'."]})
    return registered_model_get(actor=actor, team_slug=team, name=name)


def _version(model: RegisteredModel, number: int | None, field: str = "version") -> ModelVersion:
    version = model.versions.filter(number=number).first() if number is not None else None
    if version is None:
        raise NotFoundError(f"Model '{model.name}' has no version {number}.", {field: number})
    return version


class EndpointListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=63, validators=[slug_validator])
        model = serializers.CharField(help_text="team/model")
        version = serializers.IntegerField(min_value=1)
        protected = serializers.BooleanField(default=False)
        public = serializers.BooleanField(default=False)
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(responses=EndpointOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(EndpointOutputSerializer(endpoint_list(actor=Actor.from_request(request)), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: EndpointOutputSerializer, **error_responses(409, 422)})
    def post(self, request: Request) -> Response:
        actor = Actor.from_request(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = _model(actor, data.validated_data["model"])
        endpoint = endpoint_create(
            actor=actor,
            model=model,
            name=data.validated_data["name"],
            version=_version(model, data.validated_data["version"]),
            protected=data.validated_data["protected"],
            public=data.validated_data["public"],
            reason=data.validated_data["reason"],
        )
        return Response(EndpointOutputSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        public = serializers.BooleanField(required=False)
        protected = serializers.BooleanField(required=False)
        max_batch_size = serializers.IntegerField(required=False, min_value=0, max_value=1024)
        max_queue_delay_ms = serializers.FloatField(required=False, min_value=0.0, max_value=1000.0)

    @extend_schema(responses=EndpointOutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(EndpointOutputSerializer(endpoint_get(actor=Actor.from_request(request), name=name)).data)

    @extend_schema(request=InputSerializer, responses=EndpointOutputSerializer)
    def patch(self, request: Request, name: str) -> Response:
        """Change serving settings: public, protected (admins), dynamic batching."""
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if not data.validated_data:
            raise ApplicationError("invalid", "Nothing to change.")
        return Response(
            EndpointOutputSerializer(endpoint_update(actor=actor, endpoint=endpoint, **data.validated_data)).data
        )

    @extend_schema(
        parameters=[OpenApiParameter("confirm", str, description="the endpoint's name, to confirm the deletion")],
        responses={204: None, **error_responses(409)},
    )
    def delete(self, request: Request, name: str) -> Response:
        """Delete the endpoint (it stops serving at once; its versions stay); `?confirm=NAME` must repeat its name."""
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        endpoint_delete(actor=actor, endpoint=endpoint, confirm=request.query_params.get("confirm", ""))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReleaseListApi(APIView):
    @extend_schema(responses=ReleaseOutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        return Response(ReleaseOutputSerializer(release_list(endpoint=endpoint), many=True).data)


def _release_response(release: Release) -> Response:
    return Response(ReleaseOutputSerializer(release).data, status=status.HTTP_201_CREATED)


class EndpointPromoteApi(APIView):
    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        canary_percent = serializers.IntegerField(required=False, allow_null=True, default=None)
        shadow_version = serializers.IntegerField(required=False, allow_null=True, min_value=1)
        allow_signature_change = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Release a version whose inputs or outputs differ from the primary's (audited with the "
            "differences); without it such a version gets 409 signature_mismatch.",
        )
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: ReleaseOutputSerializer, **error_responses(409, 422)})
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        """Promote a version (or start/adjust a canary); `shadow_version: null` clears the shadow.

        A version or shadow whose signature differs from the primary's is refused with 409 `signature_mismatch`, its
        detail listing each difference, unless `allow_signature_change` is true.
        """
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        shadow_number = data.validated_data.get("shadow_version")
        release = release_promote(
            actor=actor,
            endpoint=endpoint,
            version=_version(endpoint.model, data.validated_data["version"]),
            canary_percent=data.validated_data["canary_percent"],
            shadow_version=_version(endpoint.model, shadow_number, "shadow_version") if shadow_number else None,
            clear_shadow="shadow_version" in data.validated_data and shadow_number is None,
            allow_signature_change=data.validated_data["allow_signature_change"],
            reason=data.validated_data["reason"],
        )
        return _release_response(release)


class EndpointRollbackApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={201: ReleaseOutputSerializer, **error_responses(409)})
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        """Roll back, as a new release: remove a live canary; otherwise bring back the previous primary, alone."""
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return _release_response(release_rollback(actor=actor, endpoint=endpoint, reason=data.validated_data["reason"]))

"""REST API of the control plane: endpoints, their releases, promote, rollback and rollouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import ApplicationError, NotFoundError
from common.idempotency import idempotent
from common.openapi import error_responses
from deployments.approvals import (
    change_request_approve,
    change_request_reject,
    change_requests_expire,
    release_promote_or_request,
    rollout_create_or_request,
)
from deployments.choices import ChangeRequestKind, ChangeRequestState, RolloutState
from deployments.models import ChangeRequest, Endpoint, Release, Rollout
from deployments.rollouts import (
    GATE_LABELS,
    ROLLOUT_GATE_DEFAULTS,
    rollout_abort,
    rollout_advance,
    rollout_pause,
    rollout_resume,
    rollout_seconds_left,
)
from deployments.selectors import (
    change_request_get,
    change_request_list,
    endpoint_get,
    endpoint_list,
    release_current,
    release_list,
    rollout_get,
    rollout_list,
)
from deployments.services import endpoint_create, endpoint_delete, endpoint_update, release_rollback
from registry.models import ModelVersion, RegisteredModel
from registry.selectors import registered_model_get
from teams.models import slug_validator
from teams.permissions import Actor
from teams.selectors import team_get_for_actor, team_list_for_actor


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
    requires_approval = serializers.BooleanField(
        help_text="Promotes and rollouts are change requests another admin approves; rollbacks never wait."
    )
    release = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_model(self, endpoint: Endpoint) -> str:
        return f"{endpoint.team.slug}/{endpoint.model.name}"

    @extend_schema_field(ReleaseOutputSerializer)
    def get_release(self, endpoint: Endpoint) -> dict[str, object]:
        return dict(ReleaseOutputSerializer(release_current(endpoint=endpoint)).data)


class ChangeRequestOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.slug")
    endpoint = serializers.CharField(source="endpoint.name")
    kind = serializers.ChoiceField(choices=ChangeRequestKind.choices)
    state = serializers.ChoiceField(choices=ChangeRequestState.choices)
    version = serializers.IntegerField(source="version_number", allow_null=True)
    change = serializers.DictField(
        help_text="What was asked: version, canary_percent, shadow_version, allow_signature_change, reason (a "
        "rollout: version, steps, gates, allow_signature_change, reason, rollout)."
    )
    rollout = serializers.IntegerField(source="rollout_id", allow_null=True, help_text="The rollout it holds.")
    rollout_state = serializers.CharField(source="rollout.state", default=None, allow_null=True)
    requested_by = serializers.CharField(source="requested_by.username", default=None, allow_null=True)
    requested_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decision_reason = serializers.CharField(allow_blank=True)
    result = serializers.DictField(help_text='What applying made ({"release": 7} or {"rollout": 3}) or {"error": ...}.')


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
        requires_approval = serializers.BooleanField(
            required=False,
            help_text="Admins only, on a protected endpoint of a team with two admins or more (409 otherwise).",
        )

    @extend_schema(responses=EndpointOutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(EndpointOutputSerializer(endpoint_get(actor=Actor.from_request(request), name=name)).data)

    @extend_schema(request=InputSerializer, responses={200: EndpointOutputSerializer, **error_responses(409)})
    def patch(self, request: Request, name: str) -> Response:
        """Change serving settings: public, protected and requires_approval (admins), dynamic batching."""
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

    @extend_schema(
        request=InputSerializer,
        responses={201: ReleaseOutputSerializer, 202: ChangeRequestOutputSerializer, **error_responses(409, 422)},
    )
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        """Promote a version (or start/adjust a canary); `shadow_version: null` clears the shadow.

        A version or shadow whose signature differs from the primary's is refused with 409 `signature_mismatch`, its
        detail listing each difference, unless `allow_signature_change` is true. On an endpoint that requires
        approval the answer is 202 with a change request (nothing is released until another admin approves it).
        """
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        shadow_number = data.validated_data.get("shadow_version")
        made = release_promote_or_request(
            actor=actor,
            endpoint=endpoint,
            version=_version(endpoint.model, data.validated_data["version"]),
            canary_percent=data.validated_data["canary_percent"],
            shadow_version=_version(endpoint.model, shadow_number, "shadow_version") if shadow_number else None,
            clear_shadow="shadow_version" in data.validated_data and shadow_number is None,
            allow_signature_change=data.validated_data["allow_signature_change"],
            reason=data.validated_data["reason"],
        )
        if isinstance(made, ChangeRequest):
            return Response(ChangeRequestOutputSerializer(made).data, status=status.HTTP_202_ACCEPTED)
        return _release_response(made)


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


_GATES_HELP = (
    "Gate thresholds by name; omitted gates take their defaults ("
    + ", ".join(f"{name} {value:g}" for name, value in ROLLOUT_GATE_DEFAULTS.items())
    + "), null turns one off, an unknown name is 400."
)


class RolloutStepSerializer(serializers.Serializer):
    percent = serializers.IntegerField(min_value=1, max_value=99, help_text="The canary's share in this step.")
    bake_seconds = serializers.IntegerField(
        min_value=0, max_value=7 * 24 * 3600, help_text="How long every gate must hold before the next step."
    )


class GateEvaluationSerializer(serializers.Serializer):
    gate = serializers.CharField()
    title = serializers.CharField(help_text="The gate in words.")
    status = serializers.ChoiceField(choices=["passed", "failed", "waiting", "skipped"])
    passed = serializers.BooleanField(allow_null=True, help_text="null while waiting for requests, or skipped.")
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    window_seconds = serializers.FloatField()
    requests = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)


class RolloutHistorySerializer(serializers.Serializer):
    step = serializers.IntegerField()
    gate = serializers.CharField()
    status = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    window_seconds = serializers.FloatField()
    requests = serializers.IntegerField()
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class PreflightCheckSerializer(serializers.Serializer):
    gate = serializers.CharField()
    passed = serializers.BooleanField(allow_null=True, help_text="null when it could not be checked (no benchmark).")
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    note = serializers.CharField(allow_blank=True)


def gate_rows(rollout: Rollout) -> list[dict[str, Any]]:
    """The latest evaluation of each gate, in the order of the defaults."""
    latest = rollout.evaluations or {}
    return [
        {"gate": gate, "title": GATE_LABELS[gate], **latest[gate]} for gate in ROLLOUT_GATE_DEFAULTS if gate in latest
    ]


class RolloutOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint = serializers.CharField(source="endpoint.name")
    version = serializers.IntegerField(source="version.number")
    state = serializers.ChoiceField(choices=RolloutState.choices)
    step = serializers.IntegerField(help_text="The current step, from 1.")
    steps = RolloutStepSerializer(many=True)
    percent = serializers.IntegerField(help_text="The canary's share in the current step.")
    step_started_at = serializers.DateTimeField()
    seconds_left = serializers.SerializerMethodField(help_text="Of the current step's bake (running rollouts only).")
    gates = serializers.DictField(child=serializers.FloatField(allow_null=True), help_text="Each gate's threshold.")
    preflight = PreflightCheckSerializer(many=True)
    evaluations = serializers.SerializerMethodField(help_text="The latest evaluation of each gate.")
    evaluated_at = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)
    outcome = serializers.CharField(allow_blank=True, help_text="Why it ended (the failing numbers of a rollback).")
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_seconds_left(self, rollout: Rollout) -> float | None:
        return rollout_seconds_left(rollout)

    @extend_schema_field(GateEvaluationSerializer(many=True))
    def get_evaluations(self, rollout: Rollout) -> list[dict[str, Any]]:
        return gate_rows(rollout)


class RolloutDetailOutputSerializer(RolloutOutputSerializer):
    history = RolloutHistorySerializer(
        many=True, source="history.all", help_text="Evaluations kept when a verdict changed or the rollout moved."
    )


class RolloutListApi(APIView):
    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1)
        steps = RolloutStepSerializer(many=True, help_text="Rising canary shares; after the last step, a promote.")
        gates = serializers.DictField(
            child=serializers.FloatField(allow_null=True, min_value=0),
            required=False,
            default=dict,
            help_text=_GATES_HELP,
        )
        allow_signature_change = serializers.BooleanField(required=False, default=False)
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(responses=RolloutOutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        return Response(RolloutOutputSerializer(rollout_list(endpoint=endpoint), many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: RolloutDetailOutputSerializer,
            202: ChangeRequestOutputSerializer,
            **error_responses(409, 422),
        },
    )
    @idempotent
    def post(self, request: Request, name: str) -> Response:
        """Start a rollout: pre-flight gates, then the version as a canary at the first step's share.

        409 `rollout_active` while the endpoint has an active rollout; 409 `preflight_failed` with every check. On an
        endpoint that requires approval: 202 with a change request holding the rollout in `pending_approval` (no
        release, not judged) until another admin approves it.
        """
        actor = Actor.from_request(request)
        endpoint = endpoint_get(actor=actor, name=name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        made = rollout_create_or_request(
            actor=actor,
            endpoint=endpoint,
            version=_version(endpoint.model, data.validated_data["version"]),
            steps=[dict(step) for step in data.validated_data["steps"]],
            gates=data.validated_data["gates"],
            allow_signature_change=data.validated_data["allow_signature_change"],
            reason=data.validated_data["reason"],
        )
        if isinstance(made, ChangeRequest):
            return Response(ChangeRequestOutputSerializer(made).data, status=status.HTTP_202_ACCEPTED)
        return Response(RolloutDetailOutputSerializer(made).data, status=status.HTTP_201_CREATED)


class RolloutDetailApi(APIView):
    @extend_schema(responses=RolloutDetailOutputSerializer)
    def get(self, request: Request, name: str, rollout_id: int) -> Response:
        endpoint = endpoint_get(actor=Actor.from_request(request), name=name)
        return Response(RolloutDetailOutputSerializer(rollout_get(endpoint=endpoint, rollout_id=rollout_id)).data)


class _RolloutActionApi(APIView):
    service: ClassVar[Callable[..., Rollout]]

    def act(self, request: Request, name: str, rollout_id: int, **kwargs: Any) -> Response:
        actor = Actor.from_request(request)
        rollout = rollout_get(endpoint=endpoint_get(actor=actor, name=name), rollout_id=rollout_id)
        changed = type(self).service(actor=actor, rollout=rollout, **kwargs)
        return Response(RolloutDetailOutputSerializer(changed).data)


class RolloutPauseApi(_RolloutActionApi):
    service = staticmethod(rollout_pause)

    @extend_schema(request=None, responses={200: RolloutDetailOutputSerializer, **error_responses(409)})
    def post(self, request: Request, name: str, rollout_id: int) -> Response:
        """Stop judging a running rollout; the canary keeps its share."""
        return self.act(request, name, rollout_id)


class RolloutResumeApi(_RolloutActionApi):
    service = staticmethod(rollout_resume)

    @extend_schema(request=None, responses={200: RolloutDetailOutputSerializer, **error_responses(409)})
    def post(self, request: Request, name: str, rollout_id: int) -> Response:
        """Judge a paused rollout again; its step's bake time starts over."""
        return self.act(request, name, rollout_id)


class RolloutAdvanceApi(_RolloutActionApi):
    service = staticmethod(rollout_advance)

    @extend_schema(request=None, responses={200: RolloutDetailOutputSerializer, **error_responses(409)})
    def post(self, request: Request, name: str, rollout_id: int) -> Response:
        """Move to the next step now, skipping the rest of the bake (after the last step: promote)."""
        return self.act(request, name, rollout_id)


class RolloutAbortApi(_RolloutActionApi):
    service = staticmethod(rollout_abort)

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="")

    @extend_schema(request=InputSerializer, responses={200: RolloutDetailOutputSerializer, **error_responses(409)})
    def post(self, request: Request, name: str, rollout_id: int) -> Response:
        """Stop the rollout and take its canary away (a release)."""
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self.act(request, name, rollout_id, reason=data.validated_data["reason"])


class ChangeRequestListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("team", str, description="a team's slug (default: every team of yours)"),
            OpenApiParameter(
                "state", str, enum=["pending", "approved", "rejected", "expired", "failed"], description="only these"
            ),
        ],
        responses=ChangeRequestOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        """The change requests of a team: pending first (the next to expire on top), then the rest, newest first."""
        actor = Actor.from_request(request)
        slug = request.query_params.get("team")
        teams = [team_get_for_actor(actor=actor, slug=slug)] if slug else list(team_list_for_actor(actor=actor))
        state = request.query_params.get("state") or None
        if state is not None and state not in ChangeRequestState.values:
            raise ApplicationError(
                "invalid", f"Unknown state {state!r}.", {"state": ["pending, approved, rejected, expired or failed."]}
            )
        found: list[ChangeRequest] = []
        for team in teams:
            change_requests_expire(team_id=team.pk)
            found.extend(change_request_list(team=team, state=state))
        return Response(ChangeRequestOutputSerializer(found, many=True).data)


class ChangeRequestDetailApi(APIView):
    @extend_schema(responses=ChangeRequestOutputSerializer)
    def get(self, request: Request, request_id: int) -> Response:
        actor = Actor.from_request(request)
        found = change_request_get(actor=actor, request_id=request_id)
        if change_requests_expire(endpoint=found.endpoint):
            found = change_request_get(actor=actor, request_id=request_id)
        return Response(ChangeRequestOutputSerializer(found).data)


class ChangeRequestApproveApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            help_text="Why you approve it (recorded on the request and the release).",
        )

    @extend_schema(request=InputSerializer, responses={200: ChangeRequestOutputSerializer, **error_responses(409)})
    def post(self, request: Request, request_id: int) -> Response:
        """Approve and apply a pending request (an admin other than the requester: 403 `self_approval`), with a
        reason. 409 `expired` past its time; a change that can no longer apply leaves the request `failed`."""
        actor = Actor.from_request(request)
        found = change_request_get(actor=actor, request_id=request_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decided = change_request_approve(actor=actor, request=found, reason=data.validated_data["reason"])
        return Response(ChangeRequestOutputSerializer(decided).data)


class ChangeRequestRejectApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            help_text="Why you reject it (required, unless you withdraw your own).",
        )

    @extend_schema(request=InputSerializer, responses={200: ChangeRequestOutputSerializer, **error_responses(409)})
    def post(self, request: Request, request_id: int) -> Response:
        """Reject a pending request with a reason (an admin), or withdraw your own (reason "withdrawn")."""
        actor = Actor.from_request(request)
        found = change_request_get(actor=actor, request_id=request_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        decided = change_request_reject(actor=actor, request=found, reason=data.validated_data["reason"])
        return Response(ChangeRequestOutputSerializer(decided).data)

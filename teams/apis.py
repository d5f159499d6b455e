"""REST API for teams, members, tokens and the audit trail."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import NotFoundError
from teams.choices import Action, Role
from teams.permissions import Actor, actor_role
from teams.selectors import (
    TeamRole,
    api_token_get,
    api_token_list,
    audit_event_list,
    membership_list,
    team_get_for_actor,
    team_list_with_roles,
)
from teams.services import (
    api_token_create,
    api_token_revoke,
    membership_remove,
    membership_set,
    team_settings_update,
)


class TokenOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    team = serializers.CharField(source="team.slug")
    user = serializers.CharField(source="user.username")
    role = serializers.CharField()
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    active = serializers.BooleanField(source="is_active")


class MeApi(APIView):
    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        token = TokenOutputSerializer(allow_null=True)
        teams = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        actor = Actor.from_request(request)
        teams = [{"slug": t.team.slug, "name": t.team.name, "role": t.role} for t in team_list_with_roles(actor=actor)]
        data = {
            "username": request.user.get_username(),
            "token": TokenOutputSerializer(actor.token).data if actor.token else None,
            "teams": teams,
        }
        return Response(data)


class TeamOutputSerializer(serializers.Serializer):
    """Serialize a TeamRole: the team and the actor's effective role in it."""

    slug = serializers.CharField(source="team.slug")
    name = serializers.CharField(source="team.name")
    role = serializers.CharField()
    trusted_pickle = serializers.BooleanField(source="team.trusted_pickle")
    auto_convert_targets = serializers.JSONField(source="team.auto_convert_targets")
    created_at = serializers.DateTimeField(source="team.created_at")


class TeamListApi(APIView):
    @extend_schema(responses=TeamOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        actor = Actor.from_request(request)
        return Response(TeamOutputSerializer(team_list_with_roles(actor=actor), many=True).data)


class TeamDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        trusted_pickle = serializers.BooleanField(
            required=False, help_text="Accept pickle/joblib uploads (opened only inside a worker). Admins only."
        )
        auto_convert_targets = serializers.ListField(
            child=serializers.ChoiceField(choices=["onnx", "tflite"]),
            required=False,
            help_text="Formats every Keras, SavedModel or scikit-learn upload is converted to automatically.",
        )

    @extend_schema(responses=TeamOutputSerializer)
    def get(self, request: Request, team: str) -> Response:
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team)
        role = actor_role(actor=actor, team=obj)
        return Response(TeamOutputSerializer(TeamRole(team=obj, role=role or "")).data)

    @extend_schema(request=InputSerializer, responses=TeamOutputSerializer)
    def patch(self, request: Request, team: str) -> Response:
        """Change the team's settings."""
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team, action=Action.MANAGE)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team_settings_update(actor=actor, team=obj, **data.validated_data)
        role = actor_role(actor=actor, team=obj)
        return Response(TeamOutputSerializer(TeamRole(team=obj, role=role or "")).data)


class MemberOutputSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()
    created_at = serializers.DateTimeField()


class MemberListApi(APIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)

    @extend_schema(responses=MemberOutputSerializer(many=True))
    def get(self, request: Request, team: str) -> Response:
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team)
        return Response(MemberOutputSerializer(membership_list(actor=actor, team=obj), many=True).data)

    @extend_schema(request=InputSerializer, responses={200: MemberOutputSerializer})
    def post(self, request: Request, team: str) -> Response:
        """Add an existing user to the team, or change their role (admins only)."""
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team, action=Action.MANAGE)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = get_user_model().objects.filter(username=data.validated_data["username"]).first()
        if user is None:
            raise NotFoundError(f"No user named '{data.validated_data['username']}'.")
        membership = membership_set(actor=actor, team=obj, user=user, role=data.validated_data["role"])
        return Response(MemberOutputSerializer(membership).data)


class MemberDeleteApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, team: str, username: str) -> Response:
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team, action=Action.MANAGE)
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise NotFoundError(f"'{username}' is not a member of team '{obj.slug}'.")
        membership_remove(actor=actor, team=obj, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        role = serializers.ChoiceField(choices=Role.choices, default=Role.VIEWER)
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    class CreatedSerializer(TokenOutputSerializer):
        token = serializers.CharField(help_text="The secret; shown only in this response.")

    @extend_schema(responses=TokenOutputSerializer(many=True))
    def get(self, request: Request, team: str) -> Response:
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team)
        return Response(TokenOutputSerializer(api_token_list(actor=actor, team=obj), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer})
    def post(self, request: Request, team: str) -> Response:
        """Issue yourself a token for the team; the secret is in this response and never again."""
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = api_token_create(actor=actor, team=obj, **data.validated_data)
        body: dict[str, Any] = {**TokenOutputSerializer(issued.token).data, "token": issued.raw}
        return Response(body, status=status.HTTP_201_CREATED)


class TokenRevokeApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, team: str, token_id: int) -> Response:
        actor = Actor.from_request(request)
        obj = team_get_for_actor(actor=actor, slug=team)
        api_token_revoke(actor=actor, token=api_token_get(actor=actor, team=obj, token_id=token_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    team = serializers.CharField(source="team.slug")
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)
    token_prefix = serializers.CharField()
    action = serializers.CharField()
    target_type = serializers.CharField()
    target_id = serializers.CharField()
    details = serializers.JSONField(source="data")
    created_at = serializers.DateTimeField()


class AuditPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class AuditListApi(APIView):
    # Read by drf-spectacular too: the schema describes the page (count, next, previous, results) and limit/offset.
    pagination_class = AuditPagination

    @extend_schema(
        parameters=[OpenApiParameter("team", str, description="Only this team's events.")],
        responses=AuditEventOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        actor = Actor.from_request(request)
        team_slug = request.query_params.get("team")
        team = team_get_for_actor(actor=actor, slug=team_slug) if team_slug else None
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(audit_event_list(actor=actor, team=team), request, view=self)
        return paginator.get_paginated_response(AuditEventOutputSerializer(page, many=True).data)

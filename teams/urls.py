from __future__ import annotations

from django.urls import path

from teams import apis

urlpatterns = [
    path("me", apis.MeApi.as_view(), name="api-me"),
    path("teams", apis.TeamListApi.as_view(), name="api-teams"),
    path("teams/<str:team>", apis.TeamDetailApi.as_view(), name="api-team"),
    path("teams/<str:team>/members", apis.MemberListApi.as_view(), name="api-members"),
    path("teams/<str:team>/members/<str:username>", apis.MemberDeleteApi.as_view(), name="api-member"),
    path("teams/<str:team>/tokens", apis.TokenListApi.as_view(), name="api-tokens"),
    path("teams/<str:team>/tokens/<int:token_id>", apis.TokenRevokeApi.as_view(), name="api-token"),
    path("audit", apis.AuditListApi.as_view(), name="api-audit"),
]

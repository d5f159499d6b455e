"""Every role's boundary, for sessions and for tokens, through the one permission layer."""

from __future__ import annotations

import pytest

from common.errors import NotFoundError, PermissionDeniedError
from teams.choices import Action, Role
from teams.models import ApiToken
from teams.permissions import Actor, actor_can, actor_require, actor_role
from tests.teams.factories import create_membership, create_team, create_user

EXPECTED = {
    Role.VIEWER: {Action.VIEW, Action.INVOKE},
    Role.DEVELOPER: {Action.VIEW, Action.INVOKE, Action.DEVELOP},
    Role.ADMIN: {Action.VIEW, Action.INVOKE, Action.DEVELOP, Action.CHANGE_PROTECTED, Action.MANAGE},
}


@pytest.mark.django_db
@pytest.mark.parametrize("role", Role.values)
def test_each_role_allows_exactly_its_actions(role: str) -> None:
    membership = create_membership(role=role)
    actor = Actor(user=membership.user)
    allowed = {a for a in Action.values if actor_can(actor=actor, team=membership.team, action=a)}
    assert allowed == EXPECTED[Role(role)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("member_role", "token_role", "effective"),
    [
        (Role.ADMIN, Role.VIEWER, Role.VIEWER),
        (Role.ADMIN, Role.DEVELOPER, Role.DEVELOPER),
        (Role.DEVELOPER, Role.ADMIN, Role.DEVELOPER),  # a stored role above the member's is still capped
        (Role.VIEWER, Role.ADMIN, Role.VIEWER),
    ],
)
def test_token_role_is_capped_by_membership(member_role: str, token_role: str, effective: str, make_member) -> None:
    member = make_member(role=member_role)
    token = ApiToken.objects.get(user=member.user)
    token.role = token_role
    assert actor_role(actor=Actor(user=member.user, token=token), team=member.team) == effective


@pytest.mark.django_db
def test_token_acts_only_on_its_own_team(make_member) -> None:
    member = make_member(role=Role.ADMIN)
    other = create_team()
    create_membership(team=other, user=member.user, role=Role.ADMIN)
    token = ApiToken.objects.get(user=member.user, team=member.team)
    token_actor = Actor(user=member.user, token=token)
    assert actor_role(actor=token_actor, team=other) is None
    assert actor_role(actor=Actor(user=member.user), team=other) == Role.ADMIN


@pytest.mark.django_db
def test_outsider_gets_not_found_and_weak_member_gets_denied() -> None:
    team = create_team(slug="secret")
    outsider = Actor(user=create_user())
    with pytest.raises(NotFoundError, match="Team 'secret' not found"):
        actor_require(actor=outsider, team=team, action=Action.VIEW)
    viewer = create_membership(team=team, role=Role.VIEWER)
    with pytest.raises(PermissionDeniedError) as info:
        actor_require(actor=Actor(user=viewer.user), team=team, action=Action.DEVELOP)
    assert info.value.detail == {"team": "secret", "action": "develop", "required_role": "developer", "role": "viewer"}


@pytest.mark.django_db
def test_inactive_user_has_no_role() -> None:
    membership = create_membership(role=Role.ADMIN)
    membership.user.is_active = False
    membership.user.save()
    assert actor_role(actor=Actor(user=membership.user), team=membership.team) is None

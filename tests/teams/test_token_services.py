"""Tokens: stored hashed, shown once, role-capped, revocable, expiring, with a throttled last-used time."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from common.errors import ApplicationError, NotFoundError
from teams.choices import Role
from teams.models import ApiToken, AuditEvent
from teams.permissions import Actor
from teams.services import api_token_authenticate, api_token_create, api_token_revoke, membership_remove, membership_set
from tests.teams.factories import create_membership, create_user

pytestmark = pytest.mark.django_db


def test_only_the_digest_is_stored_and_the_prefix_is_visible() -> None:
    membership = create_membership(role=Role.DEVELOPER)
    issued = api_token_create(actor=Actor(user=membership.user), team=membership.team, name="ci", role=Role.VIEWER)
    row = ApiToken.objects.get(pk=issued.token.pk)
    assert issued.raw.startswith("mdk_")
    assert len(issued.raw) > 40
    assert row.digest == hashlib.sha256(issued.raw.encode()).hexdigest()
    assert row.prefix == issued.raw[:12]
    # The secret appears in no column of the row.
    for field in ApiToken._meta.concrete_fields:
        assert issued.raw not in str(field.value_from_object(row))
    assert api_token_authenticate(raw=issued.raw) == row


def test_a_token_cannot_exceed_its_creators_role() -> None:
    membership = create_membership(role=Role.DEVELOPER)
    with pytest.raises(ApplicationError) as info:
        api_token_create(actor=Actor(user=membership.user), team=membership.team, name="x", role=Role.ADMIN)
    assert info.value.code == "role_too_high"
    assert info.value.status_code == 403
    assert not ApiToken.objects.exists()


def test_a_token_cannot_mint_a_stronger_token() -> None:
    membership = create_membership(role=Role.ADMIN)
    weak = api_token_create(actor=Actor(user=membership.user), team=membership.team, name="weak", role=Role.VIEWER)
    with pytest.raises(ApplicationError, match="more than your own role"):
        api_token_create(
            actor=Actor(user=membership.user, token=weak.token), team=membership.team, name="x", role="developer"
        )


def test_revoked_token_no_longer_authenticates_and_revocation_is_audited() -> None:
    membership = create_membership(role=Role.VIEWER)
    actor = Actor(user=membership.user)
    issued = api_token_create(actor=actor, team=membership.team, name="ci", role=Role.VIEWER)
    api_token_revoke(actor=actor, token=issued.token)
    assert api_token_authenticate(raw=issued.raw) is None
    assert ApiToken.objects.get(pk=issued.token.pk).revoked_at is not None
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == ["token.create", "token.revoke"]


def test_members_cannot_revoke_each_others_tokens_but_admins_can() -> None:
    owner = create_membership(role=Role.DEVELOPER)
    peer = create_membership(team=owner.team, role=Role.DEVELOPER)
    admin = create_membership(team=owner.team, role=Role.ADMIN)
    issued = api_token_create(actor=Actor(user=owner.user), team=owner.team, name="ci", role=Role.VIEWER)
    with pytest.raises(NotFoundError):
        api_token_revoke(actor=Actor(user=peer.user), token=issued.token)
    assert api_token_authenticate(raw=issued.raw) is not None
    api_token_revoke(actor=Actor(user=admin.user), token=issued.token)
    assert api_token_authenticate(raw=issued.raw) is None


def test_expired_token_is_refused() -> None:
    membership = create_membership(role=Role.VIEWER)
    soon = timezone.now() + timedelta(hours=1)
    issued = api_token_create(
        actor=Actor(user=membership.user), team=membership.team, name="t", role="viewer", expires_at=soon
    )
    assert api_token_authenticate(raw=issued.raw) is not None
    ApiToken.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_token_authenticate(raw=issued.raw) is None


@pytest.mark.parametrize("raw", ["", "mdk_", "not-a-token", "mdk_" + "x" * 200, "mdk_abcdefgh" + "é" * 10])
def test_garbage_never_authenticates(raw: str) -> None:
    assert api_token_authenticate(raw=raw) is None


def test_last_used_is_recorded_at_most_once_a_minute(django_assert_num_queries) -> None:
    membership = create_membership(role=Role.VIEWER)
    issued = api_token_create(actor=Actor(user=membership.user), team=membership.team, name="t", role="viewer")
    with django_assert_num_queries(2):  # lookup + the first last-used write
        api_token_authenticate(raw=issued.raw)
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None
    with django_assert_num_queries(1):  # lookup only
        api_token_authenticate(raw=issued.raw)
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - timedelta(minutes=2))
    api_token_authenticate(raw=issued.raw)
    latest = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert latest is not None
    assert latest > first


def test_removing_a_member_revokes_their_tokens() -> None:
    admin = create_membership(role=Role.ADMIN)
    member = create_membership(team=admin.team, role=Role.DEVELOPER)
    issued = api_token_create(actor=Actor(user=member.user), team=admin.team, name="t", role="developer")
    membership_remove(actor=Actor(user=admin.user), team=admin.team, user=member.user)
    assert api_token_authenticate(raw=issued.raw) is None


def test_demoting_a_member_caps_their_tokens() -> None:
    admin = create_membership(role=Role.ADMIN)
    member = create_membership(team=admin.team, role=Role.ADMIN)
    issued = api_token_create(actor=Actor(user=member.user), team=admin.team, name="t", role="admin")
    membership_set(actor=Actor(user=admin.user), team=admin.team, user=member.user, role=Role.VIEWER)
    assert ApiToken.objects.get(pk=issued.token.pk).role == Role.VIEWER


def test_the_last_admin_cannot_be_demoted_or_removed() -> None:
    admin = create_membership(role=Role.ADMIN)
    actor = Actor(user=admin.user)
    with pytest.raises(ApplicationError, match="last admin"):
        membership_set(actor=actor, team=admin.team, user=admin.user, role=Role.VIEWER)
    with pytest.raises(ApplicationError, match="last admin"):
        membership_remove(actor=actor, team=admin.team, user=admin.user)
    admin.refresh_from_db()
    assert admin.role == Role.ADMIN


def test_only_admins_manage_members() -> None:
    dev = create_membership(role=Role.DEVELOPER)
    newcomer = create_user()
    with pytest.raises(ApplicationError) as info:
        membership_set(actor=Actor(user=dev.user), team=dev.team, user=newcomer, role=Role.VIEWER)
    assert info.value.status_code == 403
    assert not dev.team.memberships.filter(user=newcomer).exists()

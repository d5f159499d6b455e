"""Writes for teams, members, tokens and the audit trail; each validates and saves in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from common.errors import ApplicationError, NotFoundError
from teams.choices import ROLE_RANK, Action, Role
from teams.models import ApiToken, AuditEvent, Membership, Team
from teams.permissions import Actor, actor_can, actor_require
from teams.signals import membership_changed
from teams.tokens import token_digest, token_generate, token_looks_valid

# last_used_at is written at most this often per token, so authentication is not a write per request.
TOKEN_LAST_USED_RESOLUTION = timedelta(seconds=60)


def audit_record(
    *,
    team: Team,
    actor: Actor | None,
    action: str,
    target: models.Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the team's audit trail."""
    user = actor.user if actor is not None and actor.user.is_authenticated else None
    return AuditEvent.objects.create(
        team=team,
        actor=user,
        token_prefix=actor.token.prefix if actor is not None and actor.token is not None else "",
        action=action,
        target_type=(target._meta.model_name or "") if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data or {},
    )


def security_event_record(*, action: str, data: dict[str, Any]) -> AuditEvent:
    """Append a site-wide security event (no team, no actor) to the audit trail."""
    return AuditEvent.objects.create(team=None, actor=None, action=action, data=data)


def team_create(*, slug: str, name: str = "", admin: User) -> Team:
    """Create a team with its first admin."""
    team = Team(slug=slug, name=name or slug)
    try:
        team.full_clean()
    except ValidationError as exc:
        raise ApplicationError("invalid", f"Invalid team: {'; '.join(exc.messages)}", exc.message_dict) from exc
    with transaction.atomic():
        team.save()
        Membership.objects.create(team=team, user=admin, role=Role.ADMIN)
        audit_record(team=team, actor=Actor(user=admin), action="team.create", target=team, data={"slug": slug})
    return team


AUTO_CONVERT_TARGETS = ("onnx", "tflite")


def team_settings_update(
    *, actor: Actor, team: Team, trusted_pickle: bool | None = None, auto_convert_targets: list[str] | None = None
) -> Team:
    """Change the team's settings (admins only); every change is audited."""
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    changes: dict[str, Any] = {}
    if trusted_pickle is not None and trusted_pickle != team.trusted_pickle:
        changes["trusted_pickle"] = trusted_pickle
    if auto_convert_targets is not None:
        unknown = sorted(set(auto_convert_targets) - set(AUTO_CONVERT_TARGETS))
        if unknown:
            raise ApplicationError(
                "invalid",
                f"Unknown conversion targets {unknown}; use any of {list(AUTO_CONVERT_TARGETS)}.",
                {"auto_convert_targets": unknown},
            )
        targets = [t for t in AUTO_CONVERT_TARGETS if t in auto_convert_targets]
        if targets != team.auto_convert_targets:
            changes["auto_convert_targets"] = targets
    if changes:
        with transaction.atomic():
            for name, value in changes.items():
                setattr(team, name, value)
            team.save(update_fields=[*changes, "updated_at"])
            audit_record(team=team, actor=actor, action="team.settings", target=team, data=changes)
    return team


def _admin_count(team: Team) -> int:
    return Membership.objects.filter(team=team, role=Role.ADMIN).count()


def membership_set(*, actor: Actor, team: Team, user: User, role: str) -> Membership:
    """Add a user to the team or change their role; the last admin cannot be demoted."""
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    if role not in Role.values:
        raise ApplicationError("invalid", f"Unknown role '{role}'; use one of {', '.join(Role.values)}.")
    with transaction.atomic():
        # Lock the team's memberships so two admins demoting each other cannot leave the team with none.
        list(Membership.objects.select_for_update().filter(team=team))
        membership, created = Membership.objects.get_or_create(team=team, user=user, defaults={"role": role})
        previous = None if created else membership.role
        if not created and previous != role:
            if previous == Role.ADMIN and _admin_count(team) == 1:
                raise ApplicationError("last_admin", f"'{user}' is the last admin of team '{team.slug}'.")
            membership.role = role
            membership.save(update_fields=["role", "updated_at"])
            _cap_tokens(team=team, user=user, role=role)
            _announce_membership_change(team=team, user=user)
        audit_record(
            team=team,
            actor=actor,
            action="membership.set",
            target=membership,
            data={"user": user.get_username(), "role": role, "previous_role": previous},
        )
    return membership


def _cap_tokens(*, team: Team, user: User, role: str) -> None:
    """Lower the stored role of the user's tokens to a new, weaker membership role."""
    stronger = [r for r in Role.values if ROLE_RANK[r] > ROLE_RANK[role]]
    ApiToken.objects.filter(team=team, user=user, role__in=stronger).update(role=role)


def membership_remove(*, actor: Actor, team: Team, user: User) -> None:
    """Remove a user from the team and revoke their tokens for it; the last admin cannot leave."""
    actor_require(actor=actor, team=team, action=Action.MANAGE)
    with transaction.atomic():
        list(Membership.objects.select_for_update().filter(team=team))
        membership = Membership.objects.filter(team=team, user=user).first()
        if membership is None:
            raise NotFoundError(f"'{user}' is not a member of team '{team.slug}'.")
        if membership.role == Role.ADMIN and _admin_count(team) == 1:
            raise ApplicationError("last_admin", f"'{user}' is the last admin of team '{team.slug}'.")
        membership.delete()
        ApiToken.objects.filter(team=team, user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit_record(team=team, actor=actor, action="membership.remove", data={"user": user.get_username()})
        _announce_membership_change(team=team, user=user)


def _announce_membership_change(*, team: Team, user: User) -> None:
    """After the commit, tell whoever listens (the user's open websockets) that this membership changed."""
    slug, user_id = team.slug, user.pk
    # send_robust: the change is committed; a listener that fails (Redis away) is logged, not raised to the caller.
    transaction.on_commit(lambda: membership_changed.send_robust(sender=Membership, team=slug, user_id=user_id))


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token and its secret, which is shown once and never stored."""

    token: ApiToken
    raw: str


def api_token_create(
    *, actor: Actor, team: Team, name: str, role: str, expires_at: datetime | None = None
) -> IssuedToken:
    """Issue the acting user a token for the team, capped at a role no stronger than their own."""
    actor_role = actor_require(actor=actor, team=team, action=Action.VIEW)
    name = name.strip()
    if not name:
        raise ApplicationError("invalid", "Give the token a name, e.g. 'ci-pipeline'.", {"name": ["Required."]})
    if role not in Role.values:
        raise ApplicationError("invalid", f"Unknown role '{role}'; use one of {', '.join(Role.values)}.")
    if ROLE_RANK[role] > ROLE_RANK[actor_role]:
        raise ApplicationError(
            "role_too_high",
            f"A token cannot have more than your own role in team '{team.slug}' ({actor_role}).",
            {"role": role, "max_role": actor_role},
            status=403,
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ApplicationError("invalid", "The expiry must be in the future.", {"expires_at": ["In the past."]})
    for _ in range(3):
        secret = token_generate()
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    team=team,
                    user=actor.authenticated_user,
                    name=name[:100],
                    role=role,
                    prefix=secret.prefix,
                    digest=secret.digest,
                    expires_at=expires_at,
                )
                audit_record(
                    team=team,
                    actor=actor,
                    action="token.create",
                    target=token,
                    data={"name": token.name, "role": role, "prefix": token.prefix},
                )
            return IssuedToken(token=token, raw=secret.raw)
        except IntegrityError:  # a 32-bit prefix collision: draw again
            continue
    raise ApplicationError("token_collision", "Could not generate a unique token; try again.", status=503)


def api_token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token: the owner may revoke their own, an admin any of the team's."""
    team = token.team
    actor_require(actor=actor, team=team, action=Action.VIEW)
    if token.user_id != actor.user_id and not actor_can(actor=actor, team=team, action=Action.MANAGE):
        raise NotFoundError(f"Token {token.pk} not found in team '{team.slug}'.")
    with transaction.atomic():
        updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
        if updated:
            audit_record(team=team, actor=actor, action="token.revoke", target=token, data={"prefix": token.prefix})
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """Return the active token with this secret (recording its use), or None."""
    if not token_looks_valid(raw):
        return None
    try:
        # get(), not first(): the digest is unique, and first() would add an ORDER BY to compile and run.
        token = ApiToken.objects.select_related("user", "team").get(digest=token_digest(raw))
    except ApiToken.DoesNotExist:
        return None
    if not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_LAST_USED_RESOLUTION:
        # Conditional so concurrent requests with one token write once.
        stale = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=now - TOKEN_LAST_USED_RESOLUTION)
        ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def user_get_or_create(*, username: str) -> tuple[User, bool]:
    """Return the user with this username, creating one without a usable password if missing."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        return user, False
    user = user_model(username=username)
    user.set_unusable_password()
    user.save()
    return user, True

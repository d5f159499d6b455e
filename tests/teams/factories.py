from __future__ import annotations

from typing import Any, cast

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from teams.choices import Role
from teams.models import Membership, Team

PASSWORD = "pw-for-tests"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    team = factory.SubFactory(TeamFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.VIEWER


# Typed front doors: factory_boy has no type hints, so the tests call these.
def create_user(**kwargs: Any) -> User:
    return cast(User, UserFactory(**kwargs))


def create_team(**kwargs: Any) -> Team:
    return cast(Team, TeamFactory(**kwargs))


def create_membership(**kwargs: Any) -> Membership:
    return cast(Membership, MembershipFactory(**kwargs))

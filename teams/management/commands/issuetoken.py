from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import ApplicationError
from teams.choices import Role
from teams.models import Membership, Team
from teams.permissions import Actor
from teams.services import api_token_create


class Command(BaseCommand):
    help = "Issue an API token for USER in TEAM and print it (only the token, on stdout, for scripts)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True)
        parser.add_argument("--user", required=True)
        parser.add_argument(
            "--role", choices=Role.values, help="Cap the token at this role (default: the user's role)."
        )
        parser.add_argument("--name", default="issued by manage.py issuetoken")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"No team '{options['team']}'.")
        user = get_user_model().objects.filter(username=options["user"]).first()
        membership = Membership.objects.filter(team=team, user=user).first() if user else None
        if user is None or membership is None:
            raise CommandError(f"'{options['user']}' is not a member of team '{team.slug}'.")
        try:
            issued = api_token_create(
                actor=Actor(user=user), team=team, name=options["name"], role=options["role"] or membership.role
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(issued.raw)

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from common.errors import ApplicationError
from teams.models import Team
from teams.services import team_create, user_get_or_create


class Command(BaseCommand):
    help = "Create a team with USER as its admin (the user is created, without a password, if missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("team", help="The team's slug, e.g. 'fraud'.")
        parser.add_argument("--admin", required=True, metavar="USER", help="Username of the team's first admin.")
        parser.add_argument("--name", default="", help="Display name (defaults to the slug).")

    def handle(self, *args: Any, **options: Any) -> None:
        if Team.objects.filter(slug=options["team"]).exists():
            raise CommandError(f"Team '{options['team']}' already exists.")
        user, created = user_get_or_create(username=options["admin"])
        try:
            team = team_create(slug=options["team"], name=options["name"], admin=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Created team '{team.slug}' with admin '{user.get_username()}'.")
        if created:
            self.stdout.write(f"User '{user.get_username()}' is new: set a password with `manage.py changepassword`.")

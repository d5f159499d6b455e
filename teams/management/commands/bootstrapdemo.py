from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from teams.choices import Role
from teams.models import Membership, Team
from teams.services import team_create


def _stored_password(path: Path) -> str:
    """Return the generated admin password kept under var/ (0600), generating it on the first start."""
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password)
    return password


class Command(BaseCommand):
    help = "Create the `demo` team and an admin user with a generated password that stays the same across restarts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=os.environ.get("MODELDECK_ADMIN_USER", "admin"))
        parser.add_argument("--team", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        settings.MODELDECK_VAR_DIR.mkdir(parents=True, exist_ok=True)
        password_file = settings.MODELDECK_VAR_DIR / "admin-password"
        password = _stored_password(password_file)
        user_model = get_user_model()
        user = user_model.objects.filter(username=options["username"]).first()
        if user is None:
            user = user_model.objects.create_superuser(username=options["username"], email="", password=password)
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            team = team_create(slug=options["team"], name="Demo", admin=user)
        elif not Membership.objects.filter(team=team, user=user).exists():
            Membership.objects.create(team=team, user=user, role=Role.ADMIN)
        if user.check_password(password):
            self.stdout.write(f"Login: {user.get_username()} / {password}")
        else:
            self.stdout.write(
                f"Login: {user.get_username()} (its password was changed after it was generated into {password_file})"
            )

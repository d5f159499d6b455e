"""`modeldeck login URL`: check a URL and API token against the server, then save them for the other commands."""

from __future__ import annotations

import getpass
import os
import sys

from rich.console import Console

from modeldeck.client import Client
from modeldeck.commands.arguments import CommandAdd, json_flag
from modeldeck.commands.context import Context
from modeldeck.config import ENV_TOKEN, config_write, url_normalize
from modeldeck.errors import NotAuthenticated, UsageError
from modeldeck.output import Result


def register(add: CommandAdd) -> None:
    login = add("login", login_run, "check a URL and API token against the server and save them (mode 0600)")
    login.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8000")
    login.add_argument("--token", help=f"the API token (else {ENV_TOKEN}, else asked on a terminal)")
    json_flag(login)


def login_run(ctx: Context) -> Result:
    args = ctx.args
    url = url_normalize(args.url)
    token = (args.token or os.environ.get(ENV_TOKEN, "")).strip()
    if not token and sys.stdin.isatty():
        token = getpass.getpass("API token: ").strip()
    if not token:
        raise UsageError(f"Give the API token with --token TOKEN (or {ENV_TOKEN}).", code="token_missing")
    with Client(url, token) as client:
        try:
            me = client.me()
        except NotAuthenticated as exc:
            exc.message = f"ModelDeck at {url} refused the token: {exc.message}"
            raise
    path = config_write(url=url, token=token)
    document = {"url": url, "username": me["username"], "teams": me["teams"], "config": str(path)}

    def render(console: Console) -> None:
        teams = ", ".join(f"{team['slug']} ({team['role']})" for team in me["teams"]) or "no teams"
        console.print(f"Logged in to {url} as [bold]{me['username']}[/] — {teams}.")
        console.print(f"Saved to {path} (readable by you only).")

    return Result(document, render)

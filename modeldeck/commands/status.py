"""`modeldeck status ENDPOINT`: an endpoint's live release and its release history."""

from __future__ import annotations

from rich.console import Console

from modeldeck.commands.arguments import CommandAdd, json_flag
from modeldeck.commands.context import Context
from modeldeck.commands.tables import endpoint_table, releases_table
from modeldeck.output import Result


def register(add: CommandAdd) -> None:
    status = add("status", status_run, "show an endpoint's live release and its release history")
    status.add_argument("endpoint", metavar="ENDPOINT")
    json_flag(status)


def status_run(ctx: Context) -> Result:
    endpoint = ctx.client.get_endpoint(ctx.args.endpoint)
    releases = ctx.client.releases(ctx.args.endpoint)

    def render(console: Console) -> None:
        console.print(endpoint_table(endpoint))
        console.print(releases_table(releases))

    return Result({"endpoint": endpoint, "releases": releases}, render)

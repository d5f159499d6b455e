"""`modeldeck versions TEAM/NAME`: a model's versions with format, lineage, parity and latency."""

from __future__ import annotations

from modeldeck.commands.arguments import CommandAdd, json_flag, model_reference
from modeldeck.commands.context import Context
from modeldeck.commands.tables import versions_table
from modeldeck.output import Result


def register(add: CommandAdd) -> None:
    versions = add("versions", versions_run, "list a model's versions with format, lineage, parity, latency")
    versions.add_argument("model", metavar="TEAM/NAME", type=model_reference)
    json_flag(versions)


def versions_run(ctx: Context) -> Result:
    versions = ctx.client.list_versions(ctx.args.model)
    return Result(
        {"model": ctx.args.model, "versions": versions},
        lambda console: console.print(versions_table(ctx.args.model, versions)),
    )

"""`modeldeck promote` and `modeldeck rollback`: a new release on an endpoint, forward or back."""

from __future__ import annotations

from typing import cast

from rich.console import Console

from modeldeck.client import is_change_request
from modeldeck.commands.approvals import pending_text
from modeldeck.commands.arguments import CommandAdd, json_flag, percent
from modeldeck.commands.context import Context
from modeldeck.commands.tables import serving_text
from modeldeck.output import Result
from modeldeck.resources import Release


def register(add: CommandAdd) -> None:
    promote = add("promote", promote_run, "promote a version on an endpoint, or start a canary (a new release)")
    promote.add_argument("endpoint", metavar="ENDPOINT")
    promote.add_argument("version", metavar="VERSION", type=int)
    promote.add_argument("--canary", type=percent, metavar="PCT", help="send PCT %% of traffic to VERSION only")
    promote.add_argument("--shadow", type=int, metavar="N", help="also mirror traffic to version N, unanswered")
    promote.add_argument(
        "--allow-signature-change",
        action="store_true",
        help="release it even though its inputs or outputs differ from the primary's (audited; without it: exit 5)",
    )
    promote.add_argument("--reason", default="", help="recorded on the release")
    json_flag(promote)

    rollback = add("rollback", rollback_run, "roll an endpoint back to its previous release (a new release)")
    rollback.add_argument("endpoint", metavar="ENDPOINT")
    rollback.add_argument("--reason", default="", help="recorded on the release")
    json_flag(rollback)

    delete = add("delete", delete_run, "delete an endpoint: it stops serving at once (its model's versions stay)")
    delete.add_argument("endpoint", metavar="ENDPOINT")
    delete.add_argument(
        "--confirm", default="", metavar="ENDPOINT", help="the endpoint's name again (without it: exit 5, nothing done)"
    )
    json_flag(delete)


def promote_run(ctx: Context) -> Result:
    args = ctx.args
    made = ctx.client.promote(
        args.endpoint,
        args.version,
        canary_percent=args.canary,
        shadow_version=args.shadow,
        allow_signature_change=args.allow_signature_change,
        reason=args.reason,
    )
    if is_change_request(made):
        # Exit 0: asking is what promote can do here; the request's id is in the JSON for a pipeline to follow.
        return Result(
            {"endpoint": args.endpoint, "change_request": made}, lambda console: console.print(pending_text(made))
        )
    return _release_result(args.endpoint, cast(Release, made))


def rollback_run(ctx: Context) -> Result:
    release = ctx.client.rollback(ctx.args.endpoint, reason=ctx.args.reason)
    return _release_result(ctx.args.endpoint, release)


def delete_run(ctx: Context) -> Result:
    ctx.client.delete_endpoint(ctx.args.endpoint, confirm=ctx.args.confirm)

    def render(console: Console) -> None:
        console.print(f"Deleted [bold]{ctx.args.endpoint}[/]: it no longer serves; its model's versions stay.")

    return Result({"endpoint": ctx.args.endpoint, "deleted": True}, render)


def _release_result(endpoint: str, release: Release) -> Result:
    def render(console: Console) -> None:
        console.print(
            f"[bold]{endpoint}[/]: release {release['number']} ({release['action']}) — {serving_text(release)}"
        )

    return Result({"endpoint": endpoint, "release": release}, render)

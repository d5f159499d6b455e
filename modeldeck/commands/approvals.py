"""`modeldeck approvals`, `approve` and `reject`: the change requests of endpoints that require approval."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from modeldeck.commands.arguments import CommandAdd, json_flag
from modeldeck.commands.context import Context
from modeldeck.output import Result
from modeldeck.resources import ChangeRequest

STATES = ("pending", "approved", "rejected", "expired", "failed")


def register(add: CommandAdd) -> None:
    listing = add("approvals", approvals_run, "list change requests waiting for approval (and decided ones)")
    listing.add_argument("--team", metavar="TEAM", help="one team's (default: every team of yours)")
    listing.add_argument("--state", choices=STATES, help="only requests in this state (e.g. pending)")
    json_flag(listing)

    approve = add("approve", approve_run, "approve a change request and apply it (an admin other than its requester)")
    approve.add_argument("id", metavar="ID", type=int)
    approve.add_argument("--reason", default="", help="why: recorded on the request and the release it makes")
    json_flag(approve)

    reject = add("reject", reject_run, "reject a change request (or withdraw your own)")
    reject.add_argument("id", metavar="ID", type=int)
    reject.add_argument("--reason", default="", help="why (required, unless you withdraw your own)")
    json_flag(reject)


def change_text(request: ChangeRequest) -> str:
    """`promote v3 on iris-prod`, `rollout of v3 (5,25,50%) on iris-prod`."""
    change = request["change"]
    if request["kind"] == "rollout":
        shares = ",".join(str(step["percent"]) for step in change.get("steps", []))
        return f"rollout of v{request['version']} ({shares}%) on {request['endpoint']}"
    if change.get("canary_percent"):
        return f"canary v{request['version']} at {change['canary_percent']}% on {request['endpoint']}"
    return f"promote v{request['version']} on {request['endpoint']}"


def pending_text(request: ChangeRequest) -> str:
    """What `promote` and `rollout` say when the endpoint requires approval."""
    return (
        f"{request['endpoint']} requires approval: change request {request['id']} created ({change_text(request)}); "
        f"another admin approves it with `modeldeck approve {request['id']}` before {request['expires_at']}."
    )


def request_result(request: ChangeRequest) -> Result:
    def render(console: Console) -> None:
        console.print(f"Change request {request['id']} ({change_text(request)}): [bold]{request['state']}[/]")
        if request["decided_by"]:
            console.print(f"  decided by {request['decided_by']}: {request['decision_reason']}")
        if "error" in request["result"]:
            console.print(f"  [red]could not apply:[/] {request['result']['error']}")
        elif "release" in request["result"]:
            console.print(f"  release {request['result']['release']} made")
        elif "rollout" in request["result"]:
            console.print(f"  rollout {request['result']['rollout']} started")

    return Result({"change_request": request}, render)


def approvals_run(ctx: Context) -> Result:
    requests = ctx.client.change_requests(team=ctx.args.team, state=ctx.args.state)

    def render(console: Console) -> None:
        if not requests:
            console.print("No change requests.")
            return
        table = Table("ID", "State", "Change", "Asked by", "Expires / decided")
        for request in requests:
            when = request["expires_at"] if request["state"] == "pending" else (request["decided_by"] or "-")
            table.add_row(
                str(request["id"]), request["state"], change_text(request), request["requested_by"] or "-", when
            )
        console.print(table)

    return Result({"change_requests": requests}, render)


def approve_run(ctx: Context) -> Result:
    return request_result(ctx.client.approve(ctx.args.id, reason=ctx.args.reason))


def reject_run(ctx: Context) -> Result:
    return request_result(ctx.client.reject(ctx.args.id, reason=ctx.args.reason))

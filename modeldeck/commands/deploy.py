"""`modeldeck deploy ENDPOINT --model TEAM/NAME --version N`: create an endpoint, or promote on the one that exists."""

from __future__ import annotations

import argparse

from rich.console import Console

from modeldeck.client import is_change_request
from modeldeck.commands.approvals import pending_text
from modeldeck.commands.arguments import CommandAdd, json_flag, model_reference
from modeldeck.commands.context import Context
from modeldeck.commands.tables import endpoint_table
from modeldeck.errors import Invalid, NotFound
from modeldeck.output import Result
from modeldeck.resources import ChangeRequest, Endpoint


def register(add: CommandAdd) -> None:
    deploy = add(
        "deploy",
        deploy_run,
        "create an endpoint serving a version; on an existing endpoint of the same model, promote the version",
    )
    deploy.add_argument("endpoint", metavar="ENDPOINT")
    deploy.add_argument("--model", required=True, type=model_reference, metavar="TEAM/NAME")
    deploy.add_argument("--version", required=True, type=int, metavar="N")
    deploy.add_argument(
        "--protected", action=argparse.BooleanOptionalAction, help="only admins may change it (production)"
    )
    deploy.add_argument("--public", action=argparse.BooleanOptionalAction, help="inference needs no token")
    deploy.add_argument("--reason", default="", help="recorded on the release")
    json_flag(deploy)


def deploy_run(ctx: Context) -> Result:
    """Create the endpoint serving the version; on an endpoint that exists for the model, promote the version."""
    args = ctx.args
    client = ctx.client
    created = promoted = False
    change_request: ChangeRequest | None = None
    try:
        endpoint: Endpoint = client.get_endpoint(args.endpoint)
    except NotFound:
        endpoint = client.create_endpoint(
            args.endpoint,
            model=args.model,
            version=args.version,
            protected=bool(args.protected),
            public=bool(args.public),
            reason=args.reason,
        )
        created = True
    else:
        if endpoint["model"] != args.model:
            raise Invalid(
                f"Endpoint {args.endpoint} serves {endpoint['model']}, not {args.model}.",
                code="endpoint_model_mismatch",
                detail={"endpoint": args.endpoint, "model": endpoint["model"]},
            )
        release = endpoint["release"]
        if release["primary"] != args.version or release["canary"] is not None:
            made = client.promote(args.endpoint, args.version, reason=args.reason)
            if is_change_request(made):
                change_request = made
            else:
                promoted = True
        changes = {
            key: value
            for key, value in (("protected", args.protected), ("public", args.public))
            if value is not None and dict(endpoint).get(key) != value
        }
        if changes:
            client.update_endpoint(args.endpoint, **changes)
        if promoted or changes:
            endpoint = client.get_endpoint(args.endpoint)
    document: dict[str, object] = {"created": created, "promoted": promoted, "endpoint": endpoint}
    if change_request is not None:
        document["change_request"] = change_request

    def render(console: Console) -> None:
        what = "created" if created else ("promoted" if promoted else "already serving the version")
        if change_request is not None:
            console.print(pending_text(change_request))
            what = "not promoted yet"
        console.print(f"Endpoint [bold]{endpoint['name']}[/] {what}.")
        console.print(endpoint_table(endpoint))

    return Result(document, render)

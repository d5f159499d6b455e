"""`modeldeck archive TEAM/NAME[:VERSION]` and `modeldeck unarchive`: hide a model or a version, or bring it back."""

from __future__ import annotations

import argparse

from rich.console import Console

from modeldeck.commands.arguments import CommandAdd, json_flag, model_reference
from modeldeck.commands.context import Context
from modeldeck.output import Result
from modeldeck.resources import Model, Version


def register(add: CommandAdd) -> None:
    archive = add(
        "archive",
        archive_run,
        "archive a model (with its versions) or one version: hidden from lists, never newly deployed; refused while "
        "an endpoint serves it (exit 5)",
    )
    archive.add_argument("target", metavar="TEAM/NAME[:VERSION]", type=archive_target)
    json_flag(archive)

    unarchive = add(
        "unarchive",
        unarchive_run,
        "bring an archived model or version back (refused once a version's files were collected: exit 5)",
    )
    unarchive.add_argument("target", metavar="TEAM/NAME[:VERSION]", type=archive_target)
    json_flag(unarchive)


def archive_target(value: str) -> tuple[str, int | None]:
    """`team/name` or `team/name:3` -> ("team/name", None) or ("team/name", 3)."""
    model, colon, number = value.strip().partition(":")  # a model name has no ":"
    if colon and not (number.isascii() and number.isdigit() and int(number) >= 1):
        raise argparse.ArgumentTypeError(f"{number!r} is not a version number: use TEAM/NAME:N, e.g. demo/iris:3")
    return model_reference(model), int(number) if colon else None


def archive_run(ctx: Context) -> Result:
    return _run(ctx, archive=True)


def unarchive_run(ctx: Context) -> Result:
    return _run(ctx, archive=False)


def _run(ctx: Context, *, archive: bool) -> Result:
    model, number = ctx.args.target
    client = ctx.client
    what = model if number is None else f"{model} v{number}"
    document: dict[str, Model | Version]
    if number is None:
        document = {"model": client.archive_model(model) if archive else client.unarchive_model(model)}
    else:
        document = {
            "version": client.archive_version(model, number) if archive else client.unarchive_version(model, number)
        }

    def render(console: Console) -> None:
        if archive:
            console.print(
                f"Archived [bold]{what}[/]: hidden from lists, never newly deployed (`modeldeck unarchive` undoes it)."
            )
        else:
            console.print(f"Unarchived [bold]{what}[/]: it is active again.")

    return Result(document, render)

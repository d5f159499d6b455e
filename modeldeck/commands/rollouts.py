"""`modeldeck rollout` and `modeldeck rollout-status`: move a canary step by step while its gates hold."""

from __future__ import annotations

import argparse
import re
import time
from typing import cast

from rich.console import Console

from modeldeck.client import is_change_request
from modeldeck.commands.approvals import pending_text
from modeldeck.commands.arguments import CommandAdd, json_flag
from modeldeck.commands.context import Context
from modeldeck.errors import (
    ModelDeckError,
    NotFound,
    PendingApproval,
    RolloutAborted,
    RolloutRolledBack,
    UsageError,
    WaitTimeout,
)
from modeldeck.output import Result
from modeldeck.resources import ROLLOUT_DONE_STATES, Rollout, RolloutStep

# How often `--wait` reads the rollout: the server judges it every second.
POLL_SECONDS = 2.0
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?")
_OFF = ("off", "none", "null")


def duration(value: str) -> int:
    """`300`, `300s`, `5m`, `1h30m` -> seconds."""
    match = _DURATION.fullmatch(value.strip().lower())
    if not value.strip() or match is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a duration: use e.g. 300, 90s, 5m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def durations(value: str) -> list[int]:
    return [duration(part) for part in value.split(",")]


def percents(value: str) -> list[int]:
    try:
        found = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a list of percentages, e.g. 5,25,50") from None
    if not found:
        raise argparse.ArgumentTypeError("give at least one step, e.g. 5,25,50")
    return found


def gate(value: str) -> tuple[str, float | None]:
    name, sep, threshold = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=VALUE (e.g. error_rate=0.02 or drift_psi=off)")
    if threshold.strip().lower() in _OFF:
        return name.strip(), None
    try:
        return name.strip(), float(threshold)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: the threshold is a number, or off") from None


def register(add: CommandAdd) -> None:
    rollout = add(
        "rollout",
        rollout_run,
        "roll a version out on an endpoint step by step while its gates hold (exit 9 if it rolls back)",
    )
    rollout.add_argument("endpoint", metavar="ENDPOINT")
    rollout.add_argument("version", metavar="VERSION", type=int)
    rollout.add_argument(
        "--steps", type=percents, default=[5, 25, 50], metavar="PCT,PCT,...", help="canary shares (default 5,25,50)"
    )
    rollout.add_argument(
        "--bake",
        type=durations,
        default=[300],
        metavar="DURATION",
        help="how long each step's gates must hold: one for all (5m) or one per step (5m,10m,10m); default 5m",
    )
    rollout.add_argument(
        "--gate",
        type=gate,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gate's threshold (e.g. error_rate=0.02, p95_ratio=1.2, drift_psi=off); repeatable",
    )
    rollout.add_argument("--allow-signature-change", action="store_true", help="pass the signature pre-flight check")
    rollout.add_argument("--reason", default="", help="recorded on the rollout and its releases")
    rollout.add_argument(
        "--wait", action="store_true", help="follow it to the end: exit 0 promoted, 9 rolled back, 10 aborted"
    )
    rollout.add_argument(
        "--timeout", type=float, default=None, metavar="SECONDS", help="give up waiting after this long (exit 8)"
    )
    json_flag(rollout)

    status = add("rollout-status", rollout_status_run, "show an endpoint's latest rollout and its gates")
    status.add_argument("endpoint", metavar="ENDPOINT")
    json_flag(status)


def _steps(ctx: Context) -> list[RolloutStep]:
    args = ctx.args
    bakes: list[int] = args.bake
    if len(bakes) not in (1, len(args.steps)):
        raise UsageError(
            f"--bake gives {len(bakes)} durations for {len(args.steps)} steps: give one, or one per step.",
            code="usage",
        )
    return [
        {"percent": percent, "bake_seconds": bakes[0] if len(bakes) == 1 else bakes[index]}
        for index, percent in enumerate(args.steps)
    ]


def rollout_run(ctx: Context) -> Result:
    args = ctx.args
    made = ctx.client.start_rollout(
        args.endpoint,
        args.version,
        steps=_steps(ctx),
        gates=dict(args.gate),
        allow_signature_change=args.allow_signature_change,
        reason=args.reason,
    )
    if is_change_request(made):
        pending: ModelDeckError | None = None
        if args.wait:
            pending = PendingApproval(
                f"Cannot wait: {pending_text(made)}",
                code="pending_approval",
                detail={"change_request": made["id"], "rollout": made["rollout"]},
            )
        return Result({"change_request": made}, lambda console: console.print(pending_text(made)), pending)
    rollout = cast(Rollout, made)
    if not args.wait:
        return _rollout_result(rollout)
    ctx.output.line(_progress_text(rollout))
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = (rollout["state"], rollout["step"])
    while rollout["state"] not in ROLLOUT_DONE_STATES:
        if deadline is not None and time.monotonic() >= deadline:
            error = WaitTimeout(
                f"Gave up waiting for rollout {rollout['id']} after {args.timeout:g} s (still {rollout['state']}).",
                code="wait_timeout",
            )
            return _rollout_result(rollout, error)
        time.sleep(POLL_SECONDS)
        rollout = ctx.client.get_rollout(args.endpoint, rollout["id"])
        if (rollout["state"], rollout["step"]) != seen:
            seen = (rollout["state"], rollout["step"])
            ctx.output.line(_progress_text(rollout))
    return _rollout_result(rollout, _ending_error(rollout))


def _ending_error(rollout: Rollout) -> ModelDeckError | None:
    detail = {"rollout": rollout["id"], "state": rollout["state"], "outcome": rollout["outcome"]}
    if rollout["state"] == "rolled_back":
        return RolloutRolledBack(
            f"Rollout {rollout['id']} rolled back: {rollout['outcome']}", code="rollout_rolled_back", detail=detail
        )
    if rollout["state"] == "aborted":
        return RolloutAborted(
            f"Rollout {rollout['id']} aborted: {rollout['outcome']}", code="rollout_aborted", detail=detail
        )
    return None


def rollout_status_run(ctx: Context) -> Result:
    rollouts = ctx.client.rollouts(ctx.args.endpoint)
    if not rollouts:
        raise NotFound(f"'{ctx.args.endpoint}' has had no rollout.", code="not_found")
    return _rollout_result(ctx.client.get_rollout(ctx.args.endpoint, rollouts[0]["id"]))


def _progress_text(rollout: Rollout) -> str:
    where = f"step {rollout['step']}/{len(rollout['steps'])} at {rollout['percent']}%"
    if rollout["state"] in ROLLOUT_DONE_STATES:
        return f"rollout {rollout['id']} {rollout['state']}: {rollout['outcome']}"
    return f"rollout {rollout['id']} {rollout['state']}: v{rollout['version']} {where}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _rollout_result(rollout: Rollout, error: ModelDeckError | None = None) -> Result:
    def render(console: Console) -> None:
        console.print(f"[bold]{rollout['endpoint']}[/]: {_progress_text(rollout)}")
        if rollout["seconds_left"] is not None:
            console.print(f"  {rollout['seconds_left']:g} s left in the step")
        for row in rollout["evaluations"]:
            console.print(
                f"  {row['title']}: {_number(row['value'])} (threshold {_number(row['threshold'])}) {row['status']}"
                f" — {row['requests']} requests over {row['window_seconds']:g} s"
            )

    return Result({"rollout": rollout}, render, error)

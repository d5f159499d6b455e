"""Argument types and flags the commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from modeldeck.client import DEFAULT_WAIT_TIMEOUT, model_reference_split
from modeldeck.commands.context import Handler
from modeldeck.errors import Invalid, UsageError

TARGETS = ("onnx", "tflite")
QUANTIZATIONS = ("none", "int8", "float16")

# How a command module adds a subcommand: `add(name, handler, help)` gives the subcommand's parser for its arguments.
CommandAdd = Callable[[str, Handler, str], argparse.ArgumentParser]


def json_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's default must not overwrite `modeldeck --json <command>`.
    parser.add_argument(
        "--json",
        dest="json_output",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document on stdout, nothing else",
    )


def wait_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait for {what}")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help="give up waiting after this long (exit 8); default %(default)g",
    )


def model_reference(value: str) -> str:
    try:
        model_reference_split(value)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return value.strip()


def recipes(value: str) -> list[tuple[str, str]]:
    """`onnx,tflite` or `onnx:int8,onnx:float16` -> [(target, quantization), ...]."""
    found = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        target, _, quantization = item.partition(":")
        quantization = quantization or "none"
        if target not in TARGETS or quantization not in QUANTIZATIONS:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a conversion: use TARGET[:QUANTIZATION] with TARGET in {', '.join(TARGETS)} and "
                f"QUANTIZATION in {', '.join(QUANTIZATIONS)} (e.g. onnx,tflite or onnx:int8)."
            )
        if (target, quantization) not in found:
            found.append((target, quantization))
    if not found:
        raise argparse.ArgumentTypeError("name at least one conversion, e.g. onnx")
    return found


def percent(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole percentage") from None
    if not 0 <= number <= 100:
        raise argparse.ArgumentTypeError("a canary percentage is 0-100")
    return number


def existing_file(path: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise UsageError(f"No such file: {path}", code="no_such_file", detail={"path": path})
    return resolved

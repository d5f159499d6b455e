"""`modeldeck`: push, convert, benchmark, deploy, promote and roll back models from a shell or a CI pipeline.

Every command prints rich tables for people, or one JSON document on stdout with `--json`; progress goes to
stderr (bars on a terminal, plain lines elsewhere); the exit code says what went wrong (see `modeldeck --help`).
The commands live in `modeldeck.commands`, one module per area; everything they show goes through one sink
(`modeldeck.output.Output`), and the exit code of each kind of error is in one table (`modeldeck.errors`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from modeldeck import __version__
from modeldeck.commands import REGISTERS
from modeldeck.commands.context import Context, Handler
from modeldeck.errors import EXIT_CODES_HELP, EXIT_USAGE, ModelDeckError
from modeldeck.output import Output

DESCRIPTION = """\
Push models to ModelDeck, convert and benchmark them, deploy and promote them: from a shell or a CI pipeline.

Log in once with `modeldeck login URL --token TOKEN` (saved to ~/.config/modeldeck/config.json, mode 0600,
or to $MODELDECK_CONFIG); MODELDECK_URL and MODELDECK_TOKEN override the saved login."""

EPILOG = f"""\
output:
  Every command prints tables for people, or exactly one JSON document on stdout with --json (for `predict`,
  whose --json names the request file, put it first: `modeldeck --json predict ...`). When a command fails,
  the document is {{"error": {{"code", "message", "detail", "status", "exit_code"}}}}, or, when it got far
  enough to have a result (push --wait, convert --wait), the result with an "error" key added. Progress and
  messages go to stderr: bars on a terminal, plain lines in a log.

{EXIT_CODES_HELP}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modeldeck",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"modeldeck {__version__}")
    parser.add_argument("--json", dest="json_output", action="store_true", help="machine output for any command")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    for register in REGISTERS:
        register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version exit 0, usage errors exit 2
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    output = Output(json_output=bool(getattr(args, "json_output", False)))
    ctx = Context(args, output)
    try:
        result = args.handler(ctx)
    except ModelDeckError as error:
        return output.error(error)
    except KeyboardInterrupt:
        return output.interrupted()
    except Exception as error:  # a CLI ends with a message and exit 1, not a traceback
        if os.environ.get("MODELDECK_DEBUG"):
            raise
        return output.unexpected(error)
    finally:
        ctx.close()
    return output.result(result)


if __name__ == "__main__":
    raise SystemExit(main())

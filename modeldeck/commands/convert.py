"""`modeldeck convert TEAM/NAME VERSION --target T`: convert a version into a new one with a parity report."""

from __future__ import annotations

from modeldeck.commands.arguments import QUANTIZATIONS, TARGETS, CommandAdd, json_flag, model_reference, wait_flags
from modeldeck.commands.context import Context
from modeldeck.commands.conversions import Conversion, conversion_wait
from modeldeck.commands.tables import conversions_table
from modeldeck.output import Result
from modeldeck.progress import job_label


def register(add: CommandAdd) -> None:
    convert = add("convert", convert_run, "convert a version (a new version with a parity report)")
    convert.add_argument("model", metavar="TEAM/NAME", type=model_reference)
    convert.add_argument("version", metavar="VERSION", type=int)
    convert.add_argument("--target", required=True, choices=TARGETS)
    convert.add_argument("--quantization", default="none", choices=QUANTIZATIONS)
    wait_flags(convert, "the job and the parity report (exit 6 if parity fails)")
    json_flag(convert)


def convert_run(ctx: Context) -> Result:
    args = ctx.args
    conversion = Conversion(args.target, args.quantization)
    conversion.job = ctx.client.convert(args.model, args.version, target=args.target, quantization=args.quantization)
    ctx.output.line(f"queued {job_label(conversion.job)}")
    error = conversion_wait(ctx, args.model, conversion) if args.wait else None
    document = {"job": conversion.job, "version": conversion.version, "parity_passed": conversion.parity_passed}
    return Result(document, lambda console: console.print(conversions_table([conversion])), error)

"""`modeldeck push FILE --model TEAM/NAME`: upload a version, optionally convert it and wait for the parity reports."""

from __future__ import annotations

from rich.console import Console

from modeldeck.commands.arguments import CommandAdd, existing_file, json_flag, model_reference, recipes, wait_flags
from modeldeck.commands.context import Context
from modeldeck.commands.conversions import Conversion, conversion_wait, first_error
from modeldeck.commands.tables import conversions_table, version_summary
from modeldeck.errors import Invalid, ModelDeckError, NotFound
from modeldeck.output import Result
from modeldeck.progress import job_label


def register(add: CommandAdd) -> None:
    push = add("push", push_run, "upload a model file as the next version (registering the model if new)")
    push.add_argument("file", metavar="FILE", help=".onnx, .tflite, .keras/.h5, SavedModel .zip or .skops")
    push.add_argument("--model", required=True, type=model_reference, metavar="TEAM/NAME")
    push.add_argument("--sample", metavar="FILE", help="sample inputs (.npz or JSON) for parity and drift")
    push.add_argument(
        "--convert",
        type=recipes,
        metavar="TARGETS",
        help="convert after upload: onnx, tflite, or TARGET:QUANTIZATION (onnx:int8, onnx:float16), comma-separated; "
        "waits for the upload to be ready first",
    )
    push.add_argument("--description", default="", help="description of the version (and of the model if new)")
    push.add_argument("--tag", action="append", metavar="TAG", help="a tag for the version (repeatable)")
    wait_flags(push, "the version to be ready and the conversions and their parity (exit 6 if parity fails)")
    json_flag(push)


def push_run(ctx: Context) -> Result:
    args = ctx.args
    client = ctx.client
    progress = ctx.output.progress
    file = existing_file(args.file)
    sample = existing_file(args.sample) if args.sample else None
    # A missing model is registered with its first version, in one request: a refused file registers nothing.
    try:
        client.get_model(args.model)
        created = False
    except NotFound:
        created = True
        ctx.output.line(f"model {args.model} is new: it is registered with this upload")
    unchanged = False
    try:
        with progress.upload(f"uploading {file.name}") as on_sent:
            version = client.upload_version(
                args.model,
                file,
                sample=sample,
                description=args.description,
                tags=args.tag or (),
                progress=on_sent,
                create_model=created,
            )
    except Invalid as exc:
        if exc.code != "duplicate_version":
            raise
        # The same bytes are a version already: a pipeline that pushes on every run goes on with that one.
        unchanged = True
        version = client.get_version(args.model, int(exc.detail["version"]))
        ctx.output.line(f"{file.name} is identical to v{version['number']} of {args.model}: nothing uploaded")
    else:
        ctx.output.line(f"uploaded {file.name} as v{version['number']} of {args.model} ({version['status']})")
    conversions = [Conversion(target, quantization) for target, quantization in args.convert or []]
    # Conversions start from a ready version, so asking for any means waiting for the upload's processing.
    if version["status"] == "processing" and (args.wait or conversions):
        with progress.version(f"v{version['number']} of {args.model}") as on_poll:
            version = client.wait_version(args.model, version["number"], timeout=args.timeout, on_poll=on_poll)
    for conversion in conversions:
        if version["format"] == conversion.target and conversion.quantization == "none":
            conversion.version, conversion.note = version, f"v{version['number']} is already {conversion.target}"
            continue
        conversion.job = client.convert(
            args.model, version["number"], target=conversion.target, quantization=conversion.quantization
        )
        ctx.output.line(f"queued {job_label(conversion.job)}")
    errors: list[ModelDeckError | None] = []
    if args.wait:
        errors = [conversion_wait(ctx, args.model, c) for c in conversions if c.job is not None]
    document = {
        "model": args.model,
        "model_created": created,
        "unchanged": unchanged,
        "version": version,
        "conversions": [conversion.to_dict() for conversion in conversions],
    }

    def render(console: Console) -> None:
        console.print(version_summary(version))
        if conversions:
            console.print(conversions_table(conversions))

    return Result(document, render, first_error(errors))

"""`modeldeck predict ENDPOINT --json FILE`: one inference request (Open Inference Protocol) and its answer."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from modeldeck.commands.arguments import CommandAdd, existing_file
from modeldeck.commands.context import Context
from modeldeck.commands.tables import clip
from modeldeck.errors import Invalid
from modeldeck.inference import infer_body_build
from modeldeck.output import Result


def register(add: CommandAdd) -> None:
    # No --json flag of its own: here --json names the request file (`modeldeck --json predict ...` for JSON out).
    predict = add("predict", predict_run, "run an inference request on an endpoint (Open Inference Protocol)")
    predict.add_argument("endpoint", metavar="ENDPOINT")
    predict.add_argument(
        "--json",
        "--input",
        dest="request",
        required=True,
        metavar="FILE",
        help='request body: an OIP {"inputs": [...]} or named arrays {"x": [[...]]}; - reads stdin',
    )
    predict.add_argument("--version", type=int, metavar="N", help="ask this version instead of the release's choice")


def predict_run(ctx: Context) -> Result:
    args = ctx.args
    text = sys.stdin.read() if args.request == "-" else existing_file(args.request).read_text()
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise Invalid(f"The request file is not JSON: {exc}", code="invalid_json") from None
    if not (isinstance(document, dict) and isinstance(document.get("inputs"), list)):
        metadata = ctx.client.model_metadata(args.endpoint, version=args.version)
        document = infer_body_build(document, metadata)
    answer = ctx.client.predict(args.endpoint, document, version=args.version)

    def render(console: Console) -> None:
        table = Table(title=f"{answer.get('model_name')} v{answer.get('model_version')}")
        for column in ("output", "datatype", "shape", "data"):
            table.add_column(column)
        for output in answer.get("outputs", []):
            data = json.dumps(output.get("data"))
            table.add_row(output["name"], output["datatype"], str(output["shape"]), clip(data, 400))
        console.print(table)

    return Result(answer, render)

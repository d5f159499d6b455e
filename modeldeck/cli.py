"""`modeldeck`: push, convert, benchmark, deploy, promote and roll back models from a shell or a CI pipeline.

Every command prints rich tables for people, or one JSON document on stdout with `--json`; progress goes to
stderr (bars on a terminal, plain lines elsewhere); the exit code says what went wrong (see `modeldeck --help`).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modeldeck import __version__
from modeldeck.client import DEFAULT_WAIT_TIMEOUT, Client, job_failure, model_reference_split
from modeldeck.config import ENV_TOKEN, ENV_URL, config_write, url_normalize
from modeldeck.errors import (
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_USAGE,
    ConnectionFailed,
    Invalid,
    JobFailed,
    ModelDeckError,
    NotAuthenticated,
    NotFound,
    ParityFailed,
)
from modeldeck.inference import infer_body_build
from modeldeck.progress import Reporter, job_label
from modeldeck.resources import Endpoint, Job, Release, Version

TARGETS = ("onnx", "tflite")
QUANTIZATIONS = ("none", "int8", "float16")
LOGIN_HINT = f"Run `modeldeck login URL --token TOKEN`, or set {ENV_URL} and {ENV_TOKEN}."

Render = Callable[[Console], None]


class UsageError(ModelDeckError):
    """Raise for a command line that names something that is not there (a local file)."""

    exit_code = EXIT_USAGE


@dataclass
class Result:
    """What a command produced: the `--json` document, how to show it to people, and an error to end with."""

    document: dict[str, Any]
    render: Render
    error: ModelDeckError | None = None


@dataclass
class Context:
    args: argparse.Namespace
    reporter: Reporter
    _client: Client | None = field(default=None, init=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client.from_environment()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# -- argument types ----------------------------------------------------------------------------------------------


def _model_reference(value: str) -> str:
    try:
        model_reference_split(value)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return value.strip()


def _recipes(value: str) -> list[tuple[str, str]]:
    """`onnx,tflite` or `onnx:int8,onnx:float16` -> [(target, quantization), ...]."""
    recipes = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        target, _, quantization = item.partition(":")
        quantization = quantization or "none"
        if target not in TARGETS or quantization not in QUANTIZATIONS:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a conversion: use TARGET[:QUANTIZATION] with TARGET in {', '.join(TARGETS)} and "
                f"QUANTIZATION in {', '.join(QUANTIZATIONS)} (e.g. onnx,tflite or onnx:int8)."
            )
        if (target, quantization) not in recipes:
            recipes.append((target, quantization))
    if not recipes:
        raise argparse.ArgumentTypeError("name at least one conversion, e.g. onnx")
    return recipes


def _percent(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole percentage") from None
    if not 0 <= number <= 100:
        raise argparse.ArgumentTypeError("a canary percentage is 0-100")
    return number


def _existing_file(path: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise UsageError(f"No such file: {path}", code="no_such_file", detail={"path": path})
    return resolved


# -- commands ----------------------------------------------------------------------------------------------------


def cmd_login(ctx: Context) -> Result:
    args = ctx.args
    url = url_normalize(args.url)
    token = (args.token or os.environ.get(ENV_TOKEN, "")).strip()
    if not token and sys.stdin.isatty():
        token = getpass.getpass("API token: ").strip()
    if not token:
        raise UsageError(f"Give the API token with --token TOKEN (or {ENV_TOKEN}).", code="token_missing")
    with Client(url, token) as client:
        try:
            me = client.me()
        except NotAuthenticated as exc:
            exc.message = f"ModelDeck at {url} refused the token: {exc.message}"
            raise
    path = config_write(url=url, token=token)
    document = {"url": url, "username": me["username"], "teams": me["teams"], "config": str(path)}

    def render(console: Console) -> None:
        teams = ", ".join(f"{team['slug']} ({team['role']})" for team in me["teams"]) or "no teams"
        console.print(f"Logged in to {url} as [bold]{me['username']}[/] — {teams}.")
        console.print(f"Saved to {path} (readable by you only).")

    return Result(document, render)


def cmd_versions(ctx: Context) -> Result:
    versions = ctx.client.list_versions(ctx.args.model)
    return Result(
        {"model": ctx.args.model, "versions": versions},
        lambda console: console.print(_versions_table(ctx.args.model, versions)),
    )


@dataclass
class Conversion:
    target: str
    quantization: str
    job: Job | None = None
    version: Version | None = None
    note: str = ""

    @property
    def parity_passed(self) -> bool | None:
        if self.version is None or not self.version.get("parity"):
            return None
        return bool(self.version["parity"].get("passed")) or self.version.get("parity_override") is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "quantization": self.quantization,
            "job": self.job,
            "version": self.version,
            "parity_passed": self.parity_passed,
            "note": self.note,
        }


def _conversion_wait(ctx: Context, model: str, conversion: Conversion) -> ModelDeckError | None:
    """Wait for a conversion's job, fetch the version it made, and return the error it ends with (if any)."""
    assert conversion.job is not None
    timeout = ctx.args.timeout
    with ctx.reporter.job(job_label(conversion.job)) as on_progress:
        job = ctx.client.wait_job(
            conversion.job["id"], timeout=timeout, on_progress=on_progress, raise_on_failure=False
        )
    conversion.job = job
    if job["status"] != "succeeded":
        return job_failure(job)
    if job["result_version"] is not None:
        conversion.version = ctx.client.get_version(model, job["result_version"])
    if conversion.parity_passed is False:
        assert conversion.version is not None
        parity = conversion.version["parity"]
        return ParityFailed(
            f"Parity failed for v{conversion.version['number']} of {model} ({conversion.target}:"
            f"{conversion.quantization}, from v{job['version']}): {parity.get('reason', 'no reason recorded')}",
            code="parity_failed",
            detail={"version": conversion.version["number"], "parity": parity},
        )
    return None


def _first_error(errors: Sequence[ModelDeckError | None]) -> ModelDeckError | None:
    """A failed job (7) outranks a failed parity report (6): the former says less was even checked."""
    found = [error for error in errors if error is not None]
    for error in found:
        if isinstance(error, JobFailed):
            return error
    return found[0] if found else None


def cmd_push(ctx: Context) -> Result:
    args = ctx.args
    client = ctx.client
    file = _existing_file(args.file)
    sample = _existing_file(args.sample) if args.sample else None
    # A missing model is registered with its first version, in one request: a refused file registers nothing.
    try:
        client.get_model(args.model)
        created = False
    except NotFound:
        created = True
        ctx.reporter.line(f"model {args.model} is new: it is registered with this upload")
    with ctx.reporter.upload(f"uploading {file.name}") as progress:
        version = client.upload_version(
            args.model,
            file,
            sample=sample,
            description=args.description,
            tags=args.tag or (),
            progress=progress,
            create_model=created,
        )
    ctx.reporter.line(f"uploaded {file.name} as v{version['number']} of {args.model} ({version['status']})")
    conversions = [Conversion(target, quantization) for target, quantization in args.convert or []]
    # Conversions start from a ready version, so asking for any means waiting for the upload's processing.
    if version["status"] == "processing" and (args.wait or conversions):
        with ctx.reporter.version(f"v{version['number']} of {args.model}") as on_poll:
            version = client.wait_version(args.model, version["number"], timeout=args.timeout, on_poll=on_poll)
    for conversion in conversions:
        if version["format"] == conversion.target and conversion.quantization == "none":
            conversion.version, conversion.note = version, f"v{version['number']} is already {conversion.target}"
            continue
        conversion.job = client.convert(
            args.model, version["number"], target=conversion.target, quantization=conversion.quantization
        )
        ctx.reporter.line(f"queued {job_label(conversion.job)}")
    errors: list[ModelDeckError | None] = []
    if args.wait:
        errors = [_conversion_wait(ctx, args.model, c) for c in conversions if c.job is not None]
    document = {
        "model": args.model,
        "model_created": created,
        "version": version,
        "conversions": [conversion.to_dict() for conversion in conversions],
    }

    def render(console: Console) -> None:
        console.print(_version_summary(version))
        if conversions:
            console.print(_conversions_table(conversions))

    return Result(document, render, _first_error(errors))


def cmd_convert(ctx: Context) -> Result:
    args = ctx.args
    conversion = Conversion(args.target, args.quantization)
    conversion.job = ctx.client.convert(args.model, args.version, target=args.target, quantization=args.quantization)
    ctx.reporter.line(f"queued {job_label(conversion.job)}")
    error = _conversion_wait(ctx, args.model, conversion) if args.wait else None
    document = {"job": conversion.job, "version": conversion.version, "parity_passed": conversion.parity_passed}
    return Result(document, lambda console: console.print(_conversions_table([conversion])), error)


def cmd_benchmark(ctx: Context) -> Result:
    args = ctx.args
    job = ctx.client.benchmark(args.model, args.version)
    ctx.reporter.line(f"queued {job_label(job)}")
    version: Version | None = None
    if args.wait:
        with ctx.reporter.job(job_label(job)) as on_progress:
            job = ctx.client.wait_job(job["id"], timeout=args.timeout, on_progress=on_progress)
        version = ctx.client.get_version(args.model, args.version)

    def render(console: Console) -> None:
        if version is None or not version.get("benchmark"):
            console.print(f"{job_label(job)}: {job['status']}. Wait for it with --wait, or see it with `versions`.")
            return
        benchmark, memory = version["benchmark"], version["benchmark"].get("memory") or {}
        console.print(
            f"v{version['number']} of {version['model']} ({version['format']}): loads in {benchmark.get('load_ms')} ms,"
            f" peak memory {memory.get('peak_rss_mib', '?')} MiB"
        )
        console.print(_benchmark_table(version))

    return Result({"job": job, "version": version}, render)


def cmd_deploy(ctx: Context) -> Result:
    """Create the endpoint serving the version; on an endpoint that exists for the model, promote the version."""
    args = ctx.args
    client = ctx.client
    created = promoted = False
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
            client.promote(args.endpoint, args.version, reason=args.reason)
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
    document = {"created": created, "promoted": promoted, "endpoint": endpoint}

    def render(console: Console) -> None:
        what = "created" if created else ("promoted" if promoted else "already serving the version")
        console.print(f"Endpoint [bold]{endpoint['name']}[/] {what}.")
        console.print(_endpoint_table(endpoint))

    return Result(document, render)


def _release_result(endpoint: str, release: Release) -> Result:
    def render(console: Console) -> None:
        console.print(f"[bold]{endpoint}[/]: release {release['number']} ({release['action']}) — {_serving(release)}")

    return Result({"endpoint": endpoint, "release": release}, render)


def cmd_promote(ctx: Context) -> Result:
    args = ctx.args
    release = ctx.client.promote(
        args.endpoint,
        args.version,
        canary_percent=args.canary,
        shadow_version=args.shadow,
        allow_signature_change=args.allow_signature_change,
        reason=args.reason,
    )
    return _release_result(args.endpoint, release)


def cmd_rollback(ctx: Context) -> Result:
    release = ctx.client.rollback(ctx.args.endpoint, reason=ctx.args.reason)
    return _release_result(ctx.args.endpoint, release)


def cmd_status(ctx: Context) -> Result:
    endpoint = ctx.client.get_endpoint(ctx.args.endpoint)
    releases = ctx.client.releases(ctx.args.endpoint)

    def render(console: Console) -> None:
        console.print(_endpoint_table(endpoint))
        console.print(_releases_table(releases))

    return Result({"endpoint": endpoint, "releases": releases}, render)


def cmd_predict(ctx: Context) -> Result:
    args = ctx.args
    text = sys.stdin.read() if args.request == "-" else _existing_file(args.request).read_text()
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
            table.add_row(output["name"], output["datatype"], str(output["shape"]), _clip(data, 400))
        console.print(table)

    return Result(answer, render)


# -- human output ------------------------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parity_cell(version: Version) -> str:
    parity = version.get("parity") or {}
    if not parity:
        return "—"
    if parity.get("passed"):
        return "[green]passed[/]"
    return "[yellow]accepted[/]" if version.get("parity_override") else "[red]FAILED[/]"


def _lineage(version: Version) -> str:
    recipe = version.get("recipe") or {}
    if version.get("parent") is None:
        return "uploaded"
    return f"v{version['parent']} → {recipe.get('target')}:{recipe.get('quantization')}"


def _p50(version: Version) -> str:
    batches = (version.get("benchmark") or {}).get("batches") or []
    return f"{batches[0]['p50_ms']}" if batches else "—"


def _size(count: int) -> str:
    return f"{count / 2**20:.2f} MiB" if count >= 2**20 else f"{count / 1024:.1f} KiB"


def _versions_table(model: str, versions: list[Version]) -> Table:
    table = Table(title=model)
    for column in ("version", "format", "status", "lineage", "parity", "size", "p50 ms (batch 1)", "by", "created"):
        table.add_column(column)
    for version in versions:
        table.add_row(
            f"v{version['number']}",
            version["format"],
            version["status"],
            _lineage(version),
            _parity_cell(version),
            _size(version["size"]),
            _p50(version),
            version.get("created_by") or "ModelDeck",
            version["created_at"][:19].replace("T", " "),
        )
    return table


def _version_summary(version: Version) -> str:
    line = f"v{version['number']} of [bold]{version['model']}[/]: {version['format']}, {version['status']}"
    if version.get("status_message"):
        line += f" ({version['status_message']})"
    return line + f", {_size(version['size'])}, sha256 {version['sha256'][:12]}…"


def _conversions_table(conversions: list[Conversion]) -> Table:
    table = Table(title="conversions")
    for column in ("recipe", "job", "status", "version", "parity", "reason"):
        table.add_column(column)
    for conversion in conversions:
        job, version = conversion.job, conversion.version
        reason = conversion.note
        if not reason and version is not None:
            reason = (version.get("parity") or {}).get("reason", "")
        if job is not None and job["status"] in ("failed", "cancelled"):
            reason = job["error"] or job["status"]
        table.add_row(
            f"{conversion.target}:{conversion.quantization}",
            str(job["id"]) if job else "—",
            job["status"] if job else "—",
            f"v{version['number']}" if version else "—",
            _parity_cell(version) if version else "—",
            _clip(reason or "", 120),
        )
    return table


def _benchmark_table(version: Version) -> Table:
    benchmark = version["benchmark"]
    table = Table()
    for column in ("batch", "p50 ms", "p95 ms", "p99 ms", "rows/s"):
        table.add_column(column, justify="right")
    for batch in benchmark.get("batches", []):
        table.add_row(
            str(batch["batch_size"]),
            str(batch["p50_ms"]),
            str(batch["p95_ms"]),
            str(batch["p99_ms"]),
            str(batch.get("throughput_rows_per_s", "")),
        )
    return table


def _serving(release: Release) -> str:
    parts = [f"v{release['primary']} primary"]
    if release.get("canary") is not None:
        parts.append(f"v{release['canary']} canary {release['canary_percent']}%")
    if release.get("shadow") is not None:
        parts.append(f"v{release['shadow']} shadow")
    return ", ".join(parts)


def _endpoint_table(endpoint: Endpoint) -> Table:
    table = Table(title=f"endpoint {endpoint['name']}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    release = endpoint["release"]
    flags = [name for name in ("protected", "public") if dict(endpoint).get(name)]
    table.add_row("model", endpoint["model"])
    table.add_row("serving", _serving(release))
    table.add_row(
        "release",
        f"{release['number']} ({release['action']}) by {release.get('by') or release.get('actor') or 'ModelDeck'}",
    )
    table.add_row("flags", ", ".join(flags) or "—")
    return table


def _releases_table(releases: list[Release]) -> Table:
    table = Table(title="releases (newest first)")
    for column in ("release", "action", "serving", "by", "reason", "at"):
        table.add_column(column)
    for release in releases:
        table.add_row(
            str(release["number"]),
            release["action"],
            _serving(release),
            release.get("by") or release.get("actor") or "ModelDeck",
            _clip(release.get("reason") or "", 80),
            release["created_at"][:19].replace("T", " "),
        )
    return table


# -- the parser and main ------------------------------------------------------------------------------------------

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


def _json_flag(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a subcommand's default must not overwrite `modeldeck --json <command>`.
    parser.add_argument(
        "--json",
        dest="json_output",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document on stdout, nothing else",
    )


def _wait_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--wait", action="store_true", help=f"wait for {what}")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="SECONDS",
        help="give up waiting after this long (exit 8); default %(default)g",
    )


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

    def command(name: str, handler: Callable[[Context], Result], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    login = command("login", cmd_login, "check a URL and API token against the server and save them (mode 0600)")
    login.add_argument("url", metavar="URL", help="e.g. http://127.0.0.1:8000")
    login.add_argument("--token", help=f"the API token (else {ENV_TOKEN}, else asked on a terminal)")
    _json_flag(login)

    push = command("push", cmd_push, "upload a model file as the next version (registering the model if new)")
    push.add_argument("file", metavar="FILE", help=".onnx, .tflite, .keras/.h5, SavedModel .zip or .skops")
    push.add_argument("--model", required=True, type=_model_reference, metavar="TEAM/NAME")
    push.add_argument("--sample", metavar="FILE", help="sample inputs (.npz or JSON) for parity and drift")
    push.add_argument(
        "--convert",
        type=_recipes,
        metavar="TARGETS",
        help="convert after upload: onnx, tflite, or TARGET:QUANTIZATION (onnx:int8, onnx:float16), comma-separated; "
        "waits for the upload to be ready first",
    )
    push.add_argument("--description", default="", help="description of the version (and of the model if new)")
    push.add_argument("--tag", action="append", metavar="TAG", help="a tag for the version (repeatable)")
    _wait_flags(push, "the version to be ready and the conversions and their parity (exit 6 if parity fails)")
    _json_flag(push)

    versions = command("versions", cmd_versions, "list a model's versions with format, lineage, parity, latency")
    versions.add_argument("model", metavar="TEAM/NAME", type=_model_reference)
    _json_flag(versions)

    convert = command("convert", cmd_convert, "convert a version (a new version with a parity report)")
    convert.add_argument("model", metavar="TEAM/NAME", type=_model_reference)
    convert.add_argument("version", metavar="VERSION", type=int)
    convert.add_argument("--target", required=True, choices=TARGETS)
    convert.add_argument("--quantization", default="none", choices=QUANTIZATIONS)
    _wait_flags(convert, "the job and the parity report (exit 6 if parity fails)")
    _json_flag(convert)

    benchmark = command("benchmark", cmd_benchmark, "benchmark a version: latency and throughput at batch 1/8/32")
    benchmark.add_argument("model", metavar="TEAM/NAME", type=_model_reference)
    benchmark.add_argument("version", metavar="VERSION", type=int)
    _wait_flags(benchmark, "the benchmark's numbers")
    _json_flag(benchmark)

    deploy = command(
        "deploy",
        cmd_deploy,
        "create an endpoint serving a version; on an existing endpoint of the same model, promote the version",
    )
    deploy.add_argument("endpoint", metavar="ENDPOINT")
    deploy.add_argument("--model", required=True, type=_model_reference, metavar="TEAM/NAME")
    deploy.add_argument("--version", required=True, type=int, metavar="N")
    deploy.add_argument(
        "--protected", action=argparse.BooleanOptionalAction, help="only admins may change it (production)"
    )
    deploy.add_argument("--public", action=argparse.BooleanOptionalAction, help="inference needs no token")
    deploy.add_argument("--reason", default="", help="recorded on the release")
    _json_flag(deploy)

    promote = command("promote", cmd_promote, "promote a version on an endpoint, or start a canary (a new release)")
    promote.add_argument("endpoint", metavar="ENDPOINT")
    promote.add_argument("version", metavar="VERSION", type=int)
    promote.add_argument("--canary", type=_percent, metavar="PCT", help="send PCT %% of traffic to VERSION only")
    promote.add_argument("--shadow", type=int, metavar="N", help="also mirror traffic to version N, unanswered")
    promote.add_argument(
        "--allow-signature-change",
        action="store_true",
        help="release it even though its inputs or outputs differ from the primary's (audited; without it: exit 5)",
    )
    promote.add_argument("--reason", default="", help="recorded on the release")
    _json_flag(promote)

    rollback = command("rollback", cmd_rollback, "roll an endpoint back to its previous release (a new release)")
    rollback.add_argument("endpoint", metavar="ENDPOINT")
    rollback.add_argument("--reason", default="", help="recorded on the release")
    _json_flag(rollback)

    status = command("status", cmd_status, "show an endpoint's live release and its release history")
    status.add_argument("endpoint", metavar="ENDPOINT")
    _json_flag(status)

    predict = command("predict", cmd_predict, "run an inference request on an endpoint (Open Inference Protocol)")
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
    return parser


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def _side(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('datatype')} {value.get('shape')}"
    return "—" if value is None else str(value)


def _explain_signature(error: ModelDeckError, reporter: Reporter) -> None:
    differences = [d for d in error.detail.get("differences", []) if isinstance(d, dict)]
    primary = error.detail.get("primary")
    count = f"{len(differences)} difference{'' if len(differences) == 1 else 's'}"
    reporter.line(f"error: the signature differs from the primary v{primary}'s ({count}):")
    for d in differences:
        who = f"v{d.get('candidate')}" + (" (shadow)" if d.get("role") == "shadow" else "")
        reporter.line(
            f"  {who} {d.get('tensor')} {d.get('name')!r}: {d.get('problem')}"
            f" (primary: {_side(d.get('primary'))}; v{d.get('candidate')}: {_side(d.get('version'))})"
        )
    reporter.line(
        "hint: `modeldeck promote ... --allow-signature-change` releases it anyway (admins only on protected endpoints)"
    )


def _explain(error: ModelDeckError, reporter: Reporter) -> None:
    if error.code == "signature_mismatch" and isinstance(error.detail.get("differences"), list):
        _explain_signature(error, reporter)
        return
    reporter.line(f"error: {error.message}")
    for name, problems in error.detail.items():
        if isinstance(problems, list) and problems and all(isinstance(p, str) for p in problems):
            reporter.line(f"  {name}: {' '.join(problems)}")
    if isinstance(error, NotAuthenticated) or (isinstance(error, ConnectionFailed) and error.code != "wait_timeout"):
        reporter.line(f"hint: {LOGIN_HINT}")


def _stdout_console() -> Console:
    # Off a terminal (a pipe, a CI log) rich would wrap tables at 80 columns: give them room instead.
    return Console() if sys.stdout.isatty() else Console(width=200)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version exit 0, usage errors exit 2
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    json_output = bool(getattr(args, "json_output", False))
    ctx = Context(args, Reporter())
    try:
        result = args.handler(ctx)
    except ModelDeckError as error:
        if json_output:
            _print_json({"error": error.to_dict()})
        _explain(error, ctx.reporter)
        return error.exit_code
    except KeyboardInterrupt:
        ctx.reporter.line("interrupted")
        return 130
    except Exception as error:  # a CLI ends with a message and exit 1, not a traceback
        if os.environ.get("MODELDECK_DEBUG"):
            raise
        message = f"unexpected error: {type(error).__name__}: {error}"
        if json_output:
            _print_json({"error": {"code": "unexpected", "message": message, "detail": {}, "exit_code": EXIT_ERROR}})
        ctx.reporter.line(f"error: {message} (set MODELDECK_DEBUG=1 for the traceback)")
        return EXIT_ERROR
    finally:
        ctx.close()
    if json_output:
        document = dict(result.document)
        if result.error is not None:
            document["error"] = result.error.to_dict()
        _print_json(document)
    else:
        result.render(_stdout_console())
    if result.error is not None:
        _explain(result.error, ctx.reporter)
        return result.error.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

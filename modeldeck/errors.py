"""Errors the SDK raises, each with the exit code the CLI turns it into.

The API answers every error as `{"error": {"code", "message", "detail"}}` (the data plane as `{"error": "..."}`);
`error_from_response` maps the status code to one class, so a pipeline can tell "the model does not exist" from
"the token is wrong" from "the server is down" without reading messages.
"""

from __future__ import annotations

from typing import Any

import httpx

# Exit codes of the `modeldeck` CLI, for pipelines to act on.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_PERMISSION = 4
EXIT_INVALID = 5
EXIT_PARITY_FAILED = 6
EXIT_JOB_FAILED = 7
EXIT_CONNECTION = 8
EXIT_ROLLED_BACK = 9
EXIT_ABORTED = 10
EXIT_PENDING_APPROVAL = 11
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT (not listed in the help: no pipeline acts on it)

# The error table: what each exit code means, as `modeldeck --help` lists it. Each error class below names its
# code; the hints and the message of an unexpected error follow the classes.
EXIT_CODE_MEANINGS: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_ERROR: "unexpected error (a server error, a bug)",
    EXIT_USAGE: "usage error (a missing or malformed argument, a local file that does not exist)",
    EXIT_NOT_FOUND: "not found (no such model, version, endpoint or job, or not visible to this token)",
    EXIT_PERMISSION: "permission denied or not authenticated (no login, a wrong, expired or revoked token, a role too "
    "weak,\n     or too many wrong tokens from this address: wait as the message says)",
    EXIT_INVALID: "invalid input (the server refused the request: 400, 409, 413, 415 or 422)",
    EXIT_PARITY_FAILED: "parity failed (a waited-for conversion produced a version whose parity report failed)",
    EXIT_JOB_FAILED: "job failed or cancelled (a conversion or benchmark job, or the processing of an upload)",
    EXIT_CONNECTION: "connection error or timeout (the server could not be reached, or a wait ran past --timeout)",
    EXIT_ROLLED_BACK: "rolled back (a waited-for rollout failed a gate and removed its canary by itself)",
    EXIT_ABORTED: "aborted (a waited-for rollout was aborted, or a manual release took the endpoint over)",
    EXIT_PENDING_APPROVAL: "pending approval (`rollout --wait` on an endpoint that requires approval: a change request "
    "was\n     made, and nothing is rolled out until another admin approves it)",
}

EXIT_CODES_HELP = "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items())


class ModelDeckError(Exception):
    """Raise an error from ModelDeck (or from reaching it), with the API's code, message and detail."""

    exit_code = EXIT_ERROR

    def __init__(
        self, message: str, *, status: int | None = None, code: str = "error", detail: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail or {}

    def to_dict(self) -> dict[str, Any]:
        """The error as the API shapes it, plus the HTTP status and the CLI's exit code."""
        return {
            "code": self.code,
            "message": self.message,
            "detail": self.detail,
            "status": self.status,
            "exit_code": self.exit_code,
        }


class NotFound(ModelDeckError):
    """Raise when a model, version, endpoint or job does not exist or is not visible to the token (404)."""

    exit_code = EXIT_NOT_FOUND


class PermissionDenied(ModelDeckError):
    """Raise when the token's role does not allow the action (403)."""

    exit_code = EXIT_PERMISSION


class NotAuthenticated(PermissionDenied):
    """Raise when no token was given or it is wrong, expired or revoked (401)."""


class Invalid(ModelDeckError):
    """Raise when the server refuses the request's content (400, 409, 413, 415, 422) or a local input is malformed."""

    exit_code = EXIT_INVALID


class ConnectionFailed(ModelDeckError):
    """Raise when the server cannot be reached or does not answer in time."""

    exit_code = EXIT_CONNECTION


class WaitTimeout(ConnectionFailed):
    """Raise when a job or a version is still not done after the wait's timeout."""


class JobFailed(ModelDeckError):
    """Raise when a waited-for job failed or was cancelled, or an upload's processing failed."""

    exit_code = EXIT_JOB_FAILED


class ParityFailed(ModelDeckError):
    """Raise when a converted version's parity report failed (and no admin accepted it)."""

    exit_code = EXIT_PARITY_FAILED


class RolloutRolledBack(ModelDeckError):
    """Raise when a waited-for rollout rolled back by itself on a failing gate."""

    exit_code = EXIT_ROLLED_BACK


class RolloutAborted(ModelDeckError):
    """Raise when a waited-for rollout was aborted (by a person, or by a manual release on its endpoint)."""

    exit_code = EXIT_ABORTED


class PendingApproval(ModelDeckError):
    """Raise when `--wait` cannot follow a change: the endpoint requires approval, and a change request waits."""

    exit_code = EXIT_PENDING_APPROVAL


class UsageError(ModelDeckError):
    """Raise for a command line that names something that is not there (a local file)."""

    exit_code = EXIT_USAGE


# The way out, shown under the message of the errors a login fixes (and ending the one of no login at all). The
# variables are config.ENV_URL and config.ENV_TOKEN, written out: config imports this module.
LOGIN_HINT = "Run `modeldeck login URL --token TOKEN`, or set MODELDECK_URL and MODELDECK_TOKEN."
SIGNATURE_CHANGE_HINT = (
    "`modeldeck promote ... --allow-signature-change` releases it anyway (admins only on protected endpoints)"
)
UNEXPECTED_CODE = "unexpected"


def error_hint(error: ModelDeckError) -> str:
    """The hint shown under an error's message, or "" (a wait that ran out is not a login problem)."""
    if isinstance(error, NotAuthenticated) or (isinstance(error, ConnectionFailed) and error.code != "wait_timeout"):
        return LOGIN_HINT
    return ""


def unexpected_message(error: BaseException) -> str:
    """What the CLI says of an exception that is not a ModelDeckError (a bug, or a server answer it cannot read)."""
    return f"unexpected error: {type(error).__name__}: {error}"


def unexpected_to_dict(error: BaseException) -> dict[str, Any]:
    """An unexpected error as `--json` shows it (no HTTP status: none was involved)."""
    return {"code": UNEXPECTED_CODE, "message": unexpected_message(error), "detail": {}, "exit_code": EXIT_ERROR}


_BY_STATUS: dict[int, type[ModelDeckError]] = {
    400: Invalid,
    401: NotAuthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Invalid,
    413: Invalid,
    415: Invalid,
    422: Invalid,
    429: NotAuthenticated,  # the only 429 the API gives: too many wrong tokens from this address
}


def error_from_response(response: httpx.Response) -> ModelDeckError:
    """Build the typed error for an API answer that is not a success."""
    status = response.status_code
    code = f"http_{status}"
    message = f"{status} {response.reason_phrase}".strip()
    detail: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        body = None
        text = response.text.strip()
        if text:
            message = f"{message}: {text[:300]}"
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or message)
            found = error.get("detail")
            detail = found if isinstance(found, dict) else {}
        elif isinstance(error, str):
            # The inference data plane answers errors the Open Inference Protocol way.
            message = error
    cls = _BY_STATUS.get(status, ModelDeckError)
    return cls(message, status=status, code=code, detail=detail)

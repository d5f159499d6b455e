"""DRF authentication by `Authorization: Bearer <token>`."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from teams.auth_throttle import request_address, retry_after_text, token_failure_record
from teams.services import api_token_authenticate


def token_failure(request: Request, message: str) -> exceptions.APIException:
    """The error for a failed token: 401, or 429 once the client address has failed too often.

    Checked after the token, not before: a valid token never pays for the throttle, and tokens carry 256 random
    bits, so letting a locked address still present one gives a guesser nothing.
    """
    lockout = token_failure_record(address=request_address(request._request))
    if lockout is None:
        return exceptions.AuthenticationFailed(message)
    throttled = exceptions.Throttled(wait=lockout.retry_after)
    # Set after: DRF would append its own "Expected available in ..." to a detail given to the constructor.
    throttled.detail = exceptions.ErrorDetail(
        f"Too many invalid tokens from your address; try again in {retry_after_text(lockout.retry_after)}.",
        code="throttled",
    )
    return throttled


class BearerTokenAuthentication(BaseAuthentication):
    """Authenticate an API token; request.user is its user and request.auth the ApiToken."""

    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise token_failure(request, "Malformed Authorization header; send 'Bearer <token>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise token_failure(request, "The token contains characters a token never has.") from exc
        token = api_token_authenticate(raw=raw)
        if token is None:
            raise token_failure(request, "Invalid, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) to unauthenticated requests.
        return 'Bearer realm="modeldeck"'

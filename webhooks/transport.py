"""POST one delivery: 5 s to connect, 10 s in all, redirects not followed.

The outcome is said in a few words that never hold a secret or the answer's body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from common.errors import ApplicationError
from webhooks.addresses import webhook_address_check

CONNECT_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
ERROR_LENGTH = 300


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: a status code (None when no answer came), an error (empty on success), its time."""

    status_code: int | None
    error: str
    ms: int

    @property
    def ok(self) -> bool:
        return not self.error


async def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    timeout = httpx.Timeout(TOTAL_TIMEOUT, connect=CONNECT_TIMEOUT)
    # trust_env=False: no proxy or .netrc credentials from the worker's environment are sent to a receiver.
    # The body of the answer is never read: only its status is recorded.
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        client.stream("POST", url, content=body, headers=headers) as response,
    ):
        return response


async def _post_within(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    # httpx's timeouts are per read; wait_for bounds the whole exchange (a receiver that drips bytes).
    return await asyncio.wait_for(_post(url, body, headers), TOTAL_TIMEOUT)


def delivery_post(*, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
    """Send the body; success is a 2xx answer, anything else (a redirect included) is a failure said briefly."""
    started = time.monotonic()

    def outcome(status_code: int | None, error: str) -> Outcome:
        return Outcome(status_code, error[:ERROR_LENGTH], round((time.monotonic() - started) * 1000))

    if not settings.MODELDECK_WEBHOOK_ALLOW_PRIVATE:
        parts = urlsplit(url)
        try:
            webhook_address_check(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        except ApplicationError as exc:
            return outcome(None, exc.message)
    try:
        response = asyncio.run(_post_within(url, body, headers))
    except (TimeoutError, httpx.TimeoutException):
        return outcome(None, f"No answer within {TOTAL_TIMEOUT:g} s.")
    except httpx.ConnectError as exc:
        return outcome(None, f"Could not connect: {exc or type(exc).__name__}.")
    except httpx.HTTPError as exc:
        return outcome(None, f"{type(exc).__name__}: {exc}.")
    status = response.status_code
    if 200 <= status < 300:
        return outcome(status, "")
    if response.is_redirect:
        return outcome(status, f"Redirected ({status}); webhooks do not follow redirects: use the final URL.")
    return outcome(status, f"The receiver answered {status}.")

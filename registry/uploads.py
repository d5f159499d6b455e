"""Receive model uploads: stream to a temporary file while hashing; refuse every body that may not be read early."""

from __future__ import annotations

import hashlib
import json
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.db import close_old_connections
from django.urls import Resolver404, resolve

from common.api_errors import error_body
from common.errors import ApplicationError
from teams.choices import Action

ASGIApp = Any


TOO_LARGE_FLAG = "modeldeck.upload_too_large"


def mark_upload_too_large(request: Any) -> None:
    if request is not None:
        request.META[TOO_LARGE_FLAG] = True


def upload_was_too_large(request: Any) -> bool:
    return bool(request.META.get(TOO_LARGE_FLAG))


class HashingUploadHandler(TemporaryFileUploadHandler):
    """Write each uploaded file to a temporary file and compute its sha256 on the way through."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self._hash = hashlib.sha256()
        self._received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self._received += len(raw_data)
        if self._received > settings.MODELDECK_MAX_UPLOAD_BYTES:
            # A body without a (truthful) Content-Length still stops at the limit; the view answers 413.
            mark_upload_too_large(self.request)
            raise StopUpload(connection_reset=True)
        self._hash.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int) -> UploadedFile | None:
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self._hash.hexdigest()  # type: ignore[attr-defined]
        return uploaded


# Bodies the web process will read for any other route: Django's own limit for a non-file body (2.5 MB by default).
SMALL_BODY_BYTES = 2_621_440
# A refused request's unread body up to this is left for uvicorn to read and drop (the connection goes on); past it
# the answer says `connection: close`, as nginx does, rather than receiving a gigabyte to throw away.
DRAIN_BYTES = 64 * 1024
UPLOAD_ROUTE = "api-versions"


class BodyLimitMiddleware:
    """ASGI middleware in front of Django: decide on the headers whether a request body may be read at all.

    Django's ASGI handler spools the whole body to a temporary file before authentication, CSRF or a view run, so
    nothing behind it can refuse early. Here, every route takes at most a small body (SMALL_BODY_BYTES, or
    DATA_UPLOAD_MAX_MEMORY_SIZE when set); only the upload route takes a large one, and only from a session or
    bearer token of a developer of the team in its path (the view still checks everything else); and that body
    is cut at MODELDECK_MAX_UPLOAD_BYTES. A refused request is answered at once, from its headers alone; a body
    sent without a length is cut off once it passes the limit.
    """

    # Multipart framing and the small form fields around the file.
    ENVELOPE_BYTES = 1024 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        chunked = any(name == b"transfer-encoding" for name, _ in scope.get("headers", []))
        small = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or SMALL_BODY_BYTES
        if (length is None and not chunked) or (length is not None and length <= small):
            await self.app(scope, receive, send)  # no body, or a small one: Django's own limits apply
            return
        upload = scope["method"] == "POST" and _upload_team(scope["path"])
        if not upload:
            if length is not None:
                await _send_error(send, 413, _too_large(length, small, "the limit for a request body on this route"))
                return
            await self._limited(scope, receive, send, small, _too_large(None, small, "the limit on this route"))
            return
        refusal = await _upload_refusal(scope, upload)
        if refusal is not None:
            await _send_error(send, refusal[0], refusal[1], close=length is None or length > DRAIN_BYTES)
            return
        limit = settings.MODELDECK_MAX_UPLOAD_BYTES + self.ENVELOPE_BYTES
        if length is not None and length > limit:
            await _send_error(send, 413, _upload_too_large(length, settings.MODELDECK_MAX_UPLOAD_BYTES))
            return
        await self._limited(scope, receive, send, limit, _upload_too_large(None, settings.MODELDECK_MAX_UPLOAD_BYTES))

    async def _limited(self, scope: dict[str, Any], receive: Any, send: Any, limit: int, refusal: bytes) -> None:
        """Pass the request on, cutting its body off once it passes `limit` (then answer 413 with `refusal`)."""
        received = 0
        refused = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, refused
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)
        if refused:
            # Django saw a disconnect and sent nothing; tell the client why.
            await _send_error(send, 413, refusal)


def _upload_team(path: str) -> str | None:
    """The team slug of an upload route's path, or None for any other path."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return match.kwargs.get("team") if match.url_name == UPLOAD_ROUTE else None


async def _upload_refusal(scope: dict[str, Any], team: str) -> tuple[int, bytes] | None:
    """Why the request may not upload to `team`, judged on its credentials alone, or None when it may."""
    headers = {name.lower(): value for name, value in scope.get("headers", [])}
    return await sync_to_async(_upload_refusal_sync, thread_sensitive=True)(
        headers.get(b"authorization", b"").decode("latin-1"), headers.get(b"cookie", b"").decode("latin-1"), team
    )


def _upload_refusal_sync(authorization: str, cookie: str, team: str) -> tuple[int, bytes] | None:
    from teams.permissions import Actor
    from teams.selectors import team_get_for_actor
    from teams.services import api_token_authenticate

    close_old_connections()
    try:
        scheme, _, raw = authorization.partition(" ")
        actor: Actor | None = None
        if scheme.lower() == "bearer" and raw.strip():
            token = api_token_authenticate(raw=raw.strip())
            actor = Actor(user=token.user, token=token) if token is not None else None
        elif not authorization:
            user = _session_user(cookie)
            actor = Actor(user=user) if user is not None else None
        if actor is None:
            message = "Log in or send a valid API token before uploading a model."
            return 401, json.dumps(error_body("not_authenticated", message)).encode()
        try:
            team_get_for_actor(actor=actor, slug=team, action=Action.DEVELOP)
        except ApplicationError as exc:
            return exc.status_code, json.dumps(error_body(exc.code, exc.message, exc.detail)).encode()
        return None
    finally:
        close_old_connections()


def _session_user(cookie: str) -> Any:
    """The active user a session cookie belongs to, as Django's auth middleware would find it, or None."""
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(cookie)
    except CookieError:
        return None
    morsel = jar.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(morsel.value)
    user = auth.get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]  # it reads only .session
    return user if user.is_authenticated and user.is_active else None


def _too_large(length: int | None, limit: int, what: str) -> bytes:
    size = f"{length} bytes" if length is not None else "more than the limit"
    message = f"The request body is {size}; {what} is {limit} bytes."
    return json.dumps(error_body("too_large", message, {"limit": limit, "content_length": length})).encode()


def _upload_too_large(length: int | None, limit: int) -> bytes:
    size = f"{length} bytes" if length is not None else "more than the limit"
    message = f"The upload is {size}; the limit is {limit} bytes (MODELDECK_MAX_UPLOAD_BYTES)."
    return json.dumps(error_body("too_large", message, {"limit": limit, "content_length": length})).encode()


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Any, status: int, body: bytes, *, close: bool = True) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

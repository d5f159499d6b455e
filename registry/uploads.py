"""Receive model uploads: stream to a temporary file while hashing, and refuse oversized bodies early."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler

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


def _too_large_body(length: int | None, limit: int) -> bytes:
    size = f"{length} bytes" if length is not None else "more than the limit"
    return json.dumps(
        {
            "error": {
                "code": "too_large",
                "message": f"The upload is {size}; the limit is {limit} bytes (MODELDECK_MAX_UPLOAD_BYTES).",
                "detail": {"limit": limit, "content_length": length},
            }
        }
    ).encode()


class UploadLimitMiddleware:
    """ASGI middleware: answer 413 from the Content-Length alone, before any of the body is read.

    Django's ASGI handler reads the whole body to a spool file before a view runs, so a view cannot refuse
    early; this sits in front of it. Bodies sent without a length are cut off once they pass the limit.
    """

    # Multipart framing and the small form fields around the file.
    ENVELOPE_BYTES = 1024 * 1024

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        limit = settings.MODELDECK_MAX_UPLOAD_BYTES + self.ENVELOPE_BYTES
        length = _content_length(scope)
        if length is not None and length > limit:
            await _send_413(send, length, settings.MODELDECK_MAX_UPLOAD_BYTES)
            return
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
            await _send_413(send, None, settings.MODELDECK_MAX_UPLOAD_BYTES)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Any, length: int | None, limit: int) -> None:
    body = _too_large_body(length, limit)
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

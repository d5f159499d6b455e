"""Idempotency-Key on the POSTs that create something: a retry gets the first answer back, never a second object.

The key is the client's, scoped to the user who sends it (as Stripe and the IETF draft
"The Idempotency-Key HTTP Header Field" do). The key's row is written in the same transaction as what the POST
creates, so both commit or neither does: a retry after a committed answer that was lost replays that answer; a
retry after a failure runs again; a retry racing the first request waits on the row's unique index, then replays.
The same key with another route or body is refused with 422. Keys are forgotten after KEY_TTL.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from common.errors import ApplicationError
from common.models import IdempotencyKey

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
KEY_TTL = timedelta(hours=24)

PostHandler = Callable[..., Response]


def idempotent(post: PostHandler) -> PostHandler:
    """Make an APIView's `post` answer a repeated Idempotency-Key with the first answer instead of running again."""

    @functools.wraps(post)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None or not request.user.is_authenticated:
            return post(view, request, *args, **kwargs)
        if not key.strip() or len(key) > KEY_MAX_LENGTH or not key.isprintable():
            raise ApplicationError(
                "invalid",
                f"An {HEADER} is 1 to {KEY_MAX_LENGTH} printable characters.",
                {HEADER: [f"1 to {KEY_MAX_LENGTH} printable characters."]},
            )
        route = f"{request.method} {request.path}"
        with transaction.atomic():
            IdempotencyKey.objects.filter(user=request.user, key=key, created_at__lt=timezone.now() - KEY_TTL).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyKey.objects.create(
                        user=request.user, key=key, route=route, fingerprint="", status=0, body={}
                    )
            except IntegrityError:
                # Used before (its transaction committed: a concurrent first use was waited for by the insert).
                return _replay(IdempotencyKey.objects.get(user=request.user, key=key), request, route)
            response = post(view, request, *args, **kwargs)
            if response.status_code >= 400:
                transaction.set_rollback(True)  # nothing was done: the key stays free for a retry
                return response
            record.fingerprint = request_fingerprint(request, route)
            record.status = response.status_code
            record.body = response.data
            record.save(update_fields=["fingerprint", "status", "body"])
        return response

    return wrapper


def _replay(record: IdempotencyKey, request: Request, route: str) -> Response:
    if record.route != route or record.fingerprint != request_fingerprint(request, route):
        raise ApplicationError(
            "idempotency_key_reused",
            f"This {HEADER} was already used with a different request ({record.route}); "
            "send a new key for a new request.",
            {"route": record.route},
            status=422,
        )
    response = Response(record.body, status=record.status)
    response["Idempotent-Replayed"] = "true"
    return response


def request_fingerprint(request: Request, route: str) -> str:
    """SHA-256 of the route, query and body; an uploaded file counts by its name, size and content hash."""
    data = request.data
    body = {k: [_part(v) for v in values] for k, values in data.lists()} if hasattr(data, "lists") else data
    payload = {"route": route, "query": sorted(request.query_params.lists()), "body": body}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _part(value: Any) -> Any:
    if isinstance(value, UploadedFile):
        return {"name": value.name, "size": value.size, "sha256": getattr(value, "sha256", None)}
    return value


def idempotency_keys_prune(*, now: datetime | None = None) -> int:
    """Forget keys older than KEY_TTL; return how many."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=(now or timezone.now()) - KEY_TTL).delete()
    return deleted

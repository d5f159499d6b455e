"""The one DRF exception handler: every API error becomes {"error": {"code", "message", "detail"}}."""

from __future__ import annotations

import logging
import math
from typing import Any, cast

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from common.errors import ApplicationError

logger = logging.getLogger(__name__)

# DRF's own default_code values are already stable identifiers; these messages replace its terser ones.
_MESSAGES = {
    "invalid": "The request is not valid; see detail for each field.",
    "parse_error": "The request body could not be parsed.",
}


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """Build the one error shape the API speaks."""
    return {"error": {"code": code, "message": message, "detail": detail if detail is not None else {}}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn domain and DRF exceptions into the error shape; anything else becomes a logged 500."""
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.detail), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        response = exception_handler(exc, context)
        assert response is not None  # DRF handles every APIException
        code = exc.get_codes()
        detail: Any
        if isinstance(exc, exceptions.ValidationError):
            code_name, detail = "invalid", exc.detail
            message = _MESSAGES["invalid"]
        else:
            code_name = code if isinstance(code, str) else exc.default_code
            detail = {}
            message = _MESSAGES.get(code_name, str(exc.detail))
            if isinstance(exc, exceptions.ParseError):
                detail = {"reason": str(exc.detail)}
            elif isinstance(exc, exceptions.Throttled):
                wait = getattr(exc, "wait", None)  # set by Throttled.__init__; the stubs lack it
                if wait is not None:
                    detail = {"retry_after": math.ceil(wait)}
        response.data = cast(Any, error_body(code_name, message, detail))
        return response
    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
    return Response(
        error_body("server_error", "An unexpected error occurred; it has been logged."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )

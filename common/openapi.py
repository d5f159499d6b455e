"""The OpenAPI schema's house rules: a component name per serializer, and the error shape on every operation."""

from __future__ import annotations

from typing import Any, Literal

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from common import idempotency

# What any API operation may answer, whatever it does: a malformed request (400), no or a bad credential (401), too
# many bad credentials from the caller's address (429), a role that may not (403), an object the actor cannot see
# (404).
COMMON_ERROR_STATUSES = (400, 401, 403, 404, 429)

_ERROR_DESCRIPTIONS = {
    400: "The request is not valid (`invalid`, `parse_error`); `detail` names each field.",
    401: "No credential, or an invalid, expired or revoked token.",
    403: "The credential's role does not allow this.",
    404: "No such object, or one the caller may not see.",
    409: "The request conflicts with the object's current state (e.g. `already_exists`, `version_not_ready`).",
    410: "The file is gone.",
    413: "The body is larger than the server accepts.",
    422: "The request is well-formed but cannot be carried out (e.g. an unreadable model file, `not_servable`).",
    429: "Too many invalid credentials from the caller's address; `detail.retry_after` is in seconds.",
}

# Every POST that `common.idempotency.idempotent` wraps runs this one code object: how the schema knows them.
_IDEMPOTENT_CODE = idempotency.idempotent(lambda *args, **kwargs: Response()).__code__


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A file sent as a multipart part: drf-spectacular would describe a plain FileField as a URL."""


class ApiErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `not_found`.")
    message = serializers.CharField()
    detail = serializers.JSONField(help_text="Structured detail: for `invalid`, the messages of each field.")


class ApiErrorSerializer(serializers.Serializer):
    """Every API error: `{"error": {"code", "message", "detail"}}`."""

    error = ApiErrorBodySerializer()


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """Describe errors an operation answers besides the common ones, for `extend_schema(responses=...)`."""
    return {status: OpenApiResponse(ApiErrorSerializer, description=_ERROR_DESCRIPTIONS[status]) for status in statuses}


class ModelDeckAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema with a component per serializer and the error responses described."""

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Literal["request", "response"]) -> str:
        # Every write API nests its own `InputSerializer` (STYLE.md rule 6): named by its class alone, they would all
        # be one "Input" component. Nested in a view, a serializer is named after the view: MemberListApi's
        # InputSerializer is "MemberListInput".
        outer, _, inner = type(serializer).__qualname__.rpartition(".")
        if outer.endswith("Api"):
            return outer.removesuffix("Api") + inner
        return super().get_serializer_name(serializer, direction)

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._is_idempotent():
            parameters.append(
                OpenApiParameter(
                    idempotency.HEADER,
                    str,
                    OpenApiParameter.HEADER,
                    description="A key of the client's (1-255 printable characters): a retry with the same key and "
                    "request gets the first answer back (with `Idempotent-Replayed: true`) instead of running again.",
                    # Visible ASCII with inner spaces: what a header carries intact and the server always accepts.
                    pattern=f"^[!-~]([ -~]{{0,{idempotency.KEY_MAX_LENGTH - 2}}}[!-~])?$",
                )
            )
        return parameters

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        statuses = [*COMMON_ERROR_STATUSES, *([422] if self._is_idempotent() else [])]
        error_schema = self.resolve_serializer(ApiErrorSerializer, "response").ref
        for status in statuses:
            operation["responses"].setdefault(
                str(status),
                {"description": _ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": error_schema}}},
            )
        operation["responses"] = dict(sorted(operation["responses"].items()))
        return operation

    def _is_idempotent(self) -> bool:
        handler = getattr(type(self.view), self.method.lower(), None)
        return getattr(handler, "__code__", None) is _IDEMPOTENT_CODE

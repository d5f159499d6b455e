"""Requests no view can answer sensibly, refused before any view or query runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from common.api_errors import error_body

NUL_MESSAGE = "The request's path or query string holds a NUL character, which no name or filter can contain."


class RefuseNulMiddleware:
    """Answer 400 to a path or query string holding a NUL character (PostgreSQL text cannot hold one: a lookup
    with it would raise instead of finding nothing)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or _nul_in_query(request):
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid", NUL_MESSAGE), status=400)
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


def _nul_in_query(request: HttpRequest) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())

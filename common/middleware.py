"""Requests no view can answer sensibly, refused before any view or query runs; headers every response carries."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
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


class ContentSecurityPolicyMiddleware:
    """Send MODELDECK_CONTENT_SECURITY_POLICY with every response that has no policy of its own (empty: none).

    The pages load scripts, styles and images from the site only and hold no inline script, style or handler, so an
    injected `<script>` or `onerror=` would not run even if escaping ever failed.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy: str = settings.MODELDECK_CONTENT_SECURITY_POLICY

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response

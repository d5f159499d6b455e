"""Which URLs a webhook may point at: http(s), no credentials in the URL, and, unless
MODELDECK_WEBHOOK_ALLOW_PRIVATE, no private, loopback, link-local or reserved address (docs/security.md)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from common.errors import ApplicationError

URL_MAX_LENGTH = 2000


def _refuse(message: str) -> ApplicationError:
    return ApplicationError("invalid", message, {"url": [message]})


def webhook_url_check(url: str) -> str:
    """Return the URL stripped, or raise ApplicationError saying precisely what is wrong with it."""
    url = url.strip()
    if not url:
        raise _refuse("Give the URL to send events to, e.g. https://hooks.example.com/modeldeck.")
    if len(url) > URL_MAX_LENGTH:
        raise _refuse(f"The URL is longer than {URL_MAX_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise _refuse("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse(f"The URL is malformed ({exc}).") from exc
    if parts.scheme not in ("http", "https"):
        raise _refuse(f"Use an http:// or https:// URL, not '{parts.scheme or 'no scheme'}'.")
    if parts.username is not None or parts.password is not None:
        raise _refuse("Put no credentials in the URL: the receiver checks the signature instead.")
    if not parts.hostname:
        raise _refuse("The URL has no host.")
    if port == 0:
        raise _refuse("The URL's port must be 1-65535.")
    if not settings.MODELDECK_WEBHOOK_ALLOW_PRIVATE:
        webhook_address_check(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return url


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def webhook_address_check(host: str, port: int) -> None:
    """Refuse a host that is, or resolves to, a non-public address (checked at creation and before each attempt)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _refuse(f"The host '{host}' does not resolve ({exc}).") from exc
    private = sorted({str(info[4][0]) for info in infos if _private(str(info[4][0]))})
    if private:
        raise ApplicationError(
            "private_address",
            f"The host '{host}' is a private or reserved address ({', '.join(private)}); this server sends webhooks "
            "to public addresses only (MODELDECK_WEBHOOK_ALLOW_PRIVATE).",
            {"url": [f"'{host}' resolves to {', '.join(private)}."]},
        )

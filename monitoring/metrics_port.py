"""A /metrics port for a process that serves no HTTP of its own (the gRPC server, `servegrpc --metrics-port`).

In containers every process has its own Prometheus folder (prometheus_client names its files by pid, so folders are
never shared across pid namespaces), and a scrape of a web container's /metrics sees the web processes only. This
port answers `GET /metrics` with the folder of the process it runs in, under the same token rule as the web's
(`scrape_refusal`), on the running event loop. It speaks just enough HTTP/1.1 for a scraper: one request per
connection, headers only (no body is read), answered with `Connection: close`; anything else is a 4xx.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST

from monitoring.prometheus import metrics_exposition, scrape_refusal

logger = logging.getLogger(__name__)

# A scrape's request line and headers: more is not a scraper's request.
HEADER_LIMIT = 16 * 1024
HEADER_TIMEOUT_SECONDS = 10.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
REASONS |= {405: "Method Not Allowed", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


async def metrics_port_start(host: str, port: int) -> asyncio.Server:
    """Listen on host:port and answer scrapes until the returned server is closed."""
    return await asyncio.start_server(_connection, host, port, limit=HEADER_LIMIT)


def _answer(
    status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None, head: bool = False
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (extra or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


def _text(status: int, message: str, extra: dict[str, str] | None = None) -> bytes:
    return _answer(status, message.encode(), "text/plain; charset=utf-8", extra)


async def _connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_SECONDS)
        except asyncio.LimitOverrunError:
            answer = _text(431, "request headers too large\n")
        except asyncio.IncompleteReadError:
            return  # the client went away before it asked anything
        except TimeoutError:
            answer = _text(408, "request headers not received in time\n")
        else:
            answer = await _scrape(head)
        writer.write(answer)
        await writer.drain()
    except (ConnectionError, OSError) as exc:
        logger.debug("metrics port: connection lost: %s", exc)
    except Exception:  # a scrape that fails must never take the server down
        logger.exception("metrics port: scrape failed")
    finally:
        writer.close()


async def _scrape(head: bytes) -> bytes:
    try:
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return _text(400, "malformed request line\n")
    if not version.startswith("HTTP/1."):
        return _text(400, "HTTP/1.x only\n")
    if method not in ("GET", "HEAD"):
        return _text(405, "only GET /metrics is served here\n", {"Allow": "GET, HEAD"})
    if target.split("?", 1)[0] != "/metrics":
        return _text(404, "only /metrics is served here\n")
    authorization = ""
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "authorization":
            authorization = value.strip()
    refusal = scrape_refusal(authorization)
    if refusal is not None:
        return _text(refusal.status, refusal.message, refusal.headers)
    # Reading every process's files is disk work: off the loop that answers inference calls.
    body = await asyncio.to_thread(metrics_exposition)
    return _answer(200, body, CONTENT_TYPE_LATEST, head=method == "HEAD")

"""Websocket URL patterns of every app, gathered for config.asgi."""

from __future__ import annotations

from monitoring.routing import websocket_urlpatterns as monitoring_patterns

websocket_urlpatterns = [*monitoring_patterns]

from __future__ import annotations

from django.urls import path

from monitoring import consumers

websocket_urlpatterns = [
    path("ws/teams/<str:team>/events/", consumers.TeamEventsConsumer.as_asgi()),
    path("ws/endpoints/<str:name>/", consumers.EndpointMetricsConsumer.as_asgi()),
]

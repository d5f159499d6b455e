"""ASGI entry point: the inference data plane first, then Django for HTTP and Channels for websockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# Django must be set up before anything that imports models (consumers, auth middleware).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from registry.uploads import UploadLimitMiddleware  # noqa: E402
from serving.asgi import DataPlane  # noqa: E402
from serving.views import ROUTES  # noqa: E402

application = DataPlane(
    ProtocolTypeRouter(
        {
            "http": UploadLimitMiddleware(django_asgi_app),
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    ),
    ROUTES,
)

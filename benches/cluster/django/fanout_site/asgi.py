"""ASGI entry point: uvicorn fanout_site.asgi:application (see
scripts/bench-cluster.sh for the command line)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fanout_site.settings")

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import path  # noqa: E402

django_asgi = get_asgi_application()

from .consumers import FanoutConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": URLRouter([path("ws", FanoutConsumer.as_asgi())]),
    }
)

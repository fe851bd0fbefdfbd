"""A minimal Django Channels project whose WebSockets run on polysocket's
engine: clients of any draft (hixie-75 to RFC 6455) join
``ws://<host>/ws/chat/<room>/`` and get every message sent to their room.
Run from the repository root (uvicorn puts the current directory on the
import path, so ``examples.asgi.channels_chat`` imports as is)::

    DJANGO_SETTINGS_MODULE=examples.asgi.channels_chat.settings \\
        uvicorn examples.asgi.channels_chat.asgi:application \\
        --ws polysocket.asgi:WebSocketProtocol
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.asgi.channels_chat.settings")
# Django is set up before anything imports models or consumers.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import ChatConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": URLRouter([
        path("ws/chat/<slug:room>/", ChatConsumer.as_asgi()),
    ]),
})

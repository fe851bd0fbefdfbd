"""Django settings of the Channels chat example: no database, the
in-process channel layer (one uvicorn worker; use channels_redis for
several)."""

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = ["channels"]
DATABASES: dict = {}

ROOT_URLCONF = "examples.asgi.channels_chat.urls"
ASGI_APPLICATION = "examples.asgi.channels_chat.asgi.application"
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

USE_TZ = True

"""Settings of the Django Channels fan-out node (issue 13's benchmark).

The channel layer is channels_redis' ``RedisPubSubChannelLayer`` (Redis
pub/sub, the faster of its two layers), on the Redis given in REDIS_URL.
"""

import os

SECRET_KEY = "benchmark-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ROOT_URLCONF = "fanout_site.urls"
ASGI_APPLICATION = "fanout_site.asgi.application"
USE_TZ = True
LOGGING = {"version": 1, "root": {"level": "WARNING"}}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
    }
}

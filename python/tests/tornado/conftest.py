"""Shared setup of the Tornado drop-in tests."""

import logging

# Tornado's test cases fail on any unexpected log line; the access log
# writes one INFO line per request.
logging.getLogger("tornado.access").setLevel(logging.CRITICAL)

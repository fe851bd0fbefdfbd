"""No HTTP routes: the node serves the WebSocket at /ws only."""

urlpatterns = []

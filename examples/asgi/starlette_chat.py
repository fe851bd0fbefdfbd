"""A Starlette chat room: every text message goes to every connected
client, whatever WebSocket draft each one speaks. Run from the repository
root::

    uvicorn examples.asgi.starlette_chat:app --ws polysocket.asgi:WebSocketProtocol

and connect clients to ``ws://127.0.0.1:8000/chat`` (a hixie-76 client:
``polysocket.connect("ws://127.0.0.1:8000/chat", draft="hixie-76")``).
"""

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# The connected clients of this process.
clients: "set[WebSocket]" = set()


async def broadcast(message: str) -> None:
    for client in list(clients):
        try:
            await client.send_text(message)
        except (WebSocketDisconnect, OSError, RuntimeError):
            # Gone meanwhile (uvicorn raises ClientDisconnected, an OSError).
            clients.discard(client)


async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    clients.add(websocket)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:  # binary: relayed as text
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            await broadcast(text)
    finally:
        clients.discard(websocket)


app = Starlette(routes=[WebSocketRoute("/chat", chat)])

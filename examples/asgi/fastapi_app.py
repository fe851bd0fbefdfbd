"""A FastAPI app whose WebSockets run on polysocket's engine: clients of
every draft, hixie-75 to RFC 6455, reach the same endpoints. Run from the
repository root (uvicorn puts the current directory on the import path)::

    uvicorn examples.asgi.fastapi_app:app --ws polysocket.asgi:WebSocketProtocol

then, for instance::

    python -c "import asyncio, polysocket
    async def main():
        ws = await polysocket.connect('ws://127.0.0.1:8000/info', draft='hixie-76')
        print(await ws.recv()); await ws.send('hello'); print(await ws.recv())
        await ws.close()
    asyncio.run(main())"

``/echo`` echoes text and bytes; ``/info`` first sends the draft and the
compression extension in force, then echoes; ``GET /`` is a plain page.
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

app = FastAPI()

PAGE = """<!doctype html>
<title>polysocket FastAPI example</title>
<p>WebSocket endpoints: <code>/echo</code> and <code>/info</code>.</p>
<pre id="log"></pre>
<script>
const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/\\/?$/, "/info"));
const log = (m) => document.getElementById("log").textContent += m + "\\n";
ws.onmessage = (e) => log("< " + e.data);
ws.onopen = () => ws.send("hello");
</script>
"""


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE


async def echo(websocket: WebSocket) -> None:
    """Send every message back with its type, until the client leaves."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


@app.websocket("/echo")
async def echo_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    await echo(websocket)


@app.websocket("/info")
async def info_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    # Filled in by polysocket.asgi.WebSocketProtocol; "extension" is known
    # once the app has accepted.
    info = websocket.scope["extensions"]["polysocket"]
    await websocket.send_text(f"{info['draft']} {info['extension']}")
    await echo(websocket)

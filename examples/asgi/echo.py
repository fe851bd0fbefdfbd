"""A plain ASGI echo app (no framework): every message back as it came,
every path. The interop suite, the Autobahn subset and the benchmarks run
it under uvicorn with polysocket's WebSocket protocol:

    uvicorn examples.asgi.echo:app --ws polysocket.asgi:WebSocketProtocol
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = (await receive())["type"]  # lifespan.startup / .shutdown
            await send({"type": event + ".complete"})
            if event == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        await receive()
        # An upgrade request that reached us as plain HTTP (uvicorn passes on
        # HTTP/1.0 upgrades and protocols it does not speak) is refused.
        upgrade = any(name == b"upgrade" for name, _ in scope["headers"])
        status, body = (400, b"not a WebSocket handshake\n") if upgrade else (
            200, b"polysocket ASGI echo: connect a WebSocket to any path\n")
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        if upgrade:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})  # no subprotocol chosen
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})

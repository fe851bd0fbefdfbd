"""Every client joins one group on connect; whatever a client sends is
group_sent to it, so each node relays it to its own members (the publisher
included), across nodes through the Redis channel layer."""

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "fanout"


class FanoutConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.channel_layer.group_send(GROUP, {"type": "fanout.message", "text": text_data})

    async def fanout_message(self, event):
        await self.send(text_data=event["text"])

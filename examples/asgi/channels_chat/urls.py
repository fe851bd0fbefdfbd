"""The HTTP side: one page saying where the chat is."""

from django.http import HttpResponse
from django.urls import path


def index(request):
    return HttpResponse("Chat rooms are at ws://<host>/ws/chat/<room>/\n",
                        content_type="text/plain; charset=utf-8")


urlpatterns = [path("", index)]

"""WebSocket routes (mounted by ``fablab/asgi.py``)."""

from django.urls import path

from .consumers import BoardConsumer

websocket_urlpatterns = [
    path("ws/labs/<slug:lab>/", BoardConsumer.as_asgi()),
]

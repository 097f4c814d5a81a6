"""The chat server: Quart REST API and python-socketio in one ASGI app on hypercorn."""

"""python-socketio's room bookkeeping, with an index of each socket's rooms."""

from __future__ import annotations

from typing import Any

import socketio


class RoomIndexedManager(socketio.AsyncManager):  # type: ignore[misc]
    """python-socketio's local manager, also keeping each socket's rooms.

    The stock ``basic_disconnect`` finds a socket's rooms by copying and scanning every
    room of the namespace, and every socket has a room of its own: each disconnect costs
    O(sockets on the node), a mass disconnect O(n²). With 5,000 sockets, a reference
    server spent ~9 s of CPU on their disconnects after the bench closed them, and a
    server going away (or a load balancer restart) costs its peers as much. Here a
    disconnect reads the socket's rooms from the index, and ``get_rooms`` does too.

    ``basic_disconnect`` repeats the stock bookkeeping after the room scan (python-socketio
    5.18, ``base_manager.py``; 5.14-5.17 had no ``pending_connect``): recheck it when
    upgrading.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # rooms_of[namespace][sid] = the socket's rooms (None: the namespace's own), in order
        self._rooms_of: dict[str, dict[str, dict[Any, None]]] = {}

    def basic_enter_room(
        self, sid: str, namespace: str, room: Any, eio_sid: str | None = None
    ) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._rooms_of.setdefault(namespace, {}).setdefault(sid, {})[room] = None

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        of_namespace = self._rooms_of.get(namespace)
        if of_namespace is None or sid not in of_namespace:
            return
        rooms = of_namespace[sid]
        rooms.pop(room, None)
        if not rooms:
            del of_namespace[sid]
            if not of_namespace:
                del self._rooms_of[namespace]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in list(self._rooms_of.get(namespace, {}).get(sid, ())):
            self.basic_leave_room(sid, namespace, room)
        # The rest as in the stock manager.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if namespace in pending and sid in pending[namespace]:
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        """The rooms a socket is in (not the namespace's own), in the order it joined them."""
        return [r for r in self._rooms_of.get(namespace, {}).get(sid, ()) if r is not None]

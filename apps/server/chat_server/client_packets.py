"""Malformed socket.io packets: a failed acknowledgement, one log line, no traceback.

python-socketio decodes a client's packet inside engine.io's ``message`` handler; a packet
that is not valid socket.io (broken JSON, an event that is not a list, an unknown type)
raised there, engine.io logged the traceback (twice: its own handler and ours), and the
client waited for an acknowledgement the contract promises. Here the handler is wrapped:
a packet it cannot handle is answered, when it carries an ack id, with
``{"ok": false, "error": {"code": "validation_error", ...}}``, and logged in one line.
(An event with a name but no handler is left to the handlers: a catch-all "*" handler
here would shadow a class-based namespace's handlers.)
"""

from __future__ import annotations

import logging
import re
from typing import Any

import socketio
from socketio import packet

from chat_server.realtime import failed

log = logging.getLogger("chat.realtime")

NAMESPACE = "/"
# socket.io v5: type, then "<attachments>-", "/namespace,", and the ack id, each optional.
_HEADER = re.compile(r"(\d)(?:\d+-)?(/[^,]*,)?(\d+)?")
_EVENT_TYPES = frozenset({str(packet.EVENT), str(packet.BINARY_EVENT)})
# What a log line keeps of the client's packet: enough to recognise it, never a flood.
_SHOWN_CHARS = 80


_EVENT_LIST = re.compile(r'\s*\[\s*"')


def lacks_event_name(data: Any) -> bool:
    """An event packet whose payload does not open with a string, the event's name:
    python-socketio would fail on it in a task of its own, out of our reach."""
    if not isinstance(data, str):
        return False
    match = _HEADER.match(data)
    return (
        match is not None
        and match.group(1) in _EVENT_TYPES
        and _EVENT_LIST.match(data, match.end()) is None
    )


def ack_request(data: Any) -> tuple[str, int] | None:
    """The namespace and ack id of an event packet that asks for an acknowledgement."""
    if not isinstance(data, str):
        return None
    match = _HEADER.match(data)
    if match is None or match.group(1) not in _EVENT_TYPES or match.group(3) is None:
        return None
    namespace = (match.group(2) or NAMESPACE + ",")[:-1] or NAMESPACE
    return namespace, int(match.group(3))


class ClientMistakeFilter(logging.Filter):
    """engine.io logs a frame it cannot decode ("Unknown receive error") with its
    traceback: a client's mistake, not ours. One line, with the error, is enough."""

    MESSAGES = frozenset({"Unknown receive error"})

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.msg in self.MESSAGES:
            exc = record.exc_info[1]
            record.msg = f"malformed frame from a client: {type(exc).__name__}: {exc}"
            record.args = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def guard_client_packets(sio: socketio.AsyncServer) -> None:
    """Wrap engine.io's ``message`` handler (``eio.on``)."""
    sio.eio.logger.addFilter(ClientMistakeFilter())
    on_message = sio.eio.handlers["message"]

    async def message(eio_sid: str, data: Any) -> None:
        if lacks_event_name(data):
            await refuse(eio_sid, data, "the event has no name")
            return
        try:
            await on_message(eio_sid, data)
        except Exception as exc:  # the packet could not be decoded or dispatched
            await refuse(eio_sid, data, f"{type(exc).__name__}: {exc}")

    async def refuse(eio_sid: str, data: Any, why: str) -> None:
        shown = data[:_SHOWN_CHARS] if isinstance(data, str | bytes) else type(data)
        log.warning("malformed packet from socket %s: %s (%r)", eio_sid, why, shown)
        request = ack_request(data)
        if request is None:
            return
        namespace, ack_id = request
        answer = failed("validation_error", "malformed socket.io packet")
        reply = sio.packet_class(packet.ACK, namespace=namespace, data=[answer], id=ack_id)
        try:
            await sio.eio.send(eio_sid, reply.encode())
        except Exception:  # the socket went meanwhile: nobody to answer
            log.info("socket %s left before its malformed packet was answered", eio_sid)

    sio.eio.on("message", message)

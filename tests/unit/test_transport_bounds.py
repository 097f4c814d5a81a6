"""The transport bounds' pure parts: a socket's send buffer, reading a packet's ack id,
and the client address behind proxies."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from engineio.packet import MESSAGE, PING, Packet

from chat_server.admission import address_of, is_handshake
from chat_server.client_packets import ack_request, lacks_event_name
from chat_server.outbound import SendBuffer


def buffer(limit: int = 100, timeout: float = 60.0) -> tuple[SendBuffer, list[str]]:
    reasons: list[str] = []
    return SendBuffer(limit, timeout, lambda _q, reason: reasons.append(reason)), reasons


async def test_the_send_buffer_counts_bytes_and_refuses_past_its_bound() -> None:
    queue, reasons = buffer(limit=100)
    queue.put_nowait(Packet(MESSAGE, "x" * 60))
    queue.put_nowait(Packet(MESSAGE, "y" * 40))
    assert queue.bytes == 100
    queue.put_nowait(Packet(MESSAGE, "z"))  # one byte too many
    assert reasons == ["send_buffer_full"]
    assert queue.qsize() == 2
    queue.put_nowait(Packet(PING))  # refused from now on, and told once
    assert queue.qsize() == 2 and reasons == ["send_buffer_full"]
    queue.put_nowait(None)  # the writer's stop signal always passes
    assert queue.qsize() == 3


async def test_a_frame_bigger_than_the_bound_goes_to_an_empty_buffer() -> None:
    queue, reasons = buffer(limit=100)
    queue.put_nowait(Packet(MESSAGE, "x" * 500))
    assert reasons == [] and queue.bytes == 500
    assert queue.get_nowait().data == "x" * 500
    assert queue.bytes == 0 and queue.waiting_since is None


async def test_a_frame_that_waited_too_long_refuses_the_next() -> None:
    queue, reasons = buffer(timeout=5.0)
    queue.put_nowait(Packet(MESSAGE, "a"))
    assert queue.waiting_since is not None
    queue.waiting_since -= 6.0  # the writer took nothing for 6 s
    queue.put_nowait(Packet(MESSAGE, "b"))
    assert reasons == ["send_timeout"]


async def test_discarding_empties_the_buffer_and_wakes_the_writer() -> None:
    queue, _ = buffer()
    for _ in range(3):
        queue.put_nowait(Packet(MESSAGE, "abc"))
    queue.discard()
    assert queue.bytes == 0
    assert await queue.get() is None
    queue.task_done()
    await queue.join()  # every frame was marked done: a close(wait=True) does not hang


async def test_a_frame_put_while_the_writer_waits_is_handed_to_it() -> None:
    queue, _ = buffer()
    waiting = queue.get()  # a future: engine.io's wait_for awaits it without a task
    assert isinstance(waiting, asyncio.Future) and not waiting.done()
    queue.put_nowait(Packet(MESSAGE, "abc"))
    assert waiting.done() and waiting.result().data == "abc"
    assert queue.qsize() == 0 and queue.bytes == 0 and queue.waiting_since is None
    queue.task_done()


async def test_a_wait_that_timed_out_takes_no_frame() -> None:
    queue, _ = buffer()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.001)
    queue.put_nowait(Packet(MESSAGE, "kept"))
    assert queue.qsize() == 1 and queue.bytes == 4
    assert (await asyncio.wait_for(queue.get(), 1.0)).data == "kept"


def test_the_ack_id_of_an_event_packet() -> None:
    assert ack_request('21["x",{') == ("/", 1)
    assert ack_request("2123") == ("/", 123)
    assert ack_request('2/chat,7["x"]') == ("/chat", 7)
    assert ack_request('51-9["x",{"_placeholder":true,"num":0}]') == ("/", 9)
    assert ack_request('2["x"]') is None  # no ack asked
    assert ack_request("31[]") is None  # an ack, not an event
    assert ack_request(b"2") is None


def test_an_event_without_a_name() -> None:
    assert not lacks_event_name('21["message:send",{}]')
    assert not lacks_event_name('2[ "typing" ]')
    assert not lacks_event_name('40{"token":"t"}')  # a connect packet: not an event
    for bad in ("21", "2[]", '2{"a":1}', "2[1,2]", '2[{"a":1}]', "2x"):
        assert lacks_event_name(bad), bad


def scope(path: str, query: bytes = b"", **extra: Any) -> dict[str, Any]:
    return {"type": "http", "path": path, "query_string": query, "headers": [], **extra}


def test_a_handshake_is_a_request_under_socketio_without_a_session() -> None:
    assert is_handshake(scope("/socket.io/", b"EIO=4&transport=polling"))
    assert not is_handshake(scope("/socket.io/", b"EIO=4&transport=polling&sid=abc"))
    assert not is_handshake(scope("/api/v1/rooms"))
    assert not is_handshake({"type": "lifespan"})


def test_the_client_address_behind_trusted_proxies() -> None:
    headers = [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4"), (b"x-forwarded-for", b"10.0.0.2")]
    request = scope("/socket.io/", client=("127.0.0.1", 5000), headers=headers)
    assert address_of(request, 0) == "127.0.0.1"
    assert address_of(request, 1) == "10.0.0.2"
    assert address_of(request, 2) == "1.2.3.4"
    assert address_of(scope("/socket.io/", client=("127.0.0.1", 1)), 1) == "127.0.0.1"

"""A Redis pub/sub subscription read straight off its socket, for the socket.io listener.

Every event a node delivers is first read from its subscription. redis-py reads a
pub/sub message through several layers (a retry wrapper, a health check, observability
records, a timeout context, a stream parser awaiting each line). Measured on this
machine, CPU per message of a listener at 100 messages/s (one process, uvloop):
``PubSub.listen()`` 265 us, the connection's ``read_response`` 233 us, a plain asyncio
stream parsed as below ~90 us (with hiredis's parser). At a node's few events a second
each one wakes the loop alone, so that difference is paid on every delivery.

Only what a subscriber needs: connect (``redis://``, ``rediss://`` with the system's
certificate checks, ``unix://``; user and password from the URL), AUTH, name the
connection, SUBSCRIBE, then read the replies: RESP2, the protocol of a connection that
never says HELLO. Publishing and every other command stay on redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

READ_CHUNK = 1 << 16
_INCOMPLETE = object()  # the buffer ends inside a reply


class RedisReplyError(Exception):
    """Redis answered an error (``-ERR ...``)."""


class RespParser:
    """RESP2 replies out of a byte stream: arrays of bulk strings, integers, simple
    strings and errors (an error is returned as a ``RedisReplyError``, not raised)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def replies(self) -> list[Any]:
        """Every complete reply in the buffer, in order; a partial one stays for later."""
        found: list[Any] = []
        position = 0
        while position < len(self._buffer):
            parsed = _parse(self._buffer, position)
            if parsed is _INCOMPLETE:
                break
            reply, position = parsed
            found.append(reply)
        del self._buffer[:position]
        return found


def _parse(buffer: bytearray, position: int) -> Any:
    """(reply, position after it), or _INCOMPLETE."""
    end = buffer.find(b"\r\n", position)
    if end < 0:
        return _INCOMPLETE
    kind, line, after = buffer[position], bytes(buffer[position + 1 : end]), end + 2
    if kind == 0x24:  # $ bulk string
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return _INCOMPLETE
        return bytes(buffer[after : after + length]), after + length + 2
    if kind in (0x2A, 0x3E):  # * array, > push
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            parsed = _parse(buffer, after)
            if parsed is _INCOMPLETE:
                return _INCOMPLETE
            item, after = parsed
            items.append(item)
        return items, after
    if kind == 0x3A:  # : integer
        return int(line), after
    if kind == 0x2B:  # + simple string
        return line, after
    if kind == 0x2D:  # - error
        return RedisReplyError(line.decode(errors="replace")), after
    raise ConnectionError(f"unexpected reply from Redis: {bytes(buffer[position:end])!r}")


def _command(*words: str) -> bytes:
    encoded = [word.encode() for word in words]
    parts = [b"*%d\r\n" % len(encoded)]
    parts += [b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded]
    return b"".join(parts)


class RedisSubscription:
    """One connection subscribed to ``channels``; ``replies()`` yields what Redis pushes
    on it as ``(kind, channel, data)``: ``(b"message", channel, payload)``, and
    ``(b"subscribe", channel, count)`` once per channel when Redis confirms it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._parser = RespParser()
        self._confirmed: list[Any] = []  # the subscribe confirmations read by open()

    @classmethod
    async def open(
        cls,
        url: str,
        channels: Sequence[str],
        client_name: str | None = None,
        timeout: float = 5.0,
    ) -> RedisSubscription:
        """Connect, authenticate, name the connection and subscribe; returns once Redis
        confirmed the subscriptions (raises on failure, or after ``timeout`` seconds)."""
        parts = urlsplit(url)
        async with asyncio.timeout(timeout):
            if parts.scheme == "unix":
                reader, writer = await asyncio.open_unix_connection(unquote(parts.path))
            elif parts.scheme in ("redis", "rediss"):
                context = ssl.create_default_context() if parts.scheme == "rediss" else None
                reader, writer = await asyncio.open_connection(
                    parts.hostname or "localhost", parts.port or 6379, ssl=context
                )
            else:
                raise ValueError(f"not a Redis URL: {parts.scheme}://")
            subscription = cls(reader, writer)
            try:
                await subscription._handshake(parts, client_name, channels)
            except BaseException:
                await subscription.aclose()
                raise
        return subscription

    async def _handshake(
        self, parts: SplitResult, client_name: str | None, channels: Sequence[str]
    ) -> None:
        """AUTH, CLIENT SETNAME and SUBSCRIBE in one write; returns once Redis confirmed
        every channel (the confirmations are then the first replies)."""
        commands = []
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None:
            user = unquote(parts.username) if parts.username else None
            commands.append(_command(*(("AUTH", user) if user else ("AUTH",)), password))
        if client_name:
            commands.append(_command("CLIENT", "SETNAME", client_name))
        self._writer.write(b"".join([*commands, _command("SUBSCRIBE", *channels)]))
        await self._writer.drain()
        answers = 0
        while answers < len(commands) + len(channels):
            for reply in self._parser.replies():
                if isinstance(reply, RedisReplyError):
                    raise reply
                answers += 1
                if answers > len(commands):
                    self._confirmed.append(reply)
            if answers < len(commands) + len(channels):
                await self._read()

    async def _read(self) -> None:
        data = await self._reader.read(READ_CHUNK)
        if not data:
            raise ConnectionError("Redis closed the subscription's connection")
        self._parser.feed(data)

    async def replies(self) -> AsyncIterator[tuple[bytes, bytes, Any]]:
        """What Redis pushes, forever; raises when the connection ends or says an error."""
        pending, self._confirmed = self._confirmed, []
        while True:
            for reply in [*pending, *self._parser.replies()]:
                if isinstance(reply, RedisReplyError):
                    raise reply
                if not isinstance(reply, list) or len(reply) != 3:
                    raise ConnectionError(f"unexpected pub/sub reply from Redis: {reply!r}")
                kind, channel, data = reply
                yield kind, channel, data
            pending = []
            await self._read()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):  # Redis may have dropped it already
            await self._writer.wait_closed()

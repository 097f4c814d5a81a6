"""The socket.io listener's own pub/sub reader: RESP2 replies out of a byte stream."""

from __future__ import annotations

import pytest

from chat_adapters.socketio.subscription import RedisReplyError, RespParser

MESSAGE = b'*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$11\r\n{"a":"b\r\n"}\r\n'


def test_a_message_split_anywhere_is_read_once_whole() -> None:
    for cut in range(1, len(MESSAGE)):
        parser = RespParser()
        parser.feed(MESSAGE[:cut])
        assert parser.replies() == []
        parser.feed(MESSAGE[cut:])
        # A payload may hold CR LF: bulk strings are read by their length.
        assert parser.replies() == [[b"message", b"ch", b'{"a":"b\r\n"}']]


def test_every_reply_of_a_chunk_in_order() -> None:
    parser = RespParser()
    confirmed = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    parser.feed(b"+OK\r\n" + confirmed + MESSAGE + MESSAGE[:5])
    assert parser.replies() == [
        b"OK",
        [b"subscribe", b"ch", 1],
        [b"message", b"ch", b'{"a":"b\r\n"}'],
    ]
    parser.feed(MESSAGE[5:])
    assert len(parser.replies()) == 1


def test_errors_nulls_and_pushes() -> None:
    parser = RespParser()
    parser.feed(
        b"-WRONGPASS invalid password\r\n$-1\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$0\r\n\r\n"
    )
    error, null, push = parser.replies()
    assert isinstance(error, RedisReplyError) and "WRONGPASS" in str(error)
    assert null is None
    assert push == [b"message", b"c", b""]


def test_a_reply_it_cannot_read_ends_the_connection() -> None:
    parser = RespParser()
    parser.feed(b"%1\r\n")  # RESP3, which a connection that never says HELLO does not get
    with pytest.raises(ConnectionError):
        parser.replies()

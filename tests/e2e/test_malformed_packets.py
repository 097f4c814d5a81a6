"""Malformed socket.io packets get a failed acknowledgement and one log line each.

Before, 500 malformed packets wrote 18,000 log lines (each traceback twice) and none
was acknowledged, although the contract promises an acknowledgement for every event.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.clients import Api
from tests.support.processes import ChatProcess
from tests.support.raw_socket import RawSocket

# Event packets (type 2) with ack ids, that python-socketio cannot decode or dispatch.
MALFORMED = (
    '2{id}["message:send",{{',  # JSON cut short
    '2{id}["sync",]',  # not JSON
    "2{id}",  # no payload at all
    '2{id}{{"room_id":"x"}}',  # an object where the event list goes
    "2{id}[]",  # no event name
    '2{id}[{{"a":1}},2]',  # an event name that is no string
)
ROUNDS = 50  # 300 packets


def acks_by_id(frames: list[str]) -> dict[int, Any]:
    acks: dict[int, Any] = {}
    for frame in frames:
        assert frame.startswith("43"), frame  # engine.io MESSAGE + socket.io ACK
        digits = frame[2:].split("[", 1)[0]
        acks[int(digits)] = json.loads(frame[2 + len(digits) :])
    return acks


async def test_each_malformed_packet_is_acknowledged_and_logged_once(
    server: ChatProcess, api: Api
) -> None:
    account = await api.signup()
    raw = await RawSocket.open(server.url)
    try:
        await raw.login(account.token)
        lines_before = len(server.log().splitlines())
        count = 0
        for _ in range(ROUNDS):
            for shape in MALFORMED:
                count += 1
                raw.send("4" + shape.format(id=count))
        frames = [await raw.receive() for _ in range(count)]
        acks = acks_by_id(frames)
        assert sorted(acks) == list(range(1, count + 1))
        for answer in acks.values():
            assert answer[0]["ok"] is False, answer
            assert answer[0]["error"]["code"] == "validation_error", answer
        # The socket still works.
        raw.send("4" + '2999["sync",{"room_id":"none","after_seq":0}]')
        reply = await raw.receive()
        assert reply.startswith("43999["), reply
        assert json.loads(reply[len("43999") :])[0]["error"]["code"] in ("not_found", "forbidden")
        new_lines = server.log().splitlines()[lines_before:]
        assert len(new_lines) <= count, "\n".join(new_lines[:40])
        assert not any("Traceback" in line for line in new_lines), "\n".join(new_lines[:40])
    finally:
        await raw.close()

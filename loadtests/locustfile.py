"""Locust harness: users who register, log in, join a shared pool of rooms, hold a socket.io
websocket and post messages over REST; the fan-out is measured end to end.

Headless, bounded (from the repository root):

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 50 -r 10 -t 60s \
        --host http://127.0.0.1:8000

Several nodes: ``--host http://127.0.0.1:8000,http://127.0.0.1:8001`` (or the env var
CHAT_LOCUST_HOSTS): user i posts to node i and listens on node i+1, so messages cross
nodes. Web UI: the same command without --headless/-u/-r/-t, then http://localhost:8089.

Besides Locust's HTTP rows, each delivery is a request row ``socketio / message:new
delivery`` whose response time is post-to-receipt (the send time travels in the
client_msg_id); lost deliveries (none within CHAT_LOCUST_LOSS_TIMEOUT s, default 10),
duplicates and out-of-order seqs are its failures. Knobs: CHAT_LOCUST_ROOM_SIZE
(members per room, default 5).
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import gevent
import socketio
from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser

# Locust puts this file's folder on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.locust_support import DeliveryBook, RoomPool, nodes

PASSWORD = "correct horse battery"
ROOM_SIZE = int(os.environ.get("CHAT_LOCUST_ROOM_SIZE", "5"))
LOSS_TIMEOUT = float(os.environ.get("CHAT_LOCUST_LOSS_TIMEOUT", "10"))

pool = RoomPool(ROOM_SIZE)
book = DeliveryBook(LOSS_TIMEOUT)
_sweeper: gevent.Greenlet | None = None
RUN = uuid.uuid4().hex[:8]  # usernames stay unique across runs against the same server


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    def report(name: str, ms: float, length: int, exc: BaseException | None) -> None:
        environment.events.request.fire(
            request_type="socketio",
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )

    book.report = report


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global _sweeper

    def sweep_forever() -> None:
        while True:
            gevent.sleep(1.0)
            book.sweep()

    if _sweeper is None:
        _sweeper = gevent.spawn(sweep_forever)


@events.test_stopping.add_listener
def _on_test_stopping(environment: Environment, **_: Any) -> None:
    # Users (and their sockets) are stopped right after this returns: let the messages
    # already posted arrive first, so the end of a run does not read as losses.
    ChatUser.sending = False
    book.drain()


class ChatUser(FastHttpUser):
    """A chat member: its own account, a room of the pool, a websocket, messages to post."""

    wait_time = between(0.5, 2.0)
    sending = True

    def __init__(self, environment: Environment) -> None:
        self.number = pool.next_user()
        targets = nodes(environment.host or self.host)
        # REST and socket on different nodes whenever there are several.
        self.host = targets[self.number % len(targets)]
        self.socket_url = targets[(self.number + 1) % len(targets)]
        super().__init__(environment)
        self.token = ""
        self.room: Any = None
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("message:new", lambda message: book.received(self.number, message))

    def on_start(self) -> None:
        username = f"lc{RUN}_{self.number}"
        credentials = {"username": username, "password": PASSWORD}
        for _ in range(10):
            # A node hashes registrations a few at a time and refuses a burst beyond its
            # queue (429 + Retry-After): a spawn wave waits its turn, as a client should.
            with self.client.post(
                "/api/v1/auth/register",
                json=credentials,
                name="/auth/register",
                catch_response=True,
            ) as r:
                if r.status_code != 429:
                    break
                r.success()
                retry_after = float(r.headers.get("Retry-After", "1"))
            gevent.sleep(retry_after)
        with self.client.post(
            "/api/v1/auth/login", json=credentials, name="/auth/login", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"login answered {r.status_code}")
                raise StopUser()  # nothing else can work without a token
            body = r.json()
        self.token, user_id = body["access_token"], body["user"]["id"]
        # Listen before joining: a member added to a room gets its events on sockets
        # already connected, so no message of the room can slip between join and listen.
        self.sio.connect(
            self.socket_url,
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=10,
        )
        room, creator = pool.room_of(self.number)
        if creator:
            with self.client.post(
                "/api/v1/rooms",
                json={"name": f"locust {room.number}", "member_ids": []},
                headers=self.auth,
                name="/rooms",
                catch_response=True,
            ) as r:
                if r.status_code != 201:
                    r.failure(f"create room answered {r.status_code}")
                    room.created.set()
                    return
                room.room_id, room.owner_token = r.json()["room"]["id"], self.token
            room.created.set()
        else:
            room.created.wait(30)
            if room.room_id is None:
                return
            self.client.post(
                f"/api/v1/rooms/{room.room_id}/members",
                json={"user_id": user_id},
                headers={"Authorization": f"Bearer {room.owner_token}"},
                name="/rooms/{id}/members",
            )
        room.members.add(self.number)
        self.room = room

    def on_stop(self) -> None:
        book.forget(self.number)
        if self.room is not None:
            self.room.members.discard(self.number)
        if self.sio.connected:
            self.sio.disconnect()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @task(10)
    def post_message(self) -> None:
        if self.room is None or not ChatUser.sending:
            return
        cmid = book.new_cmid(self.number)
        book.expect(cmid, self.room.members)
        with self.client.post(
            f"/api/v1/rooms/{self.room.room_id}/messages",
            json={"body": f"locust {cmid}", "client_msg_id": cmid},
            headers=self.auth,
            name="/rooms/{id}/messages",
            catch_response=True,
        ) as r:
            if r.status_code != 202:
                book.cancel(cmid)
                r.failure(f"send answered {r.status_code}")

    @task(1)
    def read_history(self) -> None:
        if self.room is None:
            return
        self.client.get(
            f"/api/v1/rooms/{self.room.room_id}/messages?limit=20",
            headers=self.auth,
            name="/rooms/{id}/messages [history]",
        )

"""orjson for socket.io packets: faster encoding on the fan-out path.

python-socketio calls ``json.dumps(obj, separators=...)`` and expects ``str``;
orjson returns bytes and knows no ``separators``, hence this small shim.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class OrjsonForSocketIO:
    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson refuses a lone surrogate ("\ud800"), which JSON allows; the packet was
            # then dropped unanswered. Read it as the stdlib does: the event reaches its
            # handler, whose ack refuses the text like any other text the domain refuses.
            return json.loads(data)

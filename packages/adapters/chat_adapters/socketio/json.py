"""orjson for socket.io packets: faster encoding on the fan-out path.

python-socketio calls ``json.dumps(obj, separators=...)`` and expects ``str``;
orjson returns bytes and knows no ``separators``, hence this small shim.
"""

from __future__ import annotations

from typing import Any

import orjson


class OrjsonForSocketIO:
    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)

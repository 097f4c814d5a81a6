"""A webhook receiver that never answers: it accepts connections and reads, forever.

The bench's `embedded-webhooks` target points its webhooks here, to measure that a receiver
which never answers does not slow chat delivery (`message:new`), side by side with the
plain embedded target in one run.
"""

from __future__ import annotations

import argparse
import asyncio


async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.read(65536):
            pass  # read the request, never answer it
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))

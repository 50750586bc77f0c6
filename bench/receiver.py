"""The benchmark's webhook receiver: a small, fast HTTP server on loopback.

    python -m bench.receiver --port 8765

Answers every POST 200 at once (HTTP/1.1, keep-alive) and keeps, per request,
its Wallet-Event-Id and the time it arrived (time.time(), the same clock as the
database's on this machine). `GET /stats` returns them as JSON:
{"arrivals": [[event_id, unix_time], ...], "without_id": n}. Prints "READY"
once it listens. asyncio, one process, no threads: it must cost the machine
little next to the load it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

arrivals: list[tuple[int, float]] = []
without_id = 0

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global without_id
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = lines[0].split(" ")[:2]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)
            if method == "GET" and path == "/stats":
                body = json.dumps(
                    {"arrivals": arrivals, "without_id": without_id}
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
            else:
                event_id = headers.get("wallet-event-id", "")
                if event_id.isdigit():
                    arrivals.append((int(event_id), time.time()))
                else:
                    without_id += 1
                writer.write(OK)
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench.receiver")
    parser.add_argument("--port", type=int, required=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parser.parse_args(sys.argv[1:]).port))

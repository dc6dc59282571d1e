"""A counting, optionally throttling, reverse proxy in front of one SCIM target, for the targets
benchmark (bench/targets.sh). One request per connection, as the HTTP/1.0 server it fronts
(scim2-server) answers: the request is read whole, held until the rate allows it, sent upstream,
and the upstream's answer is relayed until it closes.

usage: target_proxy.py LISTEN_PORT UPSTREAM_PORT RATE COUNT_FILE
  RATE: requests per second at most (0: unlimited); COUNT_FILE: the number of requests relayed,
  rewritten every half second.
"""

import asyncio
import os
import sys
import time


class Bucket:
    """Requests are let through at `rate` per second, in order of arrival."""

    def __init__(self, rate):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self):
        if self.interval == 0.0:
            return
        async with self.lock:
            now = time.monotonic()
            wait = self.next - now
            self.next = max(now, self.next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return head, body


async def main():
    listen, upstream, rate, count_file = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    bucket = Bucket(rate)
    count = 0

    async def handle(reader, writer):
        nonlocal count
        try:
            head, body = await read_request(reader)
            await bucket.take()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            up_writer.write(head + body)
            await up_writer.drain()
            count += 1
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
            await writer.drain()
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def report():
        while True:
            with open(count_file + ".tmp", "w") as f:
                f.write(f"{count}\n")
            os.replace(count_file + ".tmp", count_file)
            await asyncio.sleep(0.5)

    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)
    async with server:
        await asyncio.gather(server.serve_forever(), report())


if __name__ == "__main__":
    asyncio.run(main())

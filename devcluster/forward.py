"""`python -m devcluster.forward LISTEN_HOST LISTEN_PORT TARGET_PORT`: a TCP forwarder from the
host end of the real node's veth to the API server on 127.0.0.1.

Why a forwarder: the API server binds 127.0.0.1 only (the machine's other addresses stay
closed), and the node reaches the host only over its veth link. This process listens on the
host end of that link and splices each connection to the API server; TLS passes through
untouched, so the API server still sees and checks every client's own certificate or token.
It runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


async def _handle(target_port: int, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    for w in (writer, up_writer):
        with contextlib.suppress(OSError):
            w.close()


async def serve(host: str, port: int, target_port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _handle(target_port, r, w), host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    asyncio.run(serve(argv[0], int(argv[1]), int(argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

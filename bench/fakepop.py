"""A POP3 server for the daemon benchmark: any user, any password, an empty maildrop, fast.

One asyncio process answers every account of ``bench/daemon.py`` on one
port, so that a thousand accounts cost the machine one process, not a
thousand test servers. ``--delay`` holds each greeting back, for a server
slower than the daemon's schedule.

    python3 bench/fakepop.py [--delay SECONDS]   # prints the port, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio

_CAPA = b"+OK\r\nUSER\r\nUIDL\r\nTOP\r\nPIPELINING\r\n.\r\n"
_REPLIES = {
    b"USER": b"+OK\r\n",
    b"PASS": b"+OK maildrop has 0 messages\r\n",
    b"STAT": b"+OK 0 0\r\n",
    b"LIST": b"+OK 0 messages\r\n.\r\n",
    b"UIDL": b"+OK\r\n.\r\n",
    b"NOOP": b"+OK\r\n",
    b"RSET": b"+OK\r\n",
    b"CAPA": _CAPA,
}


async def _session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    try:
        if delay:
            await asyncio.sleep(delay)
        writer.write(b"+OK fakepop ready\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"QUIT":
                writer.write(b"+OK bye\r\n")
                break
            writer.write(_REPLIES.get(verb, b"-ERR not here\r\n"))
            await writer.drain()
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _serve(delay: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: _session(r, w, delay), "127.0.0.1", 0, backlog=1024
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.0)
    asyncio.run(_serve(parser.parse_args().delay))


if __name__ == "__main__":
    main()

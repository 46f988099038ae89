"""A TCP proxy on 127.0.0.1 that a test can cut, to lose a broker connection on purpose.

`rabbitmqctl close_all_connections` takes about a second and cuts every connection of every
helper running tests on this machine; this proxy cuts only the connections that go through
it, at once (aio-pika's own tests do the same). `cut()` aborts the current connections (RST,
as a crashed peer or a dead network would); `block()` also refuses new ones until
`unblock()`, which is how a test makes the broker "unreachable".
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    """Forward 127.0.0.1:<port> to (host, port); cut or block on demand."""

    def __init__(self, target_host: str = "127.0.0.1", target_port: int = 5672) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._blocked = False

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        return len(self._pairs)

    @property
    def blocked(self) -> bool:
        return self._blocked

    def url(self, user: str, password: str, vhost: str) -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    async def start(self, port: int = 0) -> None:
        """Listen on `port` (0: any free one); a known port lets a test point a process at
        it before it listens (a broker that comes up late)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> int:
        """Abort every connection going through the proxy now; return how many."""
        pairs = list(self._pairs)
        self._pairs.clear()
        for client, upstream in pairs:
            client.transport.abort()
            upstream.transport.abort()
        return len(pairs)

    def block(self) -> None:
        """Cut, and refuse new connections until `unblock()`."""
        self._blocked = True
        self.cut()

    def unblock(self) -> None:
        self._blocked = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end both, as a real broken connection would.
            self._pairs.discard(pair)
            for w in pair:
                with contextlib.suppress(Exception):
                    w.transport.abort()
